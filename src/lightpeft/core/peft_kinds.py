"""The PEFT kinds a plan can put on a module, in one registry: LoRA (peft) and bottleneck adapters (ours).

Each kind says how it is configured (from `PeftSettings`), which roles it takes in estimation and in vanilla
training, how it is injected on a list of linears (with per-module unit counts after pruning), what its prunable
units cost, the canonical names of its unit-carrying weights, whether those weights have a side on a pruned width
(and so are cut with heads and neurons), and whether `lightpeft export` merges it into the base weights. A new kind
is one `PeftKind` and one `register` call; nothing else branches on the kind's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers import Conv1D
from transformers.activations import ACT2FN

from lightpeft.config import check_positive
from lightpeft.core import adapters, arch, heads
from lightpeft.errors import LightPeftError

PEFT_ADAPTER_NAME = "default"  # the name peft gives the one adapter a model carries


@dataclass
class PeftUnit:
    """One PEFT module of any kind as importance and surgery see it: the frozen linear `base` (whose output h the
    importance ratio divides by), the `branch` whose output times `scaling` is the PEFT delta, and the `down`
    (units, in) and `up` (out, units) weights whose rows / columns are the prunable units."""

    peft: str  # the kind's name
    base: nn.Module
    branch: nn.Module
    scaling: float
    down: nn.Parameter  # (units, in)
    up: nn.Parameter  # (out, units)

    @property
    def weights(self) -> tuple[str, str]:
        """Canonical suffixes of `down` and `up` (`lora_A`, `lora_B`, ...)."""
        return KINDS[self.peft].weights


def hf_model(model: nn.Module) -> nn.Module:
    """The HF task model inside a peft model (adapter models are HF models already)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def lora_layers(model: nn.Module, adapter: str = PEFT_ADAPTER_NAME) -> dict[str, LoraLayer]:
    """LoRA-wrapped linears of an HF model (or PeftModel), by name relative to the HF model."""
    return {n: m for n, m in hf_model(model).named_modules() if isinstance(m, LoraLayer) and adapter in m.lora_A}


@dataclass(frozen=True)
class PeftKind:
    """One PEFT kind (see the module docstring)."""

    name: str
    label: str  # for tables: "LoRA", "adapter"
    weights: tuple[str, str]  # canonical suffixes of the (units, in) and (out, units) weights of one module
    sliced_with_structure: bool  # a side of the pruned width: cut with the kept heads / neurons of its linear
    merges_on_export: bool
    settings: Callable[["PeftSettings"], dict]
    estimate_roles: Callable[["PeftSettings"], tuple[str, ...]]
    vanilla_roles: Callable[["PeftSettings"], tuple[str, ...]]
    inject: Callable[[nn.Module, dict, list[str], dict[str, int]], nn.Module]  # (model, settings, targets, units)
    unit_params: Callable[[nn.Module], int]  # trainable parameters of one unit on a linear
    find: Callable[[nn.Module], dict[str, PeftUnit]]  # this kind's modules in a model, by linear name


KINDS: dict[str, PeftKind] = {}


def register(kind: PeftKind) -> PeftKind:
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str, flag: str = "PEFT kind") -> PeftKind:
    if name not in KINDS:
        raise LightPeftError(f"{flag} {name!r} is not supported; use one of {', '.join(KINDS)}")
    return KINDS[name]


def peft_units(model: nn.Module) -> dict[str, PeftUnit]:
    """Every PEFT module of `model`, of any kind, by the full name of the linear it sits on."""
    return {name: unit for kind in KINDS.values() for name, unit in kind.find(model).items()}


def weight_suffixes() -> tuple[str, ...]:
    """`.lora_A`, `.lora_B`, `.adapter_down`, ...: how every kind's unit weights end in a canonical state dict."""
    return tuple("." + suffix for kind in KINDS.values() for suffix in kind.weights)


PEFT_ROLES = ("q", "k", "v", "o", "ffn_in", "ffn_out")
# Adapters sit on the OUTPUT of these roles' linears (before hidden dropout and LayerNorm).
ADAPTER_PLACEMENTS = {"houlsby": ("o", "ffn_out"), "pfeiffer": ("ffn_out",)}


