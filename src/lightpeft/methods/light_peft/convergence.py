"""Stop estimation when the pruning decision has settled (EarlyBERT's mask distance, which the reference lacks).

Every `every` optimizer steps the gates are turned into keep/prune sets at the plan's ratios; the distance between
two checks is the fraction of heads, and of FFN neurons, whose status flipped. When both stay at or below
`threshold` for `patience` checks in a row, training stops. Gates are DDP-synchronised parameters, so every
process reaches the same decision at the same step.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.importance import ImportanceTracker
from lightpeft.methods.light_peft.masks import Gates
from lightpeft.methods.light_peft.selection import keep_per_row


def keep_set(scores: torch.Tensor, ratio: float, scope: str) -> torch.Tensor:
    """Boolean (rows, cols): True where a unit survives pruning at `ratio`."""
    keep = torch.zeros(scores.shape, dtype=torch.bool)
    for row, cols in enumerate(keep_per_row(scores.detach().float().cpu(), ratio, scope)):
        keep[row, cols] = True
    return keep


def flipped_fraction(before: torch.Tensor, after: torch.Tensor) -> float:
    return (before != after).float().mean().item()


class MaskConvergence(TrainerCallback):
    """Trainer callback: check the gates every `every` steps, mark the importance window, stop when settled."""

    def __init__(self, gates: Gates, tracker: ImportanceTracker, plan_cfg: PlanConfig, every: int,
                 threshold: float, patience: int):
        self.gates, self.tracker, self.plan_cfg = gates, tracker, plan_cfg
        self.every, self.threshold, self.patience = every, threshold, patience
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None
        self.calm_checks = 0
        self.history: list[dict] = []  # step, head and FFN distance at every check
        self.converged_at: int | None = None

    def _keep(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.plan_cfg
        return (keep_set(self.gates.head, cfg.head_ratio, cfg.head_scope),
                keep_set(self.gates.ffn, cfg.ffn_ratio, cfg.ffn_scope))

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
