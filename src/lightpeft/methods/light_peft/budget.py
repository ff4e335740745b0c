"""Pruning ratios from a budget: a target training speed-up (counted FLOPs) or a foundation-parameter fraction.

Training-step cost model, per token: every block runs forward; backward (input gradients of frozen weights)
runs only from the top down to the lowest block that holds a trainable parameter, because nothing below it
needs a gradient. A block costs 2 x (its linear weights) for its projections plus 4 x seq_len x kept heads x
head size for attention scores and context. Vanilla PEFT (LoRA in block 0) pays forward + backward everywhere.

Search: head and FFN ratios rise together in steps of 0.05 from the configured ones; for each, the lowest PEFT
block rises from 0. The first (ratio, block) meeting the target wins, so structural pruning stays at the paper's
ratios whenever moving the PEFT modules up is enough.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lightpeft.core.counts import block_costs, foundation_params, lowest_peft_block, train_step_cost
from lightpeft.core.plan import Plan
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import PlanConfig

RATIO_STEP = 0.05
MAX_RATIO = 0.9


def _ratios(cfg: PlanConfig) -> list[float]:
    start = max(cfg.head_ratio, cfg.ffn_ratio)
    steps = int((MAX_RATIO - start) / RATIO_STEP) + 1
    return [start + i * RATIO_STEP for i in range(max(1, steps))]


def counted_step_cost(plan: Plan, config, cfg: PlanConfig, kind: str = "classification") -> float:
    """Counted FLOPs of one training step of `plan` (see the module docstring), at `cfg.budget_seq_length`."""
    return train_step_cost(block_costs(plan, config, cfg.budget_seq_length, kind), lowest_peft_block(plan))


def solve_budget(make: Callable[[PlanConfig], Plan], config, cfg: PlanConfig,
                 kind: str = "classification") -> tuple[PlanConfig, dict]:
    """The PlanConfig (ratios, lowest PEFT block) meeting `cfg`'s budget, and a record of what it achieves."""
    full = make(dataclasses.replace(cfg, head_ratio=0.0, ffn_ratio=0.0, min_peft_layer=0,
                                    target_train_speedup=None, target_params_fraction=None))
    base = dataclasses.replace(cfg, target_train_speedup=None, target_params_fraction=None)
    if cfg.target_params_fraction is not None:
        total = foundation_params(full, config, kind)
        for ratio in _ratios(cfg):
            trial = dataclasses.replace(base, head_ratio=ratio, ffn_ratio=ratio)
            kept = foundation_params(make(trial), config, kind) / total
            if kept <= cfg.target_params_fraction:
                return trial, {"target_params_fraction": cfg.target_params_fraction, "params_fraction": kept,
                               "ratio": ratio}
        raise LightPeftError(f"--target_params_fraction {cfg.target_params_fraction} needs more than "
                             f"{MAX_RATIO:.0%} of heads and neurons pruned; ask for a larger fraction")
    vanilla_cost = train_step_cost(block_costs(full, config, cfg.budget_seq_length, kind), 0)
    for ratio in _ratios(cfg):
        structural = dataclasses.replace(base, head_ratio=ratio, ffn_ratio=ratio)
        costs = block_costs(make(structural), config, cfg.budget_seq_length, kind)
        for block in range(len(costs)):
            trial = dataclasses.replace(structural, min_peft_layer=block)
            speedup = vanilla_cost / train_step_cost(costs, lowest_peft_block(make(trial)))
            if speedup >= cfg.target_train_speedup:
                return trial, {"target_train_speedup": cfg.target_train_speedup, "counted_speedup": speedup,
                               "ratio": ratio, "min_peft_layer": block, "seq_length": cfg.budget_seq_length}
    raise LightPeftError(f"--target_train_speedup {cfg.target_train_speedup} is out of reach even with "
                         f"{MAX_RATIO:.0%} of heads and neurons pruned and PEFT only in the top block; ask for less")
