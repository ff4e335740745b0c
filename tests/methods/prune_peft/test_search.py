"""The search loop on a tiny encoder: a round removes exactly k modules, the budget stops the search, the plan's
trainable count is the sum of what remains, fresh modules start as the identity, and budgets out of range fail."""

import dataclasses

import pytest
import torch

from lightpeft import LightPeftTrainingArguments
from lightpeft.config import DataConfig, ModelConfig
from lightpeft.core.build import build_model
from lightpeft.core.peft_kinds import PeftSettings, peft_units
from lightpeft.core.peft_modules import trained_heads
from lightpeft.errors import LightPeftError
from lightpeft.methods.prune_peft.config import SearchConfig
from lightpeft.methods.prune_peft.search import SearchData, run_search
from lightpeft.methods.prune_peft.supernet import build_supernet, start_as_identity
from lightpeft.stages.prepare import load_task_base, prepare

from conftest import example_batch


@pytest.fixture(scope="module")
def data(tiny_model_dir, tiny_csv):
    model_cfg = ModelConfig(str(tiny_model_dir))
    prepared = prepare(model_cfg, DataConfig(task=str(tiny_csv), max_seq_length=16))
    return SearchData(lambda: load_task_base(model_cfg, prepared.task, seed=0), prepared.train_ds,
                      prepared.tokenizer, prepared.trainer_parts())


def args(tmp_path):
    return LightPeftTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, learning_rate=5e-3,
                                      disable_tqdm=True, seed=0, use_cpu=True, report_to=[])


FAST = dict(round_steps=2, criteria_assignment="paper")


def peft_trainable(model) -> int:
    heads = {id(p) for head in trained_heads(model).values() for p in head.parameters()}
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in heads)


def test_one_round_removes_exactly_k_and_the_plan_counts_what_remains(data, tmp_path):
    supernet = build_supernet(data.make_base(), PeftSettings(), SearchConfig())
    outcome = run_search(data, PeftSettings(), SearchConfig(budget_params=600, prune_per_round=2, max_rounds=1,
                                                            **FAST), args(tmp_path))
    (round_1,) = outcome.rounds
    assert len(round_1["removed"]) == 2 and len(outcome.record["kept_modules"]) == 2
    kept = outcome.record["kept_modules"]
    assert set(kept) == set(supernet.names) - set(round_1["removed"])
    want = sum(supernet.candidate(m).params for m in kept)
    assert outcome.record["final_params"] == want == outcome.plan.counts["peft_params_after"]
    model = build_model(data.make_base(), outcome.plan)
    assert peft_trainable(model) == want
    assert outcome.plan.method == "prune-peft" and not outcome.record["budget_met"]
    assert set(round_1["scores"]) <= {"weight", "zeros", "threshold", "activation", "sensitivity", "gradient"}
    assert round_1["train"]["steps"] == 2


TINY_WARMUP = dict(warmup_samples=16, warmup_turns=1, warmup_prune=1, warmup_epochs=1)


def test_a_one_block_search_partitions_by_module_kind_only_and_runs_the_warm_up(data, tmp_path):
    cfg = SearchConfig(budget_params=2600, max_rounds=1, round_steps=2, depth_blocks=1, **TINY_WARMUP)
    outcome = run_search(data, PeftSettings(), cfg, args(tmp_path))
    assert outcome.record["blocks"] == [[0, 1]]
    assert set(outcome.record["partition_of"].values()) == {"lora/block0", "adapter/block0"}
    assert outcome.assignment_source == "warmup" and set(outcome.assignment) == {"lora/block0", "adapter/block0"}
    assert all(set(by_partition) <= {"lora/block0", "adapter/block0"}
               for by_partition in outcome.warmup["counts"].values())
    # both layers of a kind are scored by the same criteria
    criteria = outcome.rounds[0]["criteria"]
    assert criteria["lora/0"] == criteria["lora/1"] and criteria["adapter/0"] == criteria["adapter/1"]
    four = run_search(data, PeftSettings(), SearchConfig(budget_params=2600, max_rounds=1, **FAST), args(tmp_path))
    assert four.record["blocks"] == [[0], [], [], [1]] and len(set(four.record["partition_of"].values())) == 4


