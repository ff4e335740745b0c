"""Scalar gates on attention heads and FFN neurons, applied without forking any modeling file.

A head gate scales that head's slice of the context fed to the attention output projection; an FFN gate scales
one neuron's activation fed to the FFN output projection. Both are forward pre-hooks on the output projection, so
one mechanism covers GELU MLPs and SwiGLU alike, and the gated model equals the reference's gated attention
probabilities (the context of head h is linear in its probabilities). A block that runs without calling one of its
gated modules (a fused or hub kernel that bypasses the module call) is a LightPeftError, not silently ungated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lightpeft.core import arch
from lightpeft.errors import LightPeftError

GATES_ATTR = "lightpeft_gates"


class Gates(nn.Module):
    """Learnable gates: `head` (layers, heads) and `ffn` (layers, ffn neurons), initialised to 1."""

    def __init__(self, num_layers: int, num_heads: int, ffn_size: int):
        super().__init__()
        # fp32 regardless of the model dtype: the L1 drift per step is ~lr, too small for bf16 near 1.0
        self.head = nn.Parameter(torch.ones(num_layers, num_heads, dtype=torch.float32))
        self.ffn = nn.Parameter(torch.ones(num_layers, ffn_size, dtype=torch.float32))

    def values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current (head, ffn) gate values as float32 CPU copies."""
        return self.head.detach().float().cpu().clone(), self.ffn.detach().float().cpu().clone()

    def l1(self) -> torch.Tensor:
        """Sum of |gate| over every head and neuron (the paper's penalty, unnormalised)."""
        return self.head.abs().sum() + self.ffn.abs().sum()


@dataclass
class GateHandle:
    """The gates attached to a model, and the hooks that apply them (remove with `detach`)."""

    gates: Gates
    hooks: list = field(default_factory=list)

    def detach(self, model: nn.Module) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()
        if hasattr(model, GATES_ATTR):
            delattr(model, GATES_ATTR)


def _scale_heads(gate_row: nn.Parameter, layer: int, head_size: int, ran: dict):
    def hook(module, args):
        ran["head"] = True
        (x, *rest) = args
        b_t = x.shape[:-1]
        heads = x.reshape(*b_t, -1, head_size)  # (B, T, H*d) -> (B, T, H, d)
        scaled = heads * gate_row[layer].to(x.dtype)[:, None]
        return (scaled.reshape(*b_t, -1), *rest)  # (B, T, H, d) -> (B, T, H*d)

    return hook


def _scale_neurons(gate_row: nn.Parameter, layer: int, ran: dict):
    def hook(module, args):
        ran["ffn"] = True
        (x, *rest) = args
        return (x * gate_row[layer].to(x.dtype), *rest)  # (B, T, F) * (F,)

    return hook


def _check_gates_ran(layer: int, ran: dict, paths: dict):
    """Block hooks: a block that ran must have called both gated modules (a fused or hub kernel can bypass them)."""

    def enter(module, args):
        ran.update(head=False, ffn=False)

    def leave(module, args, output):
        missed = [f"{paths[kind]} ({kind} gates)" for kind in ("head", "ffn") if not ran[kind]]
        if missed:
            raise LightPeftError(
                f"block {layer} ran without calling {' or '.join(missed)}, so those gates had no effect: something "
                "bypasses that module's call (a fused or hub kernel, e.g. `use_kernels=True`, or a modeling change "
                "in transformers); load the model without kernels"
            )

    return enter, leave


def attach_gates(model: nn.Module, requires_grad: bool = True) -> GateHandle:
    """Register gates on `model` (an HF model, possibly with LoRA layers injected) and hook them in.

    The gates become a submodule of `model`, so `Trainer`'s optimizer and DDP see them as ordinary parameters.
    Hooks sit on whatever module occupies the output-projection path (a peft LoRA wrapper included), so the
    gate scales the input of both the frozen weight and its LoRA branch.
    """
    spec = arch.get_arch(model)
    layers = arch.layer_modules(model)
    gates = Gates(len(layers), arch.num_heads(model.config), arch.ffn_size(model.config))
    gates.to(next(model.parameters()).device)
    gates.requires_grad_(requires_grad)
    model.add_module(GATES_ATTR, gates)
    handle = GateHandle(gates)
    head_size = arch.head_size(model.config)
    for i, block in enumerate(layers):
        ran = {"head": False, "ffn": False}
        o, ffn_out = block.get_submodule(spec.o), block.get_submodule(spec.ffn_out)
        handle.hooks.append(o.register_forward_pre_hook(_scale_heads(gates.head, i, head_size, ran)))
        handle.hooks.append(ffn_out.register_forward_pre_hook(_scale_neurons(gates.ffn, i, ran)))
        enter, leave = _check_gates_ran(i, ran, {"head": spec.o, "ffn": spec.ffn_out})
        handle.hooks.append(block.register_forward_pre_hook(enter))
        handle.hooks.append(block.register_forward_hook(leave))
    return handle


def set_binary(gates: Gates, kept_heads: list[list[int]], kept_neurons: list[list[int]]) -> None:
    """Set gates to 1 on kept units and 0 elsewhere: the masked twin of a physically pruned model."""
    with torch.no_grad():
        gates.head.zero_()
        gates.ffn.zero_()
        for layer, (heads, neurons) in enumerate(zip(kept_heads, kept_neurons)):
            gates.head[layer, heads] = 1.0
            gates.ffn[layer, neurons] = 1.0
