"""Builders shared by tests: PEFT-wrapped tiny models with non-trivial weights, and plans from fake statistics."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lightpeft.core import arch
from lightpeft.core.adapters import add_adapters
from lightpeft.core.models import BaseModel
from lightpeft.core.peft_kinds import ADAPTER_PLACEMENTS, PEFT_ROLES, get_kind, lora_layers, peft_units, wrap_with_lora
from lightpeft.core.plan import Plan, with_kind
from lightpeft.fingerprint import fingerprint
from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.selection import choose, kv_heads_of

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SQUAD_MINI = TESTS / "fixtures" / "squad_mini.json"  # real Wikipedia passages, questions written for the tests
# the original GLUE / SuperGLUE files beside the checkout (tests that need them skip without)
SHARED_DATA = Path(os.environ.get("LIGHTPEFT_SHARED_DATA", REPO.parent / "shared" / "data"))


# Pruning cases every PEFT kind's "masked == physically pruned" test runs (each kind adds its own below them)
PRUNING_CASES = {
    "paper defaults": dict(cfg=PlanConfig()),
    "layer loses every head": dict(cfg=PlanConfig(head_ratio=0.5, head_scope="global"), kill_heads_layer=0),
    "layer loses every FFN neuron": dict(cfg=PlanConfig(ffn_ratio=0.5), kill_ffn_layer=1),
    "ratios close to 1": dict(cfg=PlanConfig(head_ratio=0.95, ffn_ratio=0.99, module_ratio=0.8, rank_ratio=0.9)),
    "unit pruning only, per module": dict(cfg=PlanConfig(head_ratio=0, ffn_ratio=0, module_ratio=0,
                                                          rank_ratio=0.6, rank_scope="layer")),
    "GQA: per group, a layer loses every head": dict(cfg=PlanConfig(head_ratio=0.5, head_scope="global",
                                                                    gqa_policy="per_group"), kill_heads_layer=1),
}


def as_base(model) -> BaseModel:
    return BaseModel(model=model, path="tiny", fingerprint=fingerprint(model), fresh_keys=[])


def lora_everywhere(model, r: int = 4, alpha: float = 8.0, seed: int = 0):
    """LoRA on all six roles with random (non-zero) A and B, so every LoRA branch changes the logits."""
    peft_model = wrap_with_lora(model, arch.linear_names(model, PEFT_ROLES), r, alpha, 0.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(peft_model).values():
            for part in (layer.lora_A["default"], layer.lora_B["default"]):
                part.weight.copy_(torch.randn(part.weight.shape, generator=g) * 0.3)
    return peft_model.eval()


def adapter_config(size: int = 4, placement: str = "houlsby") -> dict:
    return {"r": size, "dropout": 0.0, "init_std": 0.02, "activation": "relu", "scaling": 1.0,
            "placement": placement}


def adapters_everywhere(model, size: int = 4, placement: str = "houlsby", seed: int = 0):
    """Adapters on every placement role with large random weights, so every adapter changes the logits."""
    add_adapters(model, arch.linear_names(model, ADAPTER_PLACEMENTS[placement]), size, dropout=0.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for unit in peft_units(model).values():
            for weight in (unit.down, unit.up):
                weight.copy_(torch.randn(weight.shape, generator=g) * 0.3)
    return model.eval()


def random_plan(model, cfg: PlanConfig, r: int = 4, alpha: float = 8.0, seed: int = 0,
                kill_heads_layer: int | None = None, kill_ffn_layer: int | None = None, peft: str = "lora",
                placement: str = "houlsby") -> Plan:
    """A plan from random statistics; optionally make one layer's heads / neurons the lowest of all."""
    g = torch.Generator().manual_seed(seed)
    layers, heads, ffn = arch.num_layers(model), arch.num_heads(model.config), arch.ffn_size(model.config)
    head_masks, ffn_masks = torch.rand(layers, heads, generator=g), torch.rand(layers, ffn, generator=g)
    if kill_heads_layer is not None:
        head_masks[kill_heads_layer] -= 2.0
    if kill_ffn_layer is not None:
        ffn_masks[kill_ffn_layer] -= 2.0
    roles = arch.linear_roles(model, PEFT_ROLES if peft == "lora" else ADAPTER_PLACEMENTS[placement])
    names = list(roles)
    group = arch.kv_group_size(model.config)
    heads_kept, ffn_kept, modules = choose(head_masks, ffn_masks, names, torch.rand(len(names), generator=g),
                                           torch.rand(len(names), r, generator=g), cfg, roles, group,
                                           drop_widthless=get_kind(peft).sliced_with_structure)
    peft_config = {"r": r, "alpha": alpha, "dropout": 0.0} if peft == "lora" else adapter_config(r, placement)
    return Plan(base_fingerprint=fingerprint(model), model_type=model.config.model_type, num_layers=layers,
                num_heads=heads, head_size=arch.head_size(model.config), ffn_size=ffn, heads=heads_kept,
                ffn=ffn_kept, peft_modules=with_kind(modules, peft), peft_configs={peft: peft_config},
                ratios=vars(cfg).copy(),
                num_kv_heads=arch.num_kv_heads(model.config), kv_heads=kv_heads_of(heads_kept, group))


def load(task, **options):
    """`load_task` on a path with DataConfig options (shared by the data tests)."""
    from lightpeft.config import DataConfig
    from lightpeft.data import load_task

    return load_task(DataConfig(task=str(task), **options))


def load_error(task, **options) -> str:
    """The one-line LightPeftError message `load` raises."""
    import pytest

    from lightpeft.errors import LightPeftError

    with pytest.raises(LightPeftError) as excinfo:
        load(task, **options)
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)
