"""Named recipes: `paper` is the paper's recipe and the dataclass defaults, `accuracy` sizes plans by held-out
accuracy; explicit values win over both."""

import pytest

from lightpeft import EstimateConfig, LightPeftError, PlanConfig, recipe_configs
from lightpeft.cli import parse
from lightpeft.methods.light_peft.config import REFERENCE_THIRD
from lightpeft.methods.light_peft.recipes import ACCURACY, PAPER, recipe_values


def test_paper_recipe_is_the_papers_settings_and_the_dataclass_defaults():
    est, plan = recipe_configs("paper")
    assert (est.estimate_fraction, est.l1_coef, est.mask_lr_coef, est.plan_search_examples) == (0.1, 1e-4, 1.0, 0)
    assert (plan.head_ratio, plan.ffn_ratio, plan.module_ratio, plan.rank_ratio) == (REFERENCE_THIRD,) * 2 + (0.75, 0.5)
    assert plan.structure_score == "gate" and plan.max_metric_drop is None and plan.recipe == "paper"
    assert (est, plan) == (EstimateConfig(), PlanConfig())


def test_accuracy_recipe_sizes_plans_by_held_out_accuracy_and_overrides_win():
    est, plan = recipe_configs("accuracy")
    assert est.plan_search_examples > 0 and plan.max_metric_drop == 1.0 and est.min_estimate_steps == 60
    assert est.train_schedule == "remaining" and plan.recipe == "accuracy"
    _, plan = recipe_configs("accuracy", max_metric_drop=0.5)
    assert plan.max_metric_drop == 0.5
    with pytest.raises(LightPeftError, match="--recipe must be one of"):
        recipe_configs("fast")
    with pytest.raises(LightPeftError, match="unknown"):
        recipe_configs("paper", not_a_flag=1)


def test_recipes_name_the_same_flags():
    assert set(recipe_values("accuracy")) == set(recipe_values("paper")) == set(PAPER) | {"recipe"}
    assert set(ACCURACY) == set(PAPER)


def test_cli_applies_the_recipe_under_the_config_file_and_the_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("recipe: accuracy\nrank_ratio: 0.25\n")
    common = ["--output_dir", str(tmp_path / "o"), "--model_name_or_path", "m", "--task", "t"]
    *_, est, plan, _options, _args = parse("run", ["--config", str(config), "--module_ratio", "0.5", *common])
    assert plan.recipe == "accuracy" and plan.max_metric_drop == ACCURACY["max_metric_drop"]
    assert est.plan_search_examples == ACCURACY["plan_search_examples"]
    assert (plan.rank_ratio, plan.module_ratio) == (0.25, 0.5)  # the file, then the flag, over the recipe
    *_, est, plan, _options, _args = parse("run", ["--recipe", "paper", "--config", str(config), *common])
    assert plan.recipe == "paper" and plan.max_metric_drop is None and est.plan_search_examples == 0
    *_, plan, _options, _args = parse("run", common)
    assert plan.recipe == "paper"  # no recipe named: the paper's
    (plan, _options) = parse("plan", ["--recipe", "accuracy", "--estimate_dir", "e", "--plan_path", "p.json"])
    assert plan.max_metric_drop == 1.0
