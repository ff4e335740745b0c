"""Short fingerprints: of a base checkpoint's backbone weights, so artifacts refuse to load on another base; of a
saved set of tensors, so a run refuses a weights file it did not write."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

SAMPLES_PER_TENSOR = 1024


def fingerprint(model: nn.Module, exclude: tuple[str, ...] = ()) -> str:
    """sha256 over the backbone's parameter names, shapes, dtypes and a strided sample of values.

    The task head is left out: it is freshly initialised per task; so are `exclude`d names (full names from the
    top of `model`, e.g. weights missing from the checkpoint and initialised at random). Sampling keeps this cheap (milliseconds for a
    135M model) while any retrained, re-quantised or different checkpoint still changes the sampled values.
    """
    backbone = getattr(model, "base_model", model)
    prefix = getattr(model, "base_model_prefix", "")
    skip = {name.removeprefix(prefix + ".") for name in exclude}
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        if name in skip:
            continue
        flat = tensor.detach().reshape(-1)
        stride = max(1, flat.numel() // SAMPLES_PER_TENSOR)
        sample = flat[::stride][:SAMPLES_PER_TENSOR].to(torch.float32).cpu().numpy()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(sample.tobytes())
    return digest.hexdigest()[:16]


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, shape, dtype and bytes (in name order): a saved weights file's identity.

    Exact, not sampled: run weights (PEFT modules and a task head) are kilobytes to a few MB.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
