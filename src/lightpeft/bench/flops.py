"""FLOPs of a forward pass and of a training step, counted by torch's own FlopCounterMode (matmuls, attention).

The counted FLOPs are the 'ideal' cost: a pruned model's measured speed-up is compared with the ratio of these.
Elementwise work (LayerNorm, activations, dropout, the optimizer) is not counted; that is the gap the profile
explains.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def forward_flops(model: torch.nn.Module, batch: dict) -> int:
    """FLOPs of one inference forward over `batch`."""
    was_training = model.training
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(**_without_labels(batch))
    model.train(was_training)
    return counter.get_total_flops()


def train_step_flops(model: torch.nn.Module, batch: dict) -> dict:
    """FLOPs of forward and backward of one training step over `batch` (labels included); grads are discarded.

    Backward FLOPs reflect where autograd stops: frozen layers below the lowest trainable parameter cost nothing.
    """
    was_training = model.training
    model.train()
    with FlopCounterMode(display=False) as counter:
        loss = model(**batch).loss
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    backward = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {"forward": forward, "backward": backward, "total": forward + backward}


def _without_labels(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "labels"}
