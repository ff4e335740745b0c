"""Peak live tensor bytes of training steps, measured in the bench's inference process (never in the timed run).

A run's training memory peaks on its largest batch once the optimizer holds its state: weights, gradients of the
trainable parameters, optimizer state and the activations autograd saves. `train_live_peak` runs a few steps on
that batch (`latency.longest_batch`) with the optimizer `Trainer` builds for the run's arguments, at learning
rate 0 so the trained weights stay as they are, under `memory.LiveTensors`.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from lightpeft import memory


def trainer_optimizer(model: torch.nn.Module, args) -> torch.optim.Optimizer:
    """The optimizer `Trainer` would build for `args` (its class and settings), on the trainable parameters, at
    learning rate 0 (the same work and state, the weights unchanged)."""
    from transformers import Trainer

    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return cls([p for p in model.parameters() if p.requires_grad], **{**kwargs, "lr": 0.0})


def _autocast(args, device: torch.device):
    if args is not None and (args.bf16 or args.fp16):
        return torch.autocast(device.type, dtype=torch.bfloat16 if args.bf16 else torch.float16)
    return nullcontext()


def train_live_peak(model: torch.nn.Module, batch: dict, optimizer: torch.optim.Optimizer, args=None,
                    steps: int = 2) -> dict:
    """Peak live tensor MiB over `steps` training steps on `batch` (from the second step on, the optimizer state
    is live during forward and backward: the steady state), and what was live at the start (weights, buffers,
    the batch, optimizer state already there). Gradient clipping at `args.max_grad_norm` as in `Trainer`."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    max_grad_norm = getattr(args, "max_grad_norm", None)
    was_training = model.training
    model.train()
    memory.release()
    with memory.LiveTensors(model, optimizer, batch) as live:
        for _ in range(steps):
            with _autocast(args, device):
                loss = model(**batch).loss
            loss.backward()
            del loss
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.train(was_training)
    return {"peak_mb": live.peak_mb, "start_mb": live.start_mb, "steps": steps,
            "batch_shape": list(batch["input_ids"].shape)}
