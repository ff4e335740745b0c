"""The PrunePEFT ablation arms of `lightpeft bench`: each is selectable, readably named, and maps to the search
settings of its ablation (one criterion everywhere without warm-up; one depth block with the warm-up)."""

import pytest

from lightpeft.bench.config import SEARCH_ARMS, BenchConfig, arm_label, search_arm
from lightpeft.cli import parse

TABLE_1 = ("weight", "zeros", "threshold", "activation", "sensitivity", "gradient")
ABLATIONS = [*(f"prune-peft-only-{c}" for c in TABLE_1), "prune-peft-no-blocks"]


def test_every_ablation_arm_is_selectable_and_has_its_own_readable_label():
    assert BenchConfig(arms=["vanilla", *ABLATIONS]).arms == ["vanilla", *ABLATIONS]
    labels = [arm_label(arm) for arm in SEARCH_ARMS]
    assert len(set(labels)) == len(labels)
    assert arm_label("prune-peft-only-sensitivity") == "PrunePEFT, sensitivity only"
    assert arm_label("prune-peft-no-blocks") == "PrunePEFT, no depth blocks"


@pytest.mark.parametrize("criterion", TABLE_1)
def test_a_single_criterion_arm_scores_every_partition_by_that_criterion(criterion):
    # the bench's own search flags (a budget, a warm-up assignment file) stay; the arm's ablation wins
    method, cfg = search_arm(f"prune-peft-only-{criterion}", {"budget_fraction": 0.5,
                                                              "criteria_assignment": "runs/x/assignment.json"})
    assert method == "prune_peft" and cfg.budget_fraction == 0.5
    assert cfg.criteria_assignment == "uniform" and cfg.criteria == [criterion] and cfg.assignment_file is None
    assert cfg.depth_blocks == 4 and cfg.combine == "eq1"


def test_the_no_blocks_arm_uses_one_depth_block_and_the_warm_up():
    method, cfg = search_arm("prune-peft-no-blocks", {"criteria_assignment": "uniform", "round_steps": 3})
    assert method == "prune_peft" and cfg.depth_blocks == 1 and cfg.criteria_assignment == "warmup"
    assert cfg.round_steps == 3 and len(cfg.criteria) == len(TABLE_1)
    _, full = search_arm("prune-peft", {})
    assert full.depth_blocks == 4 and full.criteria_assignment == "warmup"


def test_the_arms_come_through_the_bench_command_line():
    *_, search_cfg, bench_cfg, _, _ = parse("bench", ["--task", "sst2", "--output_dir", "out", "--arms",
                                                      "prune-peft-only-gradient", "prune-peft-no-blocks",
                                                      "--budget_fraction", "0.5"])
    assert bench_cfg.arms == ["prune-peft-only-gradient", "prune-peft-no-blocks"]
    assert search_arm("prune-peft-only-gradient", vars(search_cfg))[1].criteria == ["gradient"]

