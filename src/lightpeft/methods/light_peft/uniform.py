"""Uniform plans: the same number of heads (whole KV groups under grouped-query attention) and the same FFN width
in every layer, so the pruned model is one a standard Hugging Face config can describe.

Within a layer, keeping k units always means keeping that layer's k highest gates (that removes the least gate mass
the count allows), so a uniform plan is fixed by its shared counts. Two ways to get them from the plan's ratios
(`rule`):
  * `layer`: the quantile count rule applied to one layer's width (floor(ratio * (n - 1)) + 1 pruned per layer);
  * `global`: the rule applied to all layers' units together, divided evenly over the layers and rounded.
They differ by at most one unit per layer. Measured on a real estimate (MiniLM-L6, rotten_tomatoes, 2,000 rows, 30
steps, seed 42) they give the same count, hence the same units, at ratios 1/3, 0.5 and 0.7; against the default
plan's global FFN ranking at 1/3, the uniform plan removes 0.008 % more gate mass (2979.06 vs 2978.83). `layer` is
used: it is the rule the default plan already applies to heads, so a uniform plan's heads equal the default's.

Which parts a family's standard config can shrink is decided by the caller (`core.standard`): BERT-style configs
derive the head size from hidden_size / num_attention_heads, so there `head_ratio` arrives as 0.
"""

from __future__ import annotations

import dataclasses

import torch

from lightpeft.core.peft_kinds import KINDS
from lightpeft.core.standard import can_prune_heads
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.selection import keep_heads, lowest, num_to_prune

SHARED_COUNT_RULE = "layer"  # see the module docstring


def shared_prune_count(rows: int, width: int, ratio: float, rule: str = SHARED_COUNT_RULE) -> int:
    """Units pruned in every one of `rows` layers of `width` units, at `ratio`, never all of them."""
    if rule == "layer":
        count = num_to_prune(width, ratio)
    else:
        count = round(num_to_prune(rows * width, ratio) / rows)
    return min(count, width - 1) if ratio > 0 else 0


def keep_top(scores: torch.Tensor, keep: int) -> list[list[int]]:
    """The `keep` highest-scoring columns of every row (rows = layers), sorted; ties: lower index kept."""
    out = []
    for row in scores:
        pruned = set(lowest(row, row.numel() - keep))
        out.append([c for c in range(row.numel()) if c not in pruned])
    return out


def uniform_structure(head_masks: torch.Tensor, ffn_masks: torch.Tensor, cfg: PlanConfig, group_size: int = 1,
                      rule: str = SHARED_COUNT_RULE) -> tuple[list[list[int]], list[list[int]]]:
    """Kept heads and FFN neurons per layer, with one head count and one FFN width for every layer."""
    layers, heads = head_masks.shape
    if group_size > 1 and cfg.gqa_policy == "per_group":
        # the per-layer quantile rule already gives every layer (and every group) the same query-head count
        kept_heads = keep_heads(head_masks, dataclasses.replace(cfg, head_scope="layer"), group_size)
    else:  # whole KV groups, each scored by the mean gate of its query heads (a group of one without GQA)
        groups = head_masks.reshape(layers, heads // group_size, group_size).mean(dim=-1)  # (L, H) -> (L, KV)
        count = groups.shape[1] - shared_prune_count(layers, groups.shape[1], cfg.head_ratio, rule)
        kept_heads = [[g * group_size + i for g in kept for i in range(group_size)] for kept in keep_top(groups, count)]
    width = ffn_masks.shape[1]
    keep = width - shared_prune_count(layers, width, cfg.ffn_ratio, rule)
    if cfg.round_to > 1:
        keep = max(1, min(width, cfg.round_to * round(keep / cfg.round_to)))
    return kept_heads, keep_top(ffn_masks, keep)


def removed_gate_mass(masks: torch.Tensor, kept: list[list[int]]) -> float:
    """Sum of the gates a plan prunes (signed, as ranked): what the comparison of count rules measures."""
    total = float(masks.sum())
    return total - sum(float(row[torch.tensor(k, dtype=torch.long)].sum()) for row, k in zip(masks, kept) if k)


def fit_to_standard_config(cfg: PlanConfig, config, peft: str) -> PlanConfig:
    """`cfg` as a uniform plan of this family can honour it: no head pruning where a standard config cannot hold
    fewer heads. Adapters are refused: a standard checkpoint has no place for them (LoRA merges into the weights)."""
    if not cfg.uniform:
        return cfg
    check_uniform_peft(cfg, peft)
    if not can_prune_heads(config) and cfg.head_ratio > 0:
        return dataclasses.replace(cfg, head_ratio=0.0)
    return cfg


def check_uniform_peft(cfg: PlanConfig, peft: str) -> None:
    """Refuse a uniform plan for a PEFT kind that a standard checkpoint cannot hold (before any work is done)."""
    if cfg.uniform and not KINDS[peft].merges_on_export:
        raise LightPeftError(f"--uniform true exports a standard checkpoint, which cannot hold {peft} modules; use "
                             "--peft lora (merged into the pruned weights on export)")


def uniform_note(cfg: PlanConfig, config) -> str | None:
    """What a user who asked for head pruning should hear when the family's standard config cannot hold it."""
    if cfg.uniform and cfg.head_ratio > 0 and not can_prune_heads(config):
        return (f"--uniform true on a {config.model_type} model prunes FFN neurons only: its standard config derives "
                "the head size from hidden_size / num_attention_heads, so every head is kept (--head_ratio ignored)")
    return None
