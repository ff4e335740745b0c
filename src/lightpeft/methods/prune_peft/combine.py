"""Criteria scores -> one pruning probability per remaining module, and the order modules are removed in.

`eq1` (the paper's Eq. 1, the default): for each criterion c, over the modules whose partition it scores,
  s_c(m) = min-max normalised Θ_c(m) in [0, 1], flipped for lowest-pruned criteria (1 = most prunable),
  k_c(m) = sigmoid(3 - rank_c(m)), rank 0 = most prunable (ties share their mean rank, so equal scores never
           favour the first layer), the released code's rank weights without its top-4 cut,
  score(m) = mean over the criteria of m's partition of k_c(m) s_c(m),
  p(m) = softmax(score) over ALL remaining modules; the highest p go first.
The mean (the code sums) keeps partitions with several criteria comparable to those with one.

`block_dynamic` (the released code): per partition, each criterion's top 4 in its direction, values / (max + 1e-5),
softmax over those 4, times 5 sigmoid(3 - rank), summed over criteria; then a softmax over the partition's top 4,
pooled over partitions. `random`: a seeded random order (the ablation).
"""

from __future__ import annotations

import math
import random

import torch

from lightpeft.methods.prune_peft.criteria import CRITERIA

RANK_OFFSET = 3.0
BLOCK_TOP = 4


def prunability(values: dict[str, float], prune_lowest: bool) -> dict[str, float]:
    """Min-max normalised, 1 = most prunable; all 0 when the criterion cannot tell the modules apart."""
    low, high = min(values.values()), max(values.values())
    if not high > low:
        return {m: 0.0 for m in values}
    return {m: ((high - v) if prune_lowest else (v - low)) / (high - low) for m, v in values.items()}


def mean_ranks(values: dict[str, float]) -> dict[str, float]:
    """0 for the highest value; tied values share the mean of their positions."""
    ordered = sorted(values.values(), reverse=True)
    first = {}
    for position, value in enumerate(ordered):
        first.setdefault(value, position)
    return {m: first[v] + (ordered.count(v) - 1) / 2 for m, v in values.items()}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def eq1(scores: dict[str, dict[str, float]], assignment: dict[str, list[str]]) -> dict[str, float]:
    """Eq. 1: `scores` criterion -> module -> Θ; `assignment` module -> its partition's criteria. -> module -> p."""
    contributions = {m: [] for m in assignment}
    for c in dict.fromkeys(c for cs in assignment.values() for c in cs):
        scored = {m: scores[c][m] for m, cs in assignment.items() if c in cs}
        s = prunability(scored, CRITERIA[c].prune_lowest)
        ranks = mean_ranks(s)
        for m in scored:
            contributions[m].append(sigmoid(RANK_OFFSET - ranks[m]) * s[m])
    combined = torch.tensor([sum(v) / len(v) for v in contributions.values()], dtype=torch.float64)
    return dict(zip(contributions, torch.softmax(combined, dim=0).tolist()))


def block_dynamic(scores: dict[str, dict[str, float]], assignment: dict[str, list[str]],
                  partition: dict[str, str]) -> dict[str, float]:
    """The released code's combination (see the module docstring); modules outside every top 4 get p = 0."""
    out = {m: 0.0 for m in assignment}
    for block in dict.fromkeys(partition.values()):
        members = [m for m in assignment if partition[m] == block]
        combined = {m: 0.0 for m in members}
        for c in assignment[members[0]]:
            values = {m: scores[c][m] for m in members}
            order = sorted(members, key=lambda m: values[m], reverse=not CRITERIA[c].prune_lowest)[:BLOCK_TOP]
            top = max(values[m] for m in order) + 1e-5
            weights = torch.softmax(torch.tensor([values[m] / top for m in order], dtype=torch.float64), dim=0)
            for rank, (m, w) in enumerate(zip(order, weights.tolist())):
                combined[m] += w * 5 * sigmoid(RANK_OFFSET - rank)
        best = sorted(members, key=lambda m: combined[m], reverse=True)[:BLOCK_TOP]
        probs = torch.softmax(torch.tensor([combined[m] for m in best], dtype=torch.float64), dim=0)
        out.update(zip(best, probs.tolist()))
    return out


def random_order(modules: list[str], seed: int) -> dict[str, float]:
    """A uniformly random order as descending pseudo-probabilities."""
    order = list(modules)
    random.Random(seed).shuffle(order)
    n = len(order)
    return {m: (n - i) / (n * (n + 1) / 2) for i, m in enumerate(order)}


def removal_order(p: dict[str, float], modules: list[str]) -> list[str]:
    """Modules by descending p; ties keep the order of `modules` (the supernet's)."""
    position = {m: i for i, m in enumerate(modules)}
    return sorted(p, key=lambda m: (-p[m], position[m]))
