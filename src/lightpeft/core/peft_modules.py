"""PEFT modules of any kind in a model: inject a plan's modules, and move their (and the head's) weights in and out.

Every kind is seen through one view, `peft_kinds.PeftUnit` (a frozen base linear, a branch, and the `down` /
`up` weights whose rows / columns are the prunable units: LoRA ranks, adapter bottleneck units).

Weights travel under canonical names relative to the HF task model: `<linear>.lora_A` / `<linear>.lora_B` for
LoRA, `<linear>.adapter_down` / `<linear>.adapter_up` for adapters, and `<head module>.<param>` for the task head,
so an estimate's weights can be sliced and loaded into a pruned model.
"""

from __future__ import annotations

import torch
from peft.utils import ModulesToSaveWrapper
from torch import nn

from lightpeft.core import heads
from lightpeft.core.peft_kinds import KINDS, PEFT_ADAPTER_NAME, hf_model, peft_units
from lightpeft.core.plan import Plan
from lightpeft.errors import LightPeftError

# ------------------------------------------------------------------------------------------------ injection


def inject_for_plan(model: nn.Module, plan: Plan) -> nn.Module:
    """Every PEFT module of the plan, each of its kind with its surviving units; a plan may mix kinds.

    Kinds go in registry order (LoRA first: peft wraps the model; adapters then go inside it). Each injection
    freezes everything but its own modules and the head, so trainability is set once, for all kinds, at the end.
    """
    if not plan.peft_modules:
        raise LightPeftError("the plan keeps no PEFT module; lower --module_ratio or --rank_ratio")
    for kind in (k for k in KINDS.values() if k.name in plan.kinds):
        entries = {n: e for n, e in plan.peft_modules.items() if e["kind"] == kind.name}
        units = {name: len(entry["units"]) for name, entry in entries.items()}
        injected = kind.inject(hf_model(model), plan.peft_configs[kind.name], list(entries), units)
        model = injected if hasattr(injected, "get_base_model") else model
    mark_trainable(model)
    return model


def mark_trainable(model: nn.Module) -> None:
    """Only PEFT modules and the trained task head learn (LoRA and adapters in one model)."""
    model.requires_grad_(False)
    for unit in peft_units(model).values():
        unit.down.requires_grad_(True)
        unit.up.requires_grad_(True)
    for head in trained_heads(model).values():
        head.requires_grad_(True)


# ------------------------------------------------------------------------------------------------ weights


def trained_heads(model: nn.Module) -> dict[str, nn.Module]:
    """The task head modules that train, by name relative to the HF model: peft's `modules_to_save` copy in a
    LoRA model (the original stays frozen), else the HF model's own (`heads.head_modules`)."""
    if hasattr(model, "get_base_model"):
        return {n: m.modules_to_save[PEFT_ADAPTER_NAME] for n, m in model.get_base_model().named_modules()
                if isinstance(m, ModulesToSaveWrapper)}
    return heads.head_modules(model)


def export_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """PEFT and head weights under canonical names (detached CPU copies)."""
    state = {}
    for name, unit in peft_units(model).items():
        down_key, up_key = unit.weights
        state[f"{name}.{down_key}"] = unit.down.detach().cpu().clone()
        state[f"{name}.{up_key}"] = unit.up.detach().cpu().clone()
    for name, head in trained_heads(model).items():
        for param_name, tensor in head.state_dict().items():
            state[f"{name}.{param_name}"] = tensor.detach().cpu().clone()
    return state


@torch.no_grad()
def import_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy canonical-named weights into a PEFT model; every PEFT and head weight must be present."""
    targets = {}
    for name, unit in peft_units(model).items():
        down_key, up_key = unit.weights
        targets[f"{name}.{down_key}"], targets[f"{name}.{up_key}"] = unit.down, unit.up
    for name, head in trained_heads(model).items():
        targets.update({f"{name}.{param_name}": t for param_name, t in head.state_dict().items()})
    missing = [key for key in targets if key not in state]
    if missing:
        raise LightPeftError(f"PEFT weights are missing {len(missing)} tensors (first: {missing[0]}); "
                             "the weights file does not belong to this plan")
    for key, target in targets.items():
        _copy(target, state[key], key)


def _copy(target: torch.Tensor, source: torch.Tensor, key: str) -> None:
    if target.shape != source.shape:
        raise LightPeftError(f"PEFT weight {key} has shape {tuple(source.shape)}, expected {tuple(target.shape)}; "
                             "the weights file does not belong to this plan")
    target.copy_(source.to(target.dtype))
