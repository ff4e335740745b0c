"""Scalar summaries of the gates during estimation, for the Trainer's log and its `report_to` trackers
(TensorBoard, ...): how far the L1 term has pushed head and FFN gates."""

from __future__ import annotations

import torch

from lightpeft.methods.light_peft.masks import Gates

PREFIX = "gates/"  # one group of charts in TensorBoard


@torch.no_grad()
def gate_statistics(gates: Gates) -> dict[str, float]:
    """mean / min / std of the head and the FFN gates, and their L1 (the penalty before its coefficient)."""
    out = {}
    for name, values in (("head", gates.head), ("ffn", gates.ffn)):
        values = values.detach().float()
        out[f"{PREFIX}{name}_mean"] = values.mean().item()
        out[f"{PREFIX}{name}_min"] = values.min().item()
        out[f"{PREFIX}{name}_std"] = values.std().item() if values.numel() > 1 else 0.0
    out[f"{PREFIX}l1"] = gates.l1().item()
    return out
