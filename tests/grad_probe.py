"""One optimizer step through `make_trainer` on a tiny task model, returning the gradients that step applies.

Shared by tests/test_loss_scaling.py (1 process) and tests/distributed_grads.py (torchrun, 2 processes): the same 8
rows make one optimizer step whatever the batch size, accumulation steps and process count, so the gradients must
agree across those settings.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from lightpeft.core import arch
from lightpeft.core.peft_kinds import PEFT_ROLES, get_kind
from lightpeft.core.training import TrainerParts, make_trainer
from lightpeft.methods.light_peft import masks
from lightpeft.methods.light_peft.importance import ImportanceTracker
from lightpeft.methods.light_peft.trainer import EstimationTrainer

from conftest import tiny_config

ROWS, LENGTH = 8, 10
KINDS = ("classification", "regression", "qa", "causal_lm")


def tiny_task_model(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "causal_lm":
        return AutoModelForCausalLM.from_config(tiny_config("opt"))
    if kind == "qa":
        return AutoModelForQuestionAnswering.from_config(tiny_config("bert", num_labels=2))
    config = tiny_config("bert", num_labels=1 if kind == "regression" else 3)
    config.problem_type = "regression" if kind == "regression" else "single_label_classification"
    return AutoModelForSequenceClassification.from_config(config)


def rows(kind: str) -> list[dict]:
    """8 fixed-length rows; causal-LM rows have prompts and paddings of different lengths, so the token-weighted
    loss differs from a mean of per-row means."""
    g = torch.Generator().manual_seed(3)
    out = []
    for i in range(ROWS):
        ids = torch.randint(5, 100, (LENGTH,), generator=g)
        mask = torch.ones(LENGTH, dtype=torch.long)
        mask[LENGTH - i % 4:] = 0
        row = {"input_ids": ids.tolist(), "attention_mask": mask.tolist()}
        if kind == "classification":
            row["labels"] = i % 3
        elif kind == "regression":
            row["labels"] = float(torch.rand((), generator=g)) * 5
        elif kind == "qa":
            row["start_positions"], row["end_positions"] = 1 + i % 3, 3 + i % 4
        else:
            labels = torch.where(mask.bool(), ids, -100)
            labels[: 2 + i % 3] = -100  # the prompt
            row["labels"] = labels.tolist()
        out.append(row)
    return out


class _GradRecorder(TrainerCallback):
    """The gradients the optimizer is about to apply (after accumulation, all-reduce and clipping)."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def build_trainer(kind: str, stage: str, out_dir: str, l1_coef: float = 0.0, callbacks=(), **args) -> Trainer:
    """A trainer from `make_trainer` on `rows(kind)`; `stage`: `estimation` (EstimationTrainer: LoRA everywhere +
    gates, L1 `l1_coef`) or `training` (plain Trainer). `args`: TrainingArguments overrides."""
    model = tiny_task_model(kind)
    peft_model = get_kind("lora").inject(model, {"r": 4, "alpha": 8.0, "dropout": 0.0},
                                         arch.linear_names(model, PEFT_ROLES), {})
    extra = {}
    if stage == "estimation":
        handle = masks.attach_gates(model)
        extra = dict(cls=EstimationTrainer, gates=handle.gates, tracker=ImportanceTracker(peft_model, total_steps=1),
                     l1_coef=l1_coef, mask_lr_coef=1.0)
    args = TrainingArguments(**{**dict(output_dir=out_dir, max_steps=1, learning_rate=1e-3, logging_steps=1,
                                       save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, seed=0,
                                       ddp_find_unused_parameters=False), **args})
    return make_trainer(peft_model, args, rows(kind), None, None, TrainerParts(default_data_collator),
                        callbacks=list(callbacks), **extra)


def step_grads(kind: str, stage: str, batch_size: int, accumulation: int, out_dir: str, l1_coef: float = 0.0,
               max_grad_norm: float = 1e9) -> tuple[dict[str, torch.Tensor], float]:
    """(gradients by parameter name, grad norm clipping saw) of the first optimizer step on `rows(kind)`."""
    recorder = _GradRecorder()
    trainer = build_trainer(kind, stage, out_dir, l1_coef, [recorder], per_device_train_batch_size=batch_size,
                            gradient_accumulation_steps=accumulation, max_grad_norm=max_grad_norm)
    trainer.train()
    norm = next(h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h)
    return recorder.grads, float(norm)


def assert_same_grads(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    # float noise: relative to each tensor, plus a floor for entries that are 0 in theory (QA span-head biases)
    floor = 1e-7 * max(g.abs().max().item() for g in want.values())
    for name in want:
        ratio = (got[name].norm() / want[name].norm().clamp_min(1e-30)).item()
        atol = 1e-5 * want[name].abs().max().item() + floor
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=atol, msg=f"{name}: {ratio:.3f}x")
