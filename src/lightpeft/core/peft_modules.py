"""PEFT modules of either type (peft LoRA, our bottleneck adapters): inject them, and move their weights in and out.

Both types are seen through one view, `PeftUnit`: the frozen linear's `base` (whose output h the importance ratio
divides by), the `branch` module whose output times `scaling` is the PEFT delta, and the `down` (units, in) and `up`
(out, units) weights whose rows / columns are the prunable units (LoRA ranks, adapter bottleneck units).

Weights travel under canonical names relative to the HF task model: `<linear>.lora_A` / `<linear>.lora_B` for
LoRA, `<linear>.adapter_down` / `<linear>.adapter_up` for adapters, and `<head module>.<param>` for the task head,
so an estimate's weights can be sliced and loaded into a pruned model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils import ModulesToSaveWrapper
from torch import nn
from transformers import Conv1D

from lightpeft.core import adapters, arch, heads
from lightpeft.core.plan import Plan
from lightpeft.errors import LightPeftError

ADAPTER = "default"  # peft adapter name
WEIGHT_SUFFIXES = {"lora": ("lora_A", "lora_B"), "adapter": ("adapter_down", "adapter_up")}
# LoRA on q/k/v/o/FFN linears has a side of the pruned width; adapters act on hidden-size outputs only
SLICED_WITH_STRUCTURE = {"lora": True, "adapter": False}


@dataclass
class PeftUnit:
    """One PEFT module as importance and surgery see it (see the module docstring)."""

    peft: str
    base: nn.Module
    branch: nn.Module
    scaling: float
    down: nn.Parameter  # (units, in)
    up: nn.Parameter  # (out, units)


def hf_model(model: nn.Module) -> nn.Module:
    """The HF task model inside a peft model (adapter models are HF models already)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def lora_layers(model: nn.Module, adapter: str = ADAPTER) -> dict[str, LoraLayer]:
    """LoRA-wrapped linears of an HF model (or PeftModel), by name relative to the HF model."""
    return {n: m for n, m in hf_model(model).named_modules() if isinstance(m, LoraLayer) and adapter in m.lora_A}


def peft_units(model: nn.Module) -> dict[str, PeftUnit]:
    """Every LoRA layer and adapter of `model`, by the full name of the linear it sits on."""
    units = {name: PeftUnit("lora", layer.base_layer, layer.lora_B[ADAPTER], layer.scaling[ADAPTER],
                            layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight)
             for name, layer in lora_layers(model).items()}
    for name, layer in adapters.adapter_layers(hf_model(model)).items():
        adapter = layer.adapter
        units[name] = PeftUnit("adapter", layer.base_layer, adapter.up, adapter.scaling, adapter.down.weight,
                               adapter.up.weight)
    return units


def unit_params(peft: str, linear: nn.Module) -> int:
    """Trainable parameters one unit (LoRA rank, adapter bottleneck unit) costs on `linear`."""
    fan_in, fan_out = arch.features(linear)
    if peft == "lora":
        return fan_in + fan_out
    return 2 * fan_out  # adapter: hidden -> unit -> hidden


# ------------------------------------------------------------------------------------------------ injection


def wrap_with_lora(model: nn.Module, targets: list[str], r: int, alpha: float, dropout: float,
                   ranks: dict[str, int] | None = None) -> nn.Module:
    """Inject LoRA on exactly the linears `targets` (full names); `ranks` gives per-module ranks.

    With per-module ranks, alpha is rescaled per module (alpha_pattern) so the scaling stays alpha / r of the
    original rank: the method keeps the estimated LoRA's scale when it prunes ranks. The peft task type and the
    trained head follow the model's class (`heads.peft_task_type`).
    """
    config = LoraConfig(
        task_type=heads.peft_task_type(model),
        modules_to_save=heads.modules_to_save(model),
        target_modules=list(targets),
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        rank_pattern={re.escape(n): k for n, k in (ranks or {}).items() if k != r},
        alpha_pattern={re.escape(n): alpha * k / r for n, k in (ranks or {}).items() if k != r},
        # GPT-2's Conv1D stores weights (in, out); peft needs to be told (it only warns and fixes it otherwise)
        fan_in_fan_out=any(isinstance(model.get_submodule(t), Conv1D) for t in targets),
    )
    return get_peft_model(model, config)


def inject(model: nn.Module, peft: str, config: dict, targets: list[str],
           units: dict[str, int] | None = None) -> nn.Module:
    """PEFT of type `peft` with settings `config` (`PeftSettings.method_config()`) on the linears `targets`.

    `units` gives per-module unit counts (pruned ranks / bottlenecks). Everything else is frozen, except the task
    head (`heads.HEAD_NAMES`; a causal LM has none). Returns a peft model (LoRA) or `model` itself with adapters inside (adapter).
    """
    if not targets:
        raise LightPeftError("the plan keeps no PEFT module; lower --module_ratio or --rank_ratio")
    if peft == "lora":
        return wrap_with_lora(model, targets, config["r"], config["alpha"], config["dropout"], units)
    return adapters.add_adapters(model, targets, config["r"], config["activation"], config["dropout"],
                                 config["init_std"], config["scaling"], units)


def inject_for_plan(model: nn.Module, plan: Plan) -> nn.Module:
    """PEFT on the plan's surviving modules with their surviving units."""
    units = {name: len(entry["units"]) for name, entry in plan.peft_modules.items()}
    return inject(model, plan.peft, plan.peft_config, list(plan.peft_modules), units)


# ------------------------------------------------------------------------------------------------ weights


def head_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The trainable task head, by name relative to the HF model (peft's `modules_to_save` copy for LoRA)."""
    if hasattr(model, "get_base_model"):
        return {n: m.modules_to_save[ADAPTER] for n, m in model.get_base_model().named_modules()
                if isinstance(m, ModulesToSaveWrapper)}
    return heads.head_modules(model)


def export_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """PEFT and head weights under canonical names (detached CPU copies)."""
    state = {}
    for name, unit in peft_units(model).items():
        down_key, up_key = WEIGHT_SUFFIXES[unit.peft]
        state[f"{name}.{down_key}"] = unit.down.detach().cpu().clone()
        state[f"{name}.{up_key}"] = unit.up.detach().cpu().clone()
    for name, head in head_modules(model).items():
        for param_name, tensor in head.state_dict().items():
            state[f"{name}.{param_name}"] = tensor.detach().cpu().clone()
    return state


@torch.no_grad()
def import_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy canonical-named weights into a PEFT model; every PEFT and head weight must be present."""
    targets = {}
    for name, unit in peft_units(model).items():
        down_key, up_key = WEIGHT_SUFFIXES[unit.peft]
        targets[f"{name}.{down_key}"], targets[f"{name}.{up_key}"] = unit.down, unit.up
    for name, head in head_modules(model).items():
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
