"""Which output rows of a (possibly fused) projection belong to the kept heads and FFN neurons.

A fused projection computes several roles in one linear; how its output rows are laid out is the family's choice:

| layout | rows | families |
|---|---|---|
| `separate` | one linear per role | BERT, OPT, Llama, ... |
| `concat` | `[q (H*d) | k (KV*d) | v (KV*d)]` | GPT-2 `c_attn`, Phi-3 `qkv_proj`, ModernBERT `Wqkv`, Falcon (multi-query) |
| `interleaved` | per head `[q_h | k_h | v_h]` (3*d each) | GPT-NeoX `query_key_value`, Falcon (`multi_query=False`) |
| `grouped` | per KV group `[q of its G heads | k_g | v_g]` ((G+2)*d each) | Falcon (`new_decoder_architecture`) |

An FFN input is `separate` (one linear, or gate and up as two) or `concat` (`[gate (F) | up (F)]` in one linear:
Phi-3 `gate_up_proj`, ModernBERT `Wi`). The same indices cut a LoRA B matrix on that linear, so LoRA on a fused
projection is sliced exactly like the projection itself.
"""

from __future__ import annotations

import torch

QKV_LAYOUTS = ("separate", "concat", "interleaved", "grouped")
FFN_LAYOUTS = ("separate", "concat")


def head_rows(heads: list[int], head_size: int) -> torch.Tensor:
    """Row indices of the projection outputs that belong to `heads` (each head owns head_size rows)."""
    if not heads:
        return torch.zeros(0, dtype=torch.long)
    idx = torch.tensor(heads, dtype=torch.long)
    return (idx[:, None] * head_size + torch.arange(head_size)).reshape(-1)  # (H_kept, d) -> (H_kept*d,)


def qkv_rows(layout: str, heads: list[int], kv_heads: list[int], head_size: int, num_heads: int,
             num_kv_heads: int) -> torch.Tensor:
    """Output rows of a fused q/k/v projection kept for query `heads` and key/value `kv_heads`."""
    d = head_size
    if layout == "concat":
        q_width, kv_width = num_heads * d, num_kv_heads * d
        return torch.cat([head_rows(heads, d), q_width + head_rows(kv_heads, d),
                          q_width + kv_width + head_rows(kv_heads, d)])  # (H_kept*d + 2*KV_kept*d,)
    if layout == "interleaved":  # one key/value head per query head
        return head_rows(heads, 3 * d)  # (H_kept*3d,)
    if layout == "grouped":
        group = num_heads // num_kv_heads
        per_group = (group + 2) * d  # G query heads, then k, then v
        rows = []
        for g in kv_heads:
            in_group = [h - g * group for h in heads if h // group == g]
            slots = [*in_group, group, group + 1]  # kept query heads of the group, its k, its v
            rows.append(g * per_group + head_rows(slots, d))
        return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
    raise ValueError(f"unknown fused q/k/v layout {layout!r}")


def ffn_in_rows(layout: str, neurons: list[int], ffn_size: int) -> torch.Tensor:
    """Output rows of an FFN input projection kept for `neurons` ([gate | up] fused: both halves)."""
    index = torch.tensor(neurons, dtype=torch.long)
    if layout == "concat":
        return torch.cat([index, ffn_size + index])  # (2*F_kept,)
    return index
