"""Estimation stopped by mask convergence: the decision rule, and an importance window that stays exact."""

from types import SimpleNamespace

import pytest
import torch

from lightpeft.core import arch
from lightpeft.core.peft_kinds import wrap_with_lora
from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.convergence import MaskConvergence, flipped_fraction, keep_set
from lightpeft.methods.light_peft.importance import ImportanceTracker
from lightpeft.methods.light_peft.masks import Gates
from lightpeft.methods.light_peft.selection import keep_structure

from conftest import tiny_batch, tiny_model


def lora_model(seed=0):
    model = tiny_model(seed=seed)
    peft_model = wrap_with_lora(model, arch.linear_names(model, ["q", "v"]), r=2, alpha=4.0, dropout=0.0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    return peft_model.train()


def run_steps(model, tracker, steps, mark_every=None):
    batch = {**tiny_batch(), "labels": torch.tensor([0, 1, 2])}
    for step in range(1, steps + 1):
        model.zero_grad()
        g = torch.Generator().manual_seed(step)
        batch["input_ids"] = torch.randint(5, 100, batch["input_ids"].shape, generator=g)
        model(**batch).loss.backward()
        tracker.end_step()
        if mark_every and step % mark_every == 0:
            tracker.mark()


@pytest.mark.parametrize("stop_at", [4, 7])
def test_marked_window_equals_the_exact_window_of_a_run_that_length(stop_at):
    """Stopped early at step s with a mark every step, importance = the window mean of a run planned for s steps."""
    exact_model, marked_model = lora_model(), lora_model()
    exact = ImportanceTracker(exact_model, total_steps=stop_at, window=0.5)
    marked = ImportanceTracker(marked_model, total_steps=20, window=0.5, marks=True)
    run_steps(exact_model, exact, stop_at)
    run_steps(marked_model, marked, stop_at, mark_every=1)
    for a, b in zip(exact.results()[1:], marked.results()[1:]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-8)


def test_keep_sets_and_distance():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])
    keep = keep_set(scores, 1 / 3, "layer")
    assert keep.tolist() == [[False, True, True], [True, False, True]]
    assert flipped_fraction(keep, keep) == 0.0
    assert flipped_fraction(keep, ~keep) == 1.0


def fake_step(callback, step):
    control = SimpleNamespace(should_training_stop=False)
    callback.on_step_end(None, SimpleNamespace(global_step=step), control)
    return control.should_training_stop


def test_stops_after_patience_calm_checks_and_not_while_gates_move():
    gates = Gates(2, 4, 10)
    tracker = SimpleNamespace(mark=lambda: None)
    calm = MaskConvergence(gates, tracker, PlanConfig(), every=2, threshold=0.0, patience=2)
    assert [fake_step(calm, s) for s in range(1, 8)] == [False, False, False, False, False, True, False][:7]
    assert calm.converged_at == 6 and len(calm.history) == 2

    moving = MaskConvergence(gates, tracker, PlanConfig(), every=1, threshold=0.0, patience=1)
    stops = []
    for step in range(1, 6):
        with torch.no_grad():
            gates.head.copy_(torch.rand(2, 4, generator=torch.Generator().manual_seed(step)))
        stops.append(fake_step(moving, step))
    assert not any(stops) and all(h["head_distance"] > 0 for h in moving.history)


def test_estimation_stops_early_and_records_why(tiny_model_dir, tiny_csv, tmp_path):
    from lightpeft import DataConfig, EstimateConfig, LightPeftTrainingArguments, ModelConfig, PeftSettings, estimate

    args = LightPeftTrainingArguments(output_dir=str(tmp_path / "est"), per_device_train_batch_size=8,
                                      disable_tqdm=True, use_cpu=True, seed=0)
    est = estimate(ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                   PeftSettings(), EstimateConfig(estimate_steps=30, mask_convergence=0.5, convergence_every=2,
                                                  convergence_patience=2), args)
    convergence = est.meta["convergence"]
    assert convergence["converged_at"] == est.meta["steps"] < est.meta["max_steps"] == 30
    assert len(convergence["history"]) >= 2 and est.module_importance.abs().sum() > 0


@pytest.mark.parametrize("cfg", [PlanConfig(gqa_policy="kv_group"), PlanConfig(gqa_policy="per_group"),
                                 PlanConfig(round_to=4), PlanConfig(head_scope="global", ffn_scope="global")],
                         ids=["kv_group", "per_group", "round_to", "global"])
def test_convergence_watches_the_decision_the_plan_makes(cfg):
    """On grouped-query attention and with rounding, the keep sets convergence compares are the plan's own."""
    gates = Gates(3, 6, 20)
    with torch.no_grad():
        gates.head.copy_(torch.rand(3, 6, generator=torch.Generator().manual_seed(0)))
        gates.ffn.copy_(torch.rand(3, 20, generator=torch.Generator().manual_seed(1)))
    watcher = MaskConvergence(gates, SimpleNamespace(mark=lambda: None), cfg, every=1, threshold=0.0, patience=1,
                              group_size=3)  # 6 query heads over 2 KV heads
    heads, ffn = keep_structure(gates.head.detach(), gates.ffn.detach(), cfg, group_size=3)
    head_keep, ffn_keep = watcher._keep()
    assert [row.nonzero().flatten().tolist() for row in head_keep] == heads
    assert [row.nonzero().flatten().tolist() for row in ffn_keep] == ffn
