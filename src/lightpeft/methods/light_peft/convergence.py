"""Stop estimation when the pruning decision has settled (EarlyBERT's mask distance, which the reference lacks).

Every `every` optimizer steps the structure scores (gate values, or the running Taylor sums) are turned into
keep/prune sets at the plan's ratios; the distance between
two checks is the fraction of heads, and of FFN neurons, whose status flipped. When both stay at or below
`threshold` for `patience` checks in a row, training stops. Gates are DDP-synchronised parameters, so every
process reaches the same decision at the same step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import TrainerCallback

from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.importance import ImportanceTracker
from lightpeft.methods.light_peft.masks import Gates
from lightpeft.methods.light_peft.selection import keep_per_row, keep_structure


def keep_set(scores: torch.Tensor, ratio: float, scope: str) -> torch.Tensor:
    """Boolean (rows, cols): True where a unit survives pruning at `ratio`."""
    return as_mask(keep_per_row(scores.detach().float().cpu(), ratio, scope), scores.shape)


def as_mask(kept: list[list[int]], shape) -> torch.Tensor:
    """Boolean (rows, cols): True at the kept column indices of each row."""
    keep = torch.zeros(shape, dtype=torch.bool)
    for row, cols in enumerate(kept):
        keep[row, cols] = True
    return keep


def flipped_fraction(before: torch.Tensor, after: torch.Tensor) -> float:
    return (before != after).float().mean().item()


class MaskConvergence(TrainerCallback):
    """Trainer callback: check the gates every `every` steps, mark the importance window, stop when settled."""

    def __init__(self, scores: Callable[[], tuple[torch.Tensor, torch.Tensor]] | Gates, tracker: ImportanceTracker,
                 plan_cfg: PlanConfig, every: int, threshold: float, patience: int, group_size: int = 1):
        self.scores = scores.values if isinstance(scores, Gates) else scores  # () -> (head, ffn) scores
        self.tracker, self.plan_cfg, self.group_size = tracker, plan_cfg, group_size
        self.every, self.threshold, self.patience = every, threshold, patience
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None
        self.calm_checks = 0
        self.history: list[dict] = []  # step, head and FFN distance at every check
        self.converged_at: int | None = None

    def _keep(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The plan's own structural decision on the current gates (GQA policy and FFN rounding included)."""
        head, ffn = (g.detach().float().cpu() for g in self.scores())
        heads, neurons = keep_structure(head, ffn, self.plan_cfg, self.group_size)
        return as_mask(heads, head.shape), as_mask(neurons, ffn.shape)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every:
            return control
        self.tracker.mark()
        keep = self._keep()
        if self.previous is not None:
            heads, ffn = (flipped_fraction(a, b) for a, b in zip(self.previous, keep))
            self.history.append({"step": state.global_step, "head_distance": heads, "ffn_distance": ffn})
            self.calm_checks = self.calm_checks + 1 if max(heads, ffn) <= self.threshold else 0
            if self.calm_checks >= self.patience:
                self.converged_at = state.global_step
                control.should_training_stop = True
        self.previous = keep
        return control
