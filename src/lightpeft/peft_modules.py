"""LoRA through peft: inject it as a plan says, and move its weights (plus the task head) in and out.

Weights travel under canonical names relative to the HF task model: `<linear>.lora_A` (r, in), `<linear>.lora_B`
(out, r) and `<head module>.<param>`, so an estimate's weights can be sliced and loaded into a pruned model.
"""

from __future__ import annotations

import re

import torch
from peft import LoraConfig, TaskType, get_peft_model
from peft.utils import ModulesToSaveWrapper
from torch import nn
from transformers.pytorch_utils import Conv1D

from .errors import LightPeftError
from .importance import lora_layers
from .plan import Plan

ADAPTER = "default"


def wrap_with_lora(model: nn.Module, targets: list[str], r: int, alpha: float, dropout: float,
                   ranks: dict[str, int] | None = None) -> nn.Module:
    """Inject LoRA on exactly the linears `targets` (full names); `ranks` gives per-module ranks.

    With per-module ranks, alpha is rescaled per module (alpha_pattern) so the scaling stays alpha / r of the
    original rank: the method keeps the estimated LoRA's scale when it prunes ranks.
    """
    if not targets:
        raise LightPeftError("the plan keeps no PEFT module; lower --module_ratio or --rank_ratio")
    ranks = ranks or {}
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        target_modules=list(targets),
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        rank_pattern={re.escape(n): k for n, k in ranks.items() if k != r},
        alpha_pattern={re.escape(n): alpha * k / r for n, k in ranks.items() if k != r},
        # GPT-2's Conv1D stores weights (in, out); peft needs to be told (it only warns and fixes it otherwise)
        fan_in_fan_out=any(isinstance(model.get_submodule(t), Conv1D) for t in targets),
    )
    return get_peft_model(model, config)


def wrap_for_plan(model: nn.Module, plan: Plan) -> nn.Module:
    """LoRA on the plan's surviving modules with their surviving ranks."""
    ranks = {name: len(entry["ranks"]) for name, entry in plan.lora_modules.items()}
    return wrap_with_lora(model, list(plan.lora_modules), plan.lora_r, plan.lora_alpha, plan.lora_dropout, ranks)


def head_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Trainable task-head copies that peft keeps in full (`modules_to_save`), by name relative to the HF model."""
    hf_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {n: m.modules_to_save[ADAPTER] for n, m in hf_model.named_modules() if isinstance(m, ModulesToSaveWrapper)}


def export_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA and head weights under canonical names (detached CPU copies)."""
    state = {}
    for name, layer in lora_layers(model, ADAPTER).items():
        state[f"{name}.lora_A"] = layer.lora_A[ADAPTER].weight.detach().cpu().clone()
        state[f"{name}.lora_B"] = layer.lora_B[ADAPTER].weight.detach().cpu().clone()
    for name, head in head_modules(model).items():
        for param_name, tensor in head.state_dict().items():
            state[f"{name}.{param_name}"] = tensor.detach().cpu().clone()
    return state


@torch.no_grad()
def import_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy canonical-named weights into a LoRA-wrapped model; every LoRA and head weight must be present."""
    missing = []
    for name, layer in lora_layers(model, ADAPTER).items():
        for part in ("lora_A", "lora_B"):
            key = f"{name}.{part}"
            if key not in state:
                missing.append(key)
                continue
            _copy(getattr(layer, part)[ADAPTER].weight, state[key], key)
    for name, head in head_modules(model).items():
        for param_name, tensor in head.state_dict().items():
            key = f"{name}.{param_name}"
            if key not in state:
                missing.append(key)
                continue
            _copy(tensor, state[key], key)
    if missing:
        raise LightPeftError(f"PEFT weights are missing {len(missing)} tensors (first: {missing[0]}); "
                             "the weights file does not belong to this plan")


def _copy(target: torch.Tensor, source: torch.Tensor, key: str) -> None:
    if target.shape != source.shape:
        raise LightPeftError(f"PEFT weight {key} has shape {tuple(source.shape)}, expected {tuple(target.shape)}; "
                             "the weights file does not belong to this plan")
    target.copy_(source.to(target.dtype))
