"""Named recipes: sets of values for the estimation and planning flags.

* `paper` (the default, and the dataclasses' own defaults): Light-PEFT's exact recipe (Gu et al. 2024 and its
  scripts): gates ranked by value after an estimation of 10% of the run, a third of the heads and FFN neurons
  pruned, 75% of the PEFT modules and half of the ranks, then a fresh schedule of the whole run.
* `accuracy`: the plan's size follows the task. Estimation runs at least 60 steps (at most half the run), holds out
  256 training rows, and the head/FFN ratios are the cheapest whose predicted drop on those rows is at most 1 point
  (see `plan_search`); the training stage runs the steps estimation left. Measured on Rotten Tomatoes (README).
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

ACCURACY = {
    **PAPER,
    "min_estimate_steps": 60,
    "plan_search_examples": 256,
    "max_metric_drop": 1.0,
    "train_schedule": "remaining",
}

VALUES = {"paper": PAPER, "accuracy": ACCURACY}


def recipe_values(name: str) -> dict:
    """Flag values of recipe `name` (every field PAPER names), plus `recipe` itself."""
    if name not in RECIPES:
        raise LightPeftError(f"--recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    return {**VALUES[name], "recipe": name}


def recipe_configs(name: str = "paper", **overrides) -> tuple[EstimateConfig, PlanConfig]:
    """(EstimateConfig, PlanConfig) of recipe `name`, with `overrides` (any field of either) on top."""
    values = {**recipe_values(name), **overrides}
    est_fields = {f.name for f in dataclasses.fields(EstimateConfig)}
    plan_fields = {f.name for f in dataclasses.fields(PlanConfig)}
    unknown = set(values) - est_fields - plan_fields
    if unknown:
        raise LightPeftError(f"unknown estimation/plan settings: {', '.join(sorted(unknown))}")
    return (EstimateConfig(**{k: v for k, v in values.items() if k in est_fields}),
            PlanConfig(**{k: v for k, v in values.items() if k in plan_fields}))
