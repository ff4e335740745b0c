"""A fresh base checkpoint -> the pruned model a plan describes, with its PEFT modules and (optionally) their
initial weights. Physical pruning is a checkpoint boundary: weights are never resized under a live optimizer.
"""

from __future__ import annotations

import torch

from lightpeft.core import arch
from lightpeft.core.counts import count_plan
from lightpeft.core.heads import head_prefixes, kind_of_model
from lightpeft.core.models import BaseModel
from lightpeft.core.peft_kinds import PeftSettings, hf_model
from lightpeft.core.peft_modules import import_state, inject_for_plan
from lightpeft.core.plan import Plan, with_kind
from lightpeft.core.plan_checks import check_plan
from lightpeft.core.surgery import prune_backbone

FRESH_PREFIX = "fresh."  # backbone weights the checkpoint lacked (random init), kept so reloads match


def build_model(base: BaseModel, plan: Plan, peft_state: dict[str, torch.Tensor] | None = None,
                source: str = "the plan"):
    """Prune a fresh base physically to `plan`, inject its PEFT, and load `peft_state` (already plan-shaped) if given.

    The plan is checked against the base's structure first (`check_plan`; `source` names it in errors)."""
    plan.check_base(base.fingerprint)
    check_plan(plan, base.model, source)
    if peft_state:
        _load_fresh_backbone_weights(base.model, peft_state)
    prune_backbone(base.model, plan)
    model = inject_for_plan(base.model, plan)
    if peft_state:
        import_state(model, {k: v for k, v in peft_state.items() if not k.startswith(FRESH_PREFIX)})
    return model


def vanilla_plan(base: BaseModel, peft_cfg: PeftSettings) -> Plan:
    """Plain PEFT as a plan: nothing pruned, full-size PEFT on the vanilla targets (the paper's baseline).

    LoRA: r on `vanilla_targets` (q, v); adapters: every role of `adapter_placement`, full bottleneck.
    """
    model, config = base.model, base.model.config
    layers, heads, ffn = arch.num_layers(model), arch.num_heads(config), arch.ffn_size(config)
    kv_heads = arch.num_kv_heads(config)
    settings = peft_cfg.method_config()
    modules = with_kind({n: {"layer": layer, "role": role, "units": list(range(settings["r"]))}
                         for n, (layer, role) in arch.linear_roles(model, peft_cfg.vanilla_roles()).items()},
                        peft_cfg.peft)
    plan = Plan(
        base_fingerprint=base.fingerprint, model_type=config.model_type, num_layers=layers, num_heads=heads,
        head_size=arch.head_size(config), ffn_size=ffn, heads=[list(range(heads))] * layers,
        ffn=[list(range(ffn))] * layers, peft_modules=modules, peft_configs={peft_cfg.peft: settings},
        method="vanilla", num_kv_heads=kv_heads, kv_heads=[list(range(kv_heads))] * layers,
    )
    plan.counts = count_plan(plan, config, kind=kind_of_model(model))
    return plan


def fresh_backbone_state(base: BaseModel, model) -> dict[str, torch.Tensor]:
    heads = head_prefixes(hf_model(model))
    state = base.model.state_dict()
    return {FRESH_PREFIX + k: state[k].detach().cpu().clone() for k in base.fresh_keys
            if k in state and not k.startswith(heads)}


@torch.no_grad()
def _load_fresh_backbone_weights(model, state: dict[str, torch.Tensor]) -> None:
    """Put the run's copies of weights the checkpoint lacked into `model`, as new tensors (never in place: sibling
    task models built by `runs.load_tasks` share the base's tensors)."""
    for key, tensor in state.items():
        if not key.startswith(FRESH_PREFIX):
            continue
        owner_path, _, attr = key[len(FRESH_PREFIX):].rpartition(".")
        try:
            owner = model.get_submodule(owner_path) if owner_path else model
        except AttributeError:
            continue  # not part of this model (the caller checks the base fingerprint)
        if attr in owner._parameters:
            owner._parameters[attr] = torch.nn.Parameter(tensor.clone(), requires_grad=False)
        elif attr in owner._buffers:
            owner._buffers[attr] = tensor.clone()
