import json

import numpy as np
import pytest
import torch

from lightpeft.core.plan import Plan
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.selection import keep_heads, keep_per_row, kv_heads_of, num_to_prune, select_ranks

from conftest import tiny_model
from helpers import random_plan


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


REFERENCE_RATIO = 0.333333333  # the reference scripts' attn_pruning_ratio and ffn_pruning_ratio


@pytest.mark.parametrize("n", [12, 16, 3072, 4096, 4 * 4096, 12 * 3072, 24 * 4096])
def test_default_ratios_prune_what_the_reference_scripts_prune(n):
    """Heads per layer (12, 16), FFN per layer (3072, 4096) and global (L x d_ff): exactly 1/3 would prune one
    more wherever (n - 1) is a multiple of 3 (16 heads: 6 instead of 5; 4096 neurons: 1366 instead of 1365)."""
    scores = np.arange(n, dtype=float)
    reference = int((scores <= np.quantile(scores, REFERENCE_RATIO)).sum())
    cfg = PlanConfig()
    assert num_to_prune(n, cfg.head_ratio) == reference
    assert num_to_prune(n, cfg.ffn_ratio) == reference


def test_default_head_ratio_prunes_5_of_16_heads_per_layer():
    kept = keep_heads(torch.rand(3, 16, generator=torch.Generator().manual_seed(0)), PlanConfig())
    assert [len(layer) for layer in kept] == [11, 11, 11]


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


def test_gqa_kv_group_policy_prunes_whole_groups_by_their_mean_gate():
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.1, 0.9, 0.9]])  # 3 groups of 2 query heads: means 0.5, 0.15, 0.9
    kept = keep_heads(scores, PlanConfig(head_ratio=1 / 3), group_size=2)  # count rule over 3 groups: prune 1
    assert kept == [[0, 1, 4, 5]] and kv_heads_of(kept, 2) == [[0, 2]]


def test_gqa_per_group_policy_prunes_the_same_number_in_every_group():
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3, 0.05, 0.9]])  # the layer loses 2 of 6 -> 1 per group, lowest first
    kept = keep_heads(scores, PlanConfig(head_ratio=1 / 3, gqa_policy="per_group"), group_size=2)
    assert kept == [[0, 3, 5]] and kv_heads_of(kept, 2) == [[0, 1, 2]]
    assert keep_heads(scores, PlanConfig(head_ratio=1 / 3), group_size=1) == keep_per_row(scores, 1 / 3, "layer")


def test_single_kv_head_with_kv_group_policy_is_refused():
    with pytest.raises(LightPeftError, match="per_group"):
        keep_heads(torch.rand(2, 4), PlanConfig(), group_size=4)
    per_group = keep_heads(torch.rand(2, 4), PlanConfig(gqa_policy="per_group"), group_size=4)
    assert [len(h) for h in per_group] == [3, 3]  # the default ratio prunes 1 of 4 heads, as the reference's
    with pytest.raises(LightPeftError, match="gqa_policy"):
        PlanConfig(gqa_policy="whole")


def test_plan_without_kv_fields_loads_as_one_kv_head_per_query_head(tmp_path):
    data = random_plan(tiny_model(), PlanConfig()).to_json()
    del data["kv_heads"], data["num_kv_heads"]
    (tmp_path / "plan.json").write_text(json.dumps(data))
    plan = Plan.load(tmp_path / "plan.json")
    assert plan.kept_kv_heads(1) == plan.heads[1]


def test_round_to_gives_widths_in_multiples_and_keeps_the_highest_gates():
    from lightpeft.methods.light_peft.selection import keep_per_row, round_widths

    g = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 100, generator=g)
    kept = keep_per_row(scores, 1 / 3, "global")
    rounded = round_widths(scores, kept, 16)
    for row, before, after in zip(scores, kept, rounded):
        assert len(after) % 16 == 0 and abs(len(after) - len(before)) <= 8
        threshold = row[after].min()
        assert all(row[c] < threshold for c in range(100) if c not in after)
    assert round_widths(scores, kept, 1) == kept
