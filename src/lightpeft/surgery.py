"""Physical pruning: slice backbone weights to the kept heads and neurons, and PEFT weights to match.

transformers v5 has no `prune_heads`; its attention reshapes with `-1` heads, so slicing q/k/v output rows and the
output projection's input columns is enough (bookkeeping attributes are updated anyway). A layer that keeps no
head gets a no-op attention (its output projection reduces to its bias, exactly as a fully gated layer); a layer
that keeps no FFN neuron keeps zero-width FFN linears, which compute the same thing.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from . import arch
from .peft_modules import SLICED_WITH_STRUCTURE, WEIGHT_SUFFIXES
from .plan import Plan


class NoAttention(nn.Module):
    """Stands in for a self-attention block that lost every head: an empty per-head context."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None  # (B, T, 0)


def head_rows(heads: list[int], head_size: int) -> torch.Tensor:
    """Row indices of the projection outputs that belong to `heads` (each head owns head_size rows)."""
    if not heads:
        return torch.zeros(0, dtype=torch.long)
    idx = torch.tensor(heads, dtype=torch.long)
    return (idx[:, None] * head_size + torch.arange(head_size)).reshape(-1)  # (H_kept, d) -> (H_kept*d,)


def _replace(parent: nn.Module, path: str, new: nn.Module) -> None:
    owner_path, _, attr = path.rpartition(".")
    owner = parent.get_submodule(owner_path) if owner_path else parent
    setattr(owner, attr, new)


def _slice(block: nn.Module, path: str, index: torch.Tensor, dim: int) -> None:
    linear = block.get_submodule(path)
    _replace(block, path, prune_linear_layer(linear, index.to(linear.weight.device), dim=dim))


def prune_heads(block: nn.Module, spec: arch.ArchSpec, heads: list[int], head_size: int) -> None:
    """Keep `heads` of one block: q/k/v output rows, output-projection input columns."""
    rows = head_rows(heads, head_size)
    for role in ("q", "k", "v"):
        _slice(block, getattr(spec, role), rows, dim=0)
    _slice(block, spec.o, rows, dim=1)
    attention = block.get_submodule(spec.attention)
    if not heads:
        _replace(block, spec.attention, NoAttention())
        return
    if hasattr(attention, "num_attention_heads"):  # bookkeeping only: forward infers heads with -1
        attention.num_attention_heads = len(heads)
        attention.all_head_size = len(heads) * head_size


def prune_ffn(block: nn.Module, spec: arch.ArchSpec, neurons: list[int]) -> None:
    """Keep `neurons` of one block's FFN: input-projection rows (gate and up alike), output-projection columns."""
    index = torch.tensor(neurons, dtype=torch.long)
    for path in spec.ffn_in:
        _slice(block, path, index, dim=0)
    _slice(block, spec.ffn_out, index, dim=1)


def prune_backbone(model: nn.Module, plan: Plan) -> nn.Module:
    """Physically remove the heads and neurons `plan` drops from an HF model (in place; returns it)."""
    spec = arch.get_arch(model)
    head_size = arch.head_size(model.config)
    for block, heads, neurons in zip(arch.layer_modules(model), plan.heads, plan.ffn):
        if len(heads) < plan.num_heads:
            prune_heads(block, spec, heads, head_size)
        if len(neurons) < plan.ffn_size:
            prune_ffn(block, spec, neurons)
    return model


def slice_units(down: torch.Tensor, up: torch.Tensor, units: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep `units` of one PEFT module: rows of down (units, in), columns of up (out, units)."""
    index = torch.tensor(units, dtype=torch.long)
    return down[index], up[:, index]


def slice_lora_structure(name: str, lora_a: torch.Tensor, lora_b: torch.Tensor, plan: Plan) -> tuple:
    """Cut a LoRA pair (A: (r, in), B: (out, r)) to the plan's kept heads / neurons on its linear's pruned side."""
    layer, role = plan.role_of(name)
    if role in ("q", "k", "v"):
        lora_b = lora_b[head_rows(plan.heads[layer], plan.head_size)]
    elif role == "o":
        lora_a = lora_a[:, head_rows(plan.heads[layer], plan.head_size)]
    elif role == "ffn_in":
        lora_b = lora_b[torch.tensor(plan.ffn[layer], dtype=torch.long)]
    elif role == "ffn_out":
        lora_a = lora_a[:, torch.tensor(plan.ffn[layer], dtype=torch.long)]
    return lora_a, lora_b


def slice_peft_state(state: dict[str, torch.Tensor], plan: Plan) -> dict[str, torch.Tensor]:
    """Estimated weights cut to a plan: PEFT modules that survive sliced to their kept units (and, for LoRA, to the
    kept structure; adapters sit on hidden-size outputs and need no structural slicing); head weights as they are."""
    down_key, up_key = WEIGHT_SUFFIXES[plan.peft]
    peft_suffixes = tuple("." + suffix for pair in WEIGHT_SUFFIXES.values() for suffix in pair)
    out = {k: v for k, v in state.items() if not k.endswith(peft_suffixes)}
    for name in plan.peft_modules:
        down, up = slice_units(state[f"{name}.{down_key}"], state[f"{name}.{up_key}"], plan.kept_units(name))
        if SLICED_WITH_STRUCTURE[plan.peft]:
            down, up = slice_lora_structure(name, down, up, plan)
        out[f"{name}.{down_key}"], out[f"{name}.{up_key}"] = down.contiguous(), up.contiguous()
    return out
