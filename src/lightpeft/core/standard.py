"""Which pruned models a standard Hugging Face config can describe, and that config.

A standard config has one `num_attention_heads`, one `num_key_value_heads` and one FFN width for every layer. The
head size is `head_dim` where the family's config carries it (Llama, Mistral, Qwen2/3 attention read
`config.head_dim`), else `hidden_size / num_attention_heads` (BERT, RoBERTa, OPT, GPT-2): there fewer heads would
change the head size, so only the FFN can shrink. Bottleneck adapters have no place in a standard config at all.
"""

from __future__ import annotations

import copy

from lightpeft.core import arch
from lightpeft.core.peft_kinds import KINDS
from lightpeft.core.plan import Plan

# arch families whose attention takes its head size from `config.head_dim`
HEAD_DIM_FAMILIES = ("llama",)


def can_prune_heads(config) -> bool:
    """Whether a standard config of this family can hold fewer heads (it carries `head_dim`)."""
    return arch.get_arch(config).family in HEAD_DIM_FAMILIES


def standard_blocker(plan: Plan, config) -> str | None:
    """Why a standard config cannot describe `plan`'s pruned model (None: it can)."""
    unmerged = [kind for kind in plan.kinds if not KINDS[kind].merges_on_export]
    if unmerged:
        return f"its {'+'.join(unmerged)} modules cannot be merged into the weights"
    head_counts = {len(heads) for heads in plan.heads}
    kv_counts = {len(plan.kept_kv_heads(layer)) for layer in range(plan.num_layers)}
    widths = {len(neurons) for neurons in plan.ffn}
    if len(head_counts) > 1 or len(kv_counts) > 1 or len(widths) > 1:
        return "its layers keep different numbers of heads or FFN neurons"
    if 0 in head_counts or 0 in widths:
        return "a layer keeps no head or no FFN neuron"
    if head_counts != {plan.num_heads} and not can_prune_heads(config):
        return f"a {config.model_type} config derives the head size from hidden_size / num_attention_heads"
    return None


def standard_config(config, plan: Plan):
    """A copy of `config` with the plan's head, KV-head and FFN counts (the plan must pass `standard_blocker`)."""
    out = copy.deepcopy(config)
    heads, kv_heads = len(plan.heads[0]), len(plan.kept_kv_heads(0))
    if heads != plan.num_heads:
        out.head_dim = arch.head_size(config)  # before the head count changes: it may be derived from it
        out.num_attention_heads = heads
        out.num_key_value_heads = kv_heads
    setattr(out, arch.get_arch(config).ffn_size_key, len(plan.ffn[0]))
    return out
