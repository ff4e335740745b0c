"""Light-PEFT's selection: which heads, neurons, PEFT modules and units survive, from estimation scores.

Selection follows the reference's quantile rule "prune a unit iff its score <= quantile(scores, ratio)" (numpy
linear interpolation) in its count form: for n distinct scores that prunes exactly floor(ratio * (n - 1)) + 1
units (ratio > 0), e.g. 4 of 12 heads and 5 of 16 at the reference's ratio 0.333333333 (the default; exactly 1/3
prunes 6 of 16, as numpy's quantile does too). The count form stays well defined under ties (ties are broken by
index) and prunes nothing at ratio 0, so ratio 0 reproduces vanilla structure exactly.

Grouped-query attention (Llama, Mistral, Qwen): gates are per query head, but k/v rows are shared by a group of
query heads, and `num_key_value_groups` (query heads per KV head) must stay one integer per layer. `keep_heads`
offers two policies (`PlanConfig.gqa_policy`):
  * `kv_group` (default): prune whole KV groups, each scored by the mean gate of its query heads, with the count
    rule over groups. k/v projections and the KV cache shrink with the query heads; groups keep their size.
  * `per_group`: prune the same number of query heads in every group of a layer (the layer's count from the
    ordinary rule, divided by the number of groups and rounded), lowest gates first; k/v stay whole.
"""

from __future__ import annotations

import math

import torch

from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import PlanConfig


def num_to_prune(n: int, ratio: float) -> int:
    """How many of n units the quantile rule prunes at `ratio` (distinct scores)."""
    if ratio <= 0 or n == 0:
        return 0
    return min(n, math.floor(ratio * (n - 1)) + 1)


