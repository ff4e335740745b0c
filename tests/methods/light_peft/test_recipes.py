"""Named recipes: `paper` is the paper's recipe, `default` the dataclass defaults; explicit values win."""

import pytest

from lightpeft import EstimateConfig, LightPeftError, PlanConfig, recipe_configs
from lightpeft.cli import parse
from lightpeft.methods.light_peft.config import REFERENCE_THIRD
from lightpeft.methods.light_peft.recipes import PAPER, recipe_values


def test_paper_recipe_is_the_papers_settings():
    est, plan = recipe_configs("paper")
    assert (est.estimate_fraction, est.l1_coef, est.mask_lr_coef, est.plan_search_examples) == (0.1, 1e-4, 1.0, 0)
    assert (plan.head_ratio, plan.ffn_ratio, plan.module_ratio, plan.rank_ratio) == (REFERENCE_THIRD,) * 2 + (0.75, 0.5)
    assert plan.structure_score == "gate" and plan.max_metric_drop is None and plan.recipe == "paper"


def test_default_recipe_is_the_dataclass_defaults_and_overrides_win():
    est, plan = recipe_configs("default")
    assert est == EstimateConfig() and plan == PlanConfig()
    _, plan = recipe_configs("paper", head_ratio=0.5)
    assert plan.head_ratio == 0.5 and plan.recipe == "paper"
    with pytest.raises(LightPeftError, match="--recipe must be one of"):
        recipe_configs("fast")
    with pytest.raises(LightPeftError, match="unknown"):
        recipe_configs("paper", not_a_flag=1)


def test_recipes_name_the_same_flags():
    assert set(recipe_values("default")) == set(recipe_values("paper")) == set(PAPER) | {"recipe"}


def test_cli_applies_the_recipe_under_the_config_file_and_the_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("recipe: paper\nrank_ratio: 0.25\n")
    common = ["--output_dir", str(tmp_path / "o"), "--model_name_or_path", "m", "--task", "t"]
    *_, est, plan, _options, _args = parse("run", ["--config", str(config), "--module_ratio", "0.5", *common])
    assert plan.recipe == "paper" and plan.structure_score == PAPER["structure_score"]
    assert est.plan_search_examples == PAPER["plan_search_examples"]
    assert (plan.rank_ratio, plan.module_ratio) == (0.25, 0.5)  # the file, then the flag, over the recipe
    *_, plan, _options, _args = parse("run", ["--recipe", "default", "--config", str(config), *common])
    assert plan.recipe == "default" and plan.max_metric_drop == PlanConfig().max_metric_drop
    (plan, _options) = parse("plan", ["--recipe", "paper", "--estimate_dir", "e", "--plan_path", "p.json"])
    assert plan.head_ratio == REFERENCE_THIRD