def test_a_single_criterion_search_scores_every_partition_by_it_without_warm_up(data, tmp_path):
    cfg = SearchConfig(budget_params=2600, max_rounds=1, round_steps=2, criteria_assignment="uniform",
                       criteria=["sensitivity"])
    outcome = run_search(data, PeftSettings(), cfg, args(tmp_path))
    assert outcome.warmup is None and outcome.record["warmup_seconds"] == 0.0
    assert outcome.assignment_source == "uniform"
    assert outcome.assignment == {p: ["sensitivity"] for p in ["lora/block0", "adapter/block0", "lora/block3",
                                                                "adapter/block3"]}
    (round_1,) = outcome.rounds
    assert set(round_1["scores"]) == {"sensitivity"}
    assert set(map(tuple, round_1["criteria"].values())) == {("sensitivity",)}


def test_the_budget_stops_the_search(data, tmp_path):
    supernet = build_supernet(data.make_base(), PeftSettings(), SearchConfig())
    budget = supernet.params - 1  # one module less is enough
    outcome = run_search(data, PeftSettings(), SearchConfig(budget_params=budget, prune_per_round=3, **FAST),
                         args(tmp_path))
    assert len(outcome.rounds) == 1 and len(outcome.rounds[0]["removed"]) == 1
    assert outcome.record["budget_met"] and outcome.record["final_params"] <= budget
    assert outcome.survivors[0] == supernet.names and len(outcome.survivors) == 2


def test_rounds_continue_until_the_budget(data, tmp_path):
    outcome = run_search(data, PeftSettings(), SearchConfig(budget_fraction=0.5, **FAST), args(tmp_path))
    assert outcome.record["budget_met"] and outcome.record["final_params"] <= outcome.record["budget_params"]
    assert [len(r["removed"]) for r in outcome.rounds] == [1] * len(outcome.rounds)  # k = max(1, 2 layers / 6)
    assert outcome.rounds[-1]["params_before"] > outcome.record["budget_params"]


def test_fresh_modules_start_as_the_identity(data):
    base = data.make_base()
    supernet = build_supernet(base, PeftSettings(), SearchConfig())
    reference = data.make_base().model.eval()
    model = build_model(base, supernet.plan_of(supernet.names))
    start_as_identity(model)
    units = peft_units(model)
    assert {u.peft for u in units.values()} == {"lora", "adapter"}
    assert all(u.up.abs().sum() == 0 and u.down.abs().sum() > 0 for u in units.values())
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(**example_batch()).logits, reference(**example_batch()).logits)


@pytest.mark.parametrize("cfg, message", [
    (dict(budget_params=10**9), "is not below the supernet's"),
    (dict(budget_params=5), "is below the smallest candidate module"),
    (dict(budget_fraction=2.0), "is not below the supernet's"),
])
def test_budgets_out_of_range_are_one_line_errors(data, tmp_path, cfg, message):
    with pytest.raises(LightPeftError, match=message) as err:
        run_search(data, PeftSettings(), SearchConfig(**cfg, **FAST), args(tmp_path))
    assert "\n" not in str(err.value)


def test_keep_reinit_continues_from_the_last_round(data, tmp_path):
    cfg = SearchConfig(budget_params=2000, reinit="keep", **FAST)
    outcome = run_search(data, PeftSettings(), cfg, args(tmp_path))
    assert outcome.record["budget_met"]
    assert dataclasses.asdict(cfg) == outcome.plan.ratios["search_config"]


def test_on_a_pruned_backbone_candidates_take_the_pruned_widths(data):
    base = data.make_base()
    full = build_supernet(base, PeftSettings(), SearchConfig())
    structure = dataclasses.replace(full.plan, heads=[[], [0, 1]], ffn=[list(range(10)), list(range(37))],
                                    kv_heads=[[], [0, 1]])
    pruned = build_supernet(base, PeftSettings(), SearchConfig(), structure, "light-peft+prune-peft")
    assert "lora/0" not in pruned.names and "adapter/0" in pruned.names  # no heads left in layer 0 to adapt
    # q and v of layer 1 keep 2 of 4 heads of 8: LoRA r=8 is 8 * (32 + 16) per linear
    assert pruned.candidate("lora/1").params == 2 * 8 * (32 + 16) < full.candidate("lora/1").params
    assert pruned.candidate("adapter/1").params == full.candidate("adapter/1").params
    model = build_model(data.make_base(), pruned.plan_of(pruned.names))
    assert peft_trainable(model) == pruned.params and pruned.plan.method == "light-peft+prune-peft"
