import json

import numpy as np
import pytest
import torch

from conftest import tiny_model
from helpers import random_plan
from lightpeft.config import PlanConfig
from lightpeft.errors import LightPeftError
from lightpeft.plan import Plan, keep_per_row, num_to_prune, select_ranks


@pytest.mark.parametrize("n", [1, 2, 5, 12, 16, 37, 100])
@pytest.mark.parametrize("ratio", [0.1, 1 / 3, 0.333333333, 0.5, 0.75, 0.9, 0.99])
def test_count_rule_equals_reference_quantile_rule(n, ratio):
    scores = np.random.default_rng(n).permutation(n).astype(float) + 0.5  # distinct
    tau = np.quantile(scores, ratio)
    assert num_to_prune(n, ratio) == int((scores <= tau).sum())


def test_paper_head_counts():
    assert num_to_prune(12, 0.333333333) == 4  # RoBERTa-base: 4 of 12 heads per layer
    assert num_to_prune(16, 0.333333333) == 5  # RoBERTa-large: 5 of 16
    assert num_to_prune(12, 0.0) == 0


def test_lowest_signed_values_are_pruned_first():
    scores = torch.tensor([[0.9, -0.5, 0.1, 0.7], [0.2, 0.3, 0.4, 0.5]])
    assert keep_per_row(scores, 0.25, "layer") == [[0, 2, 3], [1, 2, 3]]
    assert keep_per_row(scores, 0.3, "global") == [[0, 3], [1, 2, 3]]  # prunes 3 lowest: -0.5, 0.1, 0.2


def test_ties_do_not_prune_everything():
    assert keep_per_row(torch.ones(2, 6), 1 / 3, "layer") == [[2, 3, 4, 5], [2, 3, 4, 5]]


def test_global_rank_pruning_drops_modules_without_ranks():
    kept = select_ranks({"a": torch.tensor([0.1, 0.2]), "b": torch.tensor([0.9, 0.8])}, 0.5, "global")
    assert kept == {"b": [0, 1]}


def test_plan_json_round_trip(tmp_path):
    plan = random_plan(tiny_model(), PlanConfig())
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert again == plan
    assert Plan.load(tmp_path) == plan  # a run directory works too


def test_corrupt_truncated_and_old_plans_give_one_line_errors(tmp_path):
    plan = random_plan(tiny_model(), PlanConfig())
    text = json.dumps(plan.to_json())
    (tmp_path / "truncated.json").write_text(text[: len(text) // 2])
    with pytest.raises(LightPeftError, match="corrupt") as err:
        Plan.load(tmp_path / "truncated.json")
    assert "\n" not in str(err.value)
    (tmp_path / "old.json").write_text(json.dumps({**plan.to_json(), "schema_version": 0}))
    with pytest.raises(LightPeftError, match="schema version"):
        Plan.load(tmp_path / "old.json")
    incomplete = plan.to_json()
    del incomplete["heads"]
    (tmp_path / "incomplete.json").write_text(json.dumps(incomplete))
    with pytest.raises(LightPeftError, match="incomplete"):
        Plan.load(tmp_path / "incomplete.json")
    with pytest.raises(LightPeftError, match="does not exist"):
        Plan.load(tmp_path / "missing.json")


def test_plan_for_another_base_is_refused():
    plan = random_plan(tiny_model(seed=0), PlanConfig())
    from lightpeft.fingerprint import fingerprint

    with pytest.raises(LightPeftError, match="base checkpoint"):
        plan.check_base(fingerprint(tiny_model(seed=1)))
    plan.check_base(fingerprint(tiny_model(seed=0)))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_ratios_outside_unit_interval_are_rejected(bad):
    with pytest.raises(LightPeftError, match=r"\[0, 1\)"):
        PlanConfig(head_ratio=bad)
