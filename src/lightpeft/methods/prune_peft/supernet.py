"""The search space as a supernet: every candidate PEFT module in every layer, and the plan a set of survivors makes.

The supernet sits on the base as it is, or on a backbone another method pruned (`structure`: a plan whose kept heads
and FFN neurons it keeps, e.g. Light-PEFT's): candidates are then sized on the pruned widths, and a LoRA candidate
of a layer that lost all its heads (nothing left to adapt) is left out.

A candidate is what the search keeps or removes as one: a layer's LoRA (on all of `--lora_roles`, q and v by
default, as in the paper) or one serial adapter (after the output of one of `--adapter_roles`). Candidates are
named `<group>/<layer>`: `lora/3`, `adapter/3` (after the FFN output), `adapter_o/3` (after the attention output).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from lightpeft.core import arch
from lightpeft.core.build import vanilla_plan
from lightpeft.core.counts import count_plan
from lightpeft.core.heads import kind_of_model, meta_task_model
from lightpeft.core.models import BaseModel
from lightpeft.core.peft_kinds import PeftSettings, get_kind, peft_units
from lightpeft.core.plan import Plan
from lightpeft.core.surgery import prune_backbone
from lightpeft.methods.prune_peft.config import SearchConfig


@dataclass(frozen=True)
class Candidate:
    name: str  # `lora/3`
    kind: str  # PEFT kind: `lora`, `adapter`
    layer: int
    linears: tuple[str, ...]  # full names of the linears it sits on
    params: int  # trainable parameters


def group_of(kind: str, role: str) -> str:
    return "lora" if kind == "lora" else ("adapter" if role == "ffn_out" else f"adapter_{role}")


@dataclass
class Supernet:
    """Every candidate of the search space on one base, and the plan that holds all of them."""

    candidates: list[Candidate]
    plan: Plan  # all candidates, nothing of the backbone pruned
    num_layers: int

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.candidates]

    @property
    def params(self) -> int:
        return sum(c.params for c in self.candidates)

    def candidate(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)

    def plan_of(self, kept: list[str]) -> Plan:
        """The supernet's plan keeping only the candidates `kept` (no counts: see `counted_plan`)."""
        kept_linears = {linear for c in self.candidates if c.name in kept for linear in c.linears}
        modules = {n: e for n, e in self.plan.peft_modules.items() if n in kept_linears}
        kinds = {e["kind"] for e in modules.values()}
        return dataclasses.replace(self.plan, peft_modules=modules, counts={}, ratios={},
                                   peft_configs={k: v for k, v in self.plan.peft_configs.items() if k in kinds})


def build_supernet(base: BaseModel, peft_cfg: PeftSettings, cfg: SearchConfig, structure: Plan | None = None,
                   method: str = "prune-peft") -> Supernet:
    """Candidates of `cfg`'s search space on `base` (LoRA r = --lora_r, adapters of --adapter_size), on the backbone
    `structure` prunes (None: the whole base). `method` names what made the plans."""
    model = base.model
    plan = structure or vanilla_plan(base, peft_cfg)
    # widths after pruning, from a weightless copy (the names are the base's)
    sized = model if structure is None else prune_backbone(meta_task_model(model.config, kind_of_model(model)),
                                                           structure)
    modules, configs, candidates = {}, {}, {}
    for kind, roles in (("lora", cfg.lora_roles), ("adapter", cfg.adapter_roles)):
        if not roles:
            continue
        settings = PeftSettings(**{**dataclasses.asdict(peft_cfg), "peft": kind}).method_config()
        if kind == "adapter":
            settings["placement"] = "pfeiffer" if list(roles) == ["ffn_out"] else "houlsby"
        configs[kind] = settings
        unit_params = get_kind(kind).unit_params
        for name, (layer, role) in arch.linear_roles(model, roles).items():
            linear = _submodule(sized, name)
            if linear is None or (kind == "lora" and min(arch.features(linear)) == 0):
                continue  # a layer without heads (no attention left) or FFN neurons: nothing to adapt
            modules[name] = {"layer": layer, "role": role, "kind": kind, "units": list(range(settings["r"]))}
            group = group_of(kind, role)
            key = f"{group}/{layer}"
            linears, params = candidates.get(key, ((), 0))
            candidates[key] = (linears + (name,), params + settings["r"] * unit_params(linear))
    ordered = sorted(candidates.items(), key=lambda item: (int(item[0].split("/")[1]), item[0]))
    plan = dataclasses.replace(plan, peft_modules=modules, peft_configs=configs, method=method, counts={}, ratios={})
    return Supernet([Candidate(key, modules[linears[0]]["kind"], modules[linears[0]]["layer"], linears, params)
                     for key, (linears, params) in ordered], plan, arch.num_layers(model))


def _submodule(model, name: str):
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def counted_plan(supernet: Supernet, kept: list[str], base: BaseModel) -> Plan:
    """`plan_of(kept)` with its parameter counts (against the whole supernet as what it was chosen from)."""
    plan = supernet.plan_of(kept)
    full = {n: (e["kind"], len(e["units"])) for n, e in supernet.plan.peft_modules.items()}
    plan.counts = count_plan(plan, base.model.config, estimate_modules=full, kind=kind_of_model(base.model))
    return plan


def vanilla_params(base: BaseModel, peft_cfg: PeftSettings) -> int:
    """Trainable PEFT parameters of the vanilla configuration (the reference of --budget_fraction)."""
    plan = vanilla_plan(base, peft_cfg)
    return sum(get_kind(e["kind"]).unit_params(base.model.get_submodule(n)) * len(e["units"])
               for n, e in plan.peft_modules.items())


@torch.no_grad()
def start_as_identity(model) -> None:
    """Zero every PEFT module's up-projection (LoRA B, adapter up), so each fresh module leaves the model as it is;
    the down-projections keep their kind's random init (LoRA: peft's Kaiming-uniform A; adapters: N(0, std^2))."""
    for unit in peft_units(model).values():
        unit.up.zero_()
