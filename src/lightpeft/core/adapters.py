"""Bottleneck adapters (peft has none): y = h + s * up(act(down(dropout(h)))) on the output h of a frozen linear.

The adapter wraps its target linear and keeps it as `base_layer`, as peft's LoRA layers do, so hooks that act on
the wrapper's *input* (head and neuron gates on the attention and FFN output projections) and hooks on
`base_layer`'s output (module importance) work unchanged. Defaults follow the method (LLM-Adapters' bottleneck
"output adapter"): size 8, ReLU, dropout 0.1 on the adapter input, scaling 1.0, no bias, both projections from
N(0, 0.02^2).

Weights are `down.weight` (size, hidden) and `up.weight` (hidden, size): one bottleneck unit i owns row i of down
and column i of up, the same layout as LoRA's A (r, in) and B (out, r), so unit importance and unit pruning are the
LoRA formulas.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from lightpeft.core import arch
from lightpeft.core.heads import head_modules


class BottleneckAdapter(nn.Module):
    """The adapter branch: scaling * up(act(down(dropout(h)))), `h` of width `hidden`."""

    def __init__(self, hidden: int, size: int, activation: str = "relu", dropout: float = 0.1,
                 init_std: float = 0.02, scaling: float = 1.0, device=None, dtype=None):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.down = nn.Linear(hidden, size, bias=False, device=device, dtype=dtype)
        self.act = ACT2FN[activation]
        self.up = nn.Linear(size, hidden, bias=False, device=device, dtype=dtype)
        self.scaling = scaling
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.normal_(self.up.weight, std=init_std)

    @property
    def size(self) -> int:
        return self.down.out_features

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(self.dropout(h)))) * self.scaling


class AdapterLinear(nn.Module):
    """A linear (`base_layer`: nn.Linear or GPT-2's Conv1D) whose output goes through a residual bottleneck adapter."""

    def __init__(self, base_layer: nn.Module, adapter: BottleneckAdapter):
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter

    @property
    def weight(self) -> torch.Tensor:  # some modeling code reads `.weight` of the linear it calls (peft does this too)
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return arch.features(self.base_layer)[0]

    @property
    def out_features(self) -> int:
        return arch.features(self.base_layer)[1]

    def unload_and_optionally_merge_module(self, merge: bool, safe_merge: bool, adapter_names) -> "AdapterLinear":
        """peft's `merge_and_unload` asks every module with a `base_layer` to unload itself: an adapter beside LoRA
        in one model is not peft's to merge, so it stays as it is."""
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)
        return h + self.adapter(h)


def adapter_layers(model: nn.Module) -> dict[str, AdapterLinear]:
    """Adapter-wrapped linears of `model`, by full name (the name of the linear they wrap)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, AdapterLinear)}


def add_adapters(model: nn.Module, targets: list[str], size: int, activation: str = "relu", dropout: float = 0.1,
                 init_std: float = 0.02, scaling: float = 1.0, sizes: dict[str, int] | None = None) -> nn.Module:
    """Wrap the linears `targets` (full names) with adapters in place, then freeze all but adapters and task head.

    `sizes` overrides the bottleneck size per module (pruned adapters). Returns `model`.
    """
    sizes = sizes or {}
    for name in targets:
        linear = model.get_submodule(name)
        adapter = BottleneckAdapter(arch.features(linear)[1], sizes.get(name, size), activation, dropout, init_std,
                                    scaling, device=linear.weight.device, dtype=linear.weight.dtype)
        owner_path, _, attr = name.rpartition(".")
        setattr(model.get_submodule(owner_path) if owner_path else model, attr, AdapterLinear(linear, adapter))
    mark_trainable(model)
    return model


def mark_trainable(model: nn.Module) -> None:
    """Backbone frozen; adapters and task head trainable (what peft's get_peft_model does for LoRA and a task head;
    a causal LM's lm_head stays frozen, see `heads`)."""
    model.requires_grad_(False)
    for layer in adapter_layers(model).values():
        layer.adapter.requires_grad_(True)
    for head in head_modules(model).values():
        head.requires_grad_(True)