def lowest(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k smallest scores; ties broken by lower index first."""
    order = torch.sort(scores.flatten().double(), stable=True).indices
    return order[:k].tolist()


def keep_per_row(scores: torch.Tensor, ratio: float, scope: str) -> list[list[int]]:
    """Kept column indices per row of `scores` (rows = layers), pruning per row or over the whole matrix."""
    rows, cols = scores.shape
    if scope == "layer":
        pruned = [set(lowest(row, num_to_prune(cols, ratio))) for row in scores]
    else:
        flat = lowest(scores, num_to_prune(rows * cols, ratio))
        pruned = [set() for _ in range(rows)]
        for index in flat:
            pruned[index // cols].add(index % cols)
    return [[c for c in range(cols) if c not in pruned[r]] for r in range(rows)]


def keep_heads(head_masks: torch.Tensor, cfg: PlanConfig, group_size: int = 1) -> list[list[int]]:
    """Kept query heads per layer; with grouped-query attention (`group_size` > 1), by `cfg.gqa_policy`."""
    if group_size == 1:
        return keep_per_row(head_masks, cfg.head_ratio, cfg.head_scope)
    layers, heads = head_masks.shape
    groups = head_masks.reshape(layers, heads // group_size, group_size)  # (L, H) -> (L, KV, G)
    if cfg.gqa_policy == "kv_group":
        if groups.shape[1] == 1 and cfg.head_scope == "layer" and cfg.head_ratio > 0:
            raise LightPeftError("the model has one key/value head per layer, so --gqa_policy kv_group would remove "
                                 "all attention; use --gqa_policy per_group or --head_scope global")
        kept_groups = keep_per_row(groups.mean(dim=-1), cfg.head_ratio, cfg.head_scope)
        return [[g * group_size + i for g in kept for i in range(group_size)] for kept in kept_groups]
    kept = []
    for layer, kept_any in enumerate(keep_per_row(head_masks, cfg.head_ratio, cfg.head_scope)):
        per_group = math.floor((heads - len(kept_any)) / groups.shape[1] + 0.5)  # same count in every group
        pruned = {g * group_size + i for g, row in enumerate(groups[layer]) for i in lowest(row, per_group)}
        kept.append([h for h in range(heads) if h not in pruned])
    return kept


def kv_heads_of(heads: list[list[int]], group_size: int) -> list[list[int]]:
    """Kept key/value heads per layer: the groups that keep at least one query head."""
    return [sorted({h // group_size for h in layer}) for layer in heads]


def select_modules(names: list[str], module_scores: torch.Tensor, ratio: float) -> list[str]:
    """PEFT modules that survive global module pruning (counted, not parameter-weighted, as in the reference)."""
    pruned = set(lowest(module_scores, num_to_prune(len(names), ratio)))
    return [name for i, name in enumerate(names) if i not in pruned]


def round_widths(scores: torch.Tensor, kept: list[list[int]], multiple: int) -> list[list[int]]:
    """Each row's kept count rounded to the nearest multiple of `multiple` (within [0, row width]), keeping the
    highest-scoring units: GEMMs on widths like 1088 run markedly faster than on 1100 (measured on CPU)."""
    out = []
    for row, indices in zip(scores, kept):
        width = min(row.numel(), multiple * round(len(indices) / multiple))
        if width == len(indices):
            out.append(indices)
            continue
        pruned = set(lowest(row, row.numel() - width))
        out.append([c for c in range(row.numel()) if c not in pruned])
    return out


def select_top(names: list[str], scores: torch.Tensor, count: int) -> list[str]:
    """The `count` highest-scoring names (ties: lower index first), in their original order."""
    pruned = set(lowest(scores, max(0, len(names) - count)))
    return [name for i, name in enumerate(names) if i not in pruned]


def select_ranks(rank_scores: dict[str, torch.Tensor], ratio: float, scope: str) -> dict[str, list[int]]:
    """Kept unit (rank) indices per module; a module left with no unit is dropped."""
    names = list(rank_scores)
    if not names:
        return {}
    if scope == "layer":
        kept = {n: keep_per_row(rank_scores[n][None], ratio, "layer")[0] for n in names}
    else:
        flat = torch.cat([rank_scores[n] for n in names])
        pruned = set(lowest(flat, num_to_prune(flat.numel(), ratio)))
        kept, offset = {}, 0
        for n in names:
            r = rank_scores[n].numel()
            kept[n] = [i for i in range(r) if offset + i not in pruned]
            offset += r
    return {n: ranks for n, ranks in kept.items() if ranks}


def keep_structure(head_masks: torch.Tensor, ffn_masks: torch.Tensor, cfg: PlanConfig,
                   group_size: int = 1) -> tuple[list[list[int]], list[list[int]]]:
    """Kept heads and FFN neurons per layer: the structural half of `choose` (GQA policy and rounding included),
    also what mask convergence watches."""
    if cfg.uniform:  # imported here: uniform builds on this module's count rule
        from lightpeft.methods.light_peft.uniform import uniform_structure

        return uniform_structure(head_masks, ffn_masks, cfg, group_size)
    heads = keep_heads(head_masks, cfg, group_size)
    ffn = keep_per_row(ffn_masks, cfg.ffn_ratio, cfg.ffn_scope)
    if cfg.round_to > 1:
        ffn = round_widths(ffn_masks, ffn, cfg.round_to)
    return heads, ffn


def choose(
    head_masks: torch.Tensor,
    ffn_masks: torch.Tensor,
    module_names: list[str],
    module_scores: torch.Tensor,
    rank_scores: torch.Tensor,
    cfg: PlanConfig,
    roles: dict[str, tuple[int, str]],
    group_size: int = 1,
    drop_widthless: bool = True,
) -> tuple[list[list[int]], list[list[int]], dict[str, dict]]:
    """Survivors from estimation statistics, in the reference's order: structure, then modules, then units.

    Masks are ranked by their signed value (a negative mask is pruned first). `roles[name] = (layer, role)`
    lets modules whose target lost every head or neuron be dropped when `drop_widthless` (LoRA: they would have a
    zero-sized side; adapters act on hidden-size outputs and keep working, so they stay).
    `group_size`: query heads per key/value head (grouped-query attention, see `keep_heads`).
    """
    heads, ffn = keep_structure(head_masks, ffn_masks, cfg, group_size)
    survivors = select_modules(module_names, module_scores, cfg.module_ratio)
    index = {n: i for i, n in enumerate(module_names)}
    if cfg.min_peft_layer:
        allowed = [n for n in module_names if roles[n][0] >= cfg.min_peft_layer]
        survivors = select_top(allowed, module_scores[[index[n] for n in allowed]], len(survivors))

    def has_width(name: str) -> bool:
        layer, role = roles[name]
        return bool(ffn[layer]) if role.startswith("ffn") else bool(heads[layer])

    survivors = [n for n in survivors if has_width(n) or not drop_widthless]
    units = select_ranks({n: rank_scores[index[n]] for n in survivors}, cfg.rank_ratio, cfg.rank_scope)
    modules = {n: {"layer": roles[n][0], "role": roles[n][1], "units": kept} for n, kept in units.items()}
    return heads, ffn, modules
