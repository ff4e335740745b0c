"""Named recipes: sets of defaults for the estimation and planning flags.

`default` is the dataclasses' own defaults (what `EstimateConfig()` / `PlanConfig()` give): the recipe chosen by
measurement for short runs on small machines (see the README's benchmark section). `paper` is Light-PEFT's exact
recipe (Gu et al. 2024 and its scripts): gates ranked by value after an estimation of 10% of the run, a third of
the heads and FFN neurons pruned, 75% of the PEFT modules and half of the ranks.
On the command line a recipe is applied first; a --config file and explicit flags override it.
"""

from __future__ import annotations

import dataclasses

from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import RECIPES, REFERENCE_THIRD, EstimateConfig, PlanConfig

PAPER = {
    "l1_coef": 1e-4,
    "mask_lr_coef": 1.0,
    "estimate_fraction": 0.1,
    "min_estimate_steps": 0,
    "mask_convergence": None,
    "importance_window": 0.5,
    "plan_search_examples": 0,
    "train_schedule": "full",
    "structure_score": "gate",
    "max_metric_drop": None,
    "head_ratio": REFERENCE_THIRD,
    "ffn_ratio": REFERENCE_THIRD,
    "head_scope": "layer",
    "ffn_scope": "global",
    "module_ratio": 0.75,
    "rank_ratio": 0.5,
    "rank_scope": "global",
    "min_peft_layer": 0,
    "round_to": 1,
}


def _defaults(cls) -> dict:
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cls)}


def recipe_values(name: str) -> dict:
    """Flag values of recipe `name`, for every field PAPER names, plus `recipe` itself."""
    if name not in RECIPES:
        raise LightPeftError(f"--recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    defaults = {**_defaults(EstimateConfig), **_defaults(PlanConfig)}
    values = PAPER if name == "paper" else {key: defaults[key] for key in PAPER}
    return {**values, "recipe": name}


def recipe_configs(name: str = "default", **overrides) -> tuple[EstimateConfig, PlanConfig]:
    """(EstimateConfig, PlanConfig) of recipe `name`, with `overrides` (any field of either) on top."""
    values = {**recipe_values(name), **overrides}
    est_fields = {f.name for f in dataclasses.fields(EstimateConfig)}
    plan_fields = {f.name for f in dataclasses.fields(PlanConfig)}
    unknown = set(values) - est_fields - plan_fields
    if unknown:
        raise LightPeftError(f"unknown estimation/plan settings: {', '.join(sorted(unknown))}")
    return (EstimateConfig(**{k: v for k, v in values.items() if k in est_fields}),
            PlanConfig(**{k: v for k, v in values.items() if k in plan_fields}))
