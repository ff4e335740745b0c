"""Estimate -> Plan: run the selection at the configured ratios (or the ones a budget solves for), and record what
the plan keeps and costs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig

from lightpeft.core.build import build_model
from lightpeft.core.counts import count_plan
from lightpeft.core.models import BaseModel
from lightpeft.core.peft_kinds import get_kind
from lightpeft.core.plan import Plan, with_kind
from lightpeft.core.surgery import slice_peft_state
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.budget import counted_step_cost, solve_budget
from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.estimate import Estimate
from lightpeft.methods.light_peft.plan_search import choose_ratios
from lightpeft.methods.light_peft.selection import choose, kv_heads_of


def make_plan(estimate: Estimate | str | Path, cfg: PlanConfig | None = None) -> Plan:
    """Choose survivors from an estimate (object or directory) at the ratios of `cfg` (paper defaults), or at
    the smallest ratios that meet the budget `cfg` names (`target_train_speedup`, `target_params_fraction`)."""
    cfg = cfg or PlanConfig()
    if not isinstance(estimate, Estimate):
        estimate = Estimate.load(estimate)
    config = _config_from_meta(estimate.meta)
    kind = estimate.meta.get("task_kind", "classification")
    budget = choice = None
    if cfg.target_train_speedup is not None or cfg.target_params_fraction is not None:
        cfg, budget = solve_budget(lambda c: structure_plan(estimate, c), config, cfg, kind)
    if cfg.max_metric_drop is not None:
        cfg, choice = choose_ratios(estimate.meta.get("plan_candidates"), cfg,
                                    lambda c: counted_step_cost(structure_plan(estimate, c), config, cfg, kind))
    plan = structure_plan(estimate, cfg)
    if budget:
        plan.ratios["budget"] = budget
    if choice:
        plan.ratios["accuracy_choice"] = choice
    meta = estimate.meta
    full_size = {name: (meta["peft"], meta["peft_config"]["r"]) for name in meta["module_roles"]}
    plan.counts = count_plan(plan, config, estimate_modules=full_size, kind=kind)
    return plan


def structure_plan(estimate: Estimate, cfg: PlanConfig) -> Plan:
    """The plan `cfg`'s ratios give on `estimate`, without parameter counts (cheap: no model is built)."""
    meta = estimate.meta
    roles = {name: tuple(role) for name, role in meta["module_roles"].items()}
    num_kv_heads = meta.get("num_kv_heads", meta["num_heads"])
    group_size = meta["num_heads"] // num_kv_heads
    heads, ffn, modules = choose(*estimate.structure_scores(cfg.structure_score), estimate.module_names,
                                 estimate.module_importance, estimate.rank_importance, cfg, roles, group_size,
                                 drop_widthless=get_kind(meta["peft"]).sliced_with_structure)
    return Plan(
        base_fingerprint=estimate.fingerprint, model_type=meta["model_type"], num_layers=meta["num_layers"],
        num_heads=meta["num_heads"], head_size=meta["head_size"], ffn_size=meta["ffn_size"], heads=heads, ffn=ffn,
        peft_modules=with_kind(modules, meta["peft"]), peft_configs={meta["peft"]: meta["peft_config"]},
        method="light-peft",
        ratios=vars(cfg).copy(), num_kv_heads=num_kv_heads, kv_heads=kv_heads_of(heads, group_size),
    )


def _config_from_meta(meta: dict):
    config = dict(meta["config"])
    return AutoConfig.for_model(config.pop("model_type"), **config)


def check_estimate_fits(estimate: Estimate, plan: Plan) -> None:
    if estimate.fingerprint != plan.base_fingerprint:
        raise LightPeftError("the estimate and the plan come from different base checkpoints; pass the estimate "
                             "the plan was made from")
    peft = estimate.meta["peft"]
    unknown = set(plan.peft_modules) - set(estimate.module_names)
    if plan.kinds != [peft] or unknown:
        raise LightPeftError(f"the plan ({plan.peft}) was not made from this estimate ({peft}, "
                             f"{len(unknown)} plan modules unknown to it); pass the estimate the plan was made from")


def initial_state(estimate: Estimate, plan: Plan) -> dict[str, torch.Tensor]:
    """The estimated PEFT and head weights cut to `plan`: where the method's training of the pruned model starts."""
    check_estimate_fits(estimate, plan)
    return slice_peft_state(estimate.peft_state, plan)


def prune(base: BaseModel, plan: Plan, estimate: Estimate | None = None):
    """A fresh pruned model for `plan`; with `estimate`, its PEFT modules and head continue from estimation."""
    return build_model(base, plan, initial_state(estimate, plan) if estimate is not None else None)