@dataclass
class PeftSettings:
    peft: str = field(
        default="lora",
        metadata={"help": "PEFT kind: `lora` (peft LoRA) or `adapter` (bottleneck adapters, see --adapter_*). "
                  "Training from a plan takes the kind of each module from the plan."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; scaling is alpha / r."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    vanilla_targets: list[str] = field(
        default_factory=lambda: ["q", "v"],
        metadata={"help": f"Roles that get LoRA in vanilla training (no plan); roles: {', '.join(PEFT_ROLES)}. "
                  "LoRA only: adapters go where --adapter_placement says."},
    )
    estimate_targets: list[str] = field(
        default_factory=lambda: list(PEFT_ROLES),
        metadata={"help": "Roles that get LoRA during estimation (the paper: all six linears of every block). "
                  "LoRA only."},
    )
    adapter_size: int = field(default=8, metadata={"help": "Adapter bottleneck size (the paper: 8, = LoRA r)."})
    adapter_placement: str = field(
        default="houlsby",
        metadata={"help": "`houlsby`: an adapter after the attention output and after the FFN output of every "
                  "block (the paper); `pfeiffer`: after the FFN output only."},
    )
    adapter_activation: str = field(default="relu", metadata={"help": "Adapter bottleneck activation."})
    adapter_dropout: float = field(default=0.1, metadata={"help": "Dropout on the adapter input."})
    adapter_init_std: float = field(
        default=0.02, metadata={"help": "Both adapter projections start from N(0, std^2) (the paper: 0.02)."}
    )

    def __post_init__(self):
        get_kind(self.peft, flag="--peft")
        check_positive("lora_r", self.lora_r)
        check_positive("adapter_size", self.adapter_size)
        check_positive("adapter_init_std", self.adapter_init_std)
        for name in ("lora_dropout", "adapter_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise LightPeftError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        for role in [*self.vanilla_targets, *self.estimate_targets]:
            if role not in PEFT_ROLES:
                raise LightPeftError(f"unknown PEFT target role {role!r}; choose from {', '.join(PEFT_ROLES)}")
        if self.adapter_placement not in ADAPTER_PLACEMENTS:
            raise LightPeftError(f"--adapter_placement must be one of {', '.join(ADAPTER_PLACEMENTS)}, "
                                 f"got {self.adapter_placement!r}")
        if self.adapter_activation not in ACT2FN:
            raise LightPeftError(f"--adapter_activation {self.adapter_activation!r} is unknown; try relu, gelu, "
                                 "silu or tanh")

    def method_config(self) -> dict:
        """The settings a plan records for this PEFT kind; `r` is the units per module (rank or bottleneck size)."""
        return get_kind(self.peft).settings(self)

    def estimate_roles(self) -> list[str]:
        """Roles that get a PEFT module during estimation."""
        return list(get_kind(self.peft).estimate_roles(self))

    def vanilla_roles(self) -> list[str]:
        """Roles that get a PEFT module in vanilla training (adapters: every placement role, full size)."""
        return list(get_kind(self.peft).vanilla_roles(self))


# ------------------------------------------------------------------------------------------------ LoRA


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


def _lora_units(model: nn.Module) -> dict[str, PeftUnit]:
    return {name: PeftUnit("lora", layer.base_layer, layer.lora_B[PEFT_ADAPTER_NAME], layer.scaling[PEFT_ADAPTER_NAME],
                           layer.lora_A[PEFT_ADAPTER_NAME].weight, layer.lora_B[PEFT_ADAPTER_NAME].weight)
            for name, layer in lora_layers(model).items()}


def _inject_lora(model: nn.Module, settings: dict, targets: list[str], units: dict[str, int]) -> nn.Module:
    return wrap_with_lora(model, targets, settings["r"], settings["alpha"], settings["dropout"], units)


def _lora_unit_params(linear: nn.Module) -> int:
    fan_in, fan_out = arch.features(linear)
    return fan_in + fan_out  # one row of A (in) and one column of B (out)


LORA_KIND = register(PeftKind(
    name="lora", label="LoRA", weights=("lora_A", "lora_B"), sliced_with_structure=True, merges_on_export=True,
    settings=lambda s: {"r": s.lora_r, "alpha": s.lora_alpha, "dropout": s.lora_dropout},
    estimate_roles=lambda s: tuple(s.estimate_targets), vanilla_roles=lambda s: tuple(s.vanilla_targets),
    inject=_inject_lora, unit_params=_lora_unit_params, find=_lora_units,
))


# ------------------------------------------------------------------------------------------------ adapters


def _adapter_units(model: nn.Module) -> dict[str, PeftUnit]:
    return {name: PeftUnit("adapter", layer.base_layer, layer.adapter.up, layer.adapter.scaling,
                           layer.adapter.down.weight, layer.adapter.up.weight)
            for name, layer in adapters.adapter_layers(hf_model(model)).items()}


def _inject_adapters(model: nn.Module, settings: dict, targets: list[str], units: dict[str, int]) -> nn.Module:
    return adapters.add_adapters(model, targets, settings["r"], settings["activation"], settings["dropout"],
                                 settings["init_std"], settings["scaling"], units)


ADAPTER_KIND = register(PeftKind(
    # adapters act on hidden-size outputs, so pruning heads or neurons never cuts them
    name="adapter", label="adapter", weights=("adapter_down", "adapter_up"), sliced_with_structure=False,
    merges_on_export=False,
    settings=lambda s: {"r": s.adapter_size, "dropout": s.adapter_dropout, "init_std": s.adapter_init_std,
                        "activation": s.adapter_activation, "scaling": 1.0, "placement": s.adapter_placement},
    estimate_roles=lambda s: ADAPTER_PLACEMENTS[s.adapter_placement],
    vanilla_roles=lambda s: ADAPTER_PLACEMENTS[s.adapter_placement],
    inject=_inject_adapters, unit_params=lambda linear: 2 * arch.features(linear)[1],  # hidden -> unit -> hidden
    find=_adapter_units,
))
