"""Per-architecture structure tables: where a model keeps its layers, attention projections and FFN.

Everything else in lightpeft (masks, importance, surgery, plans) speaks in *roles* (q, k, v, o, ffn_in, ffn_out)
and asks this module where a role lives. Families in the table take the fast path; any other model type gets its
entry from `core.discovery` (found from the modules' shapes and call order, then verified on a probe model).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import Conv1D

from lightpeft.errors import LightPeftError

QKV_ROLES = ("q", "k", "v")


@dataclass(frozen=True)
class ArchSpec:
    """Where the prunable structure lives, relative to the backbone (`model.base_model`)."""

    family: str
    layers: str  # dotted path from the backbone to the ModuleList of blocks
    q: str  # paths from one block
    k: str
    v: str
    o: str  # attention output projection; its *input* is the per-head context
    ffn_in: tuple[str, ...]  # FFN input projections (one for GELU MLPs; gate + up for SwiGLU)
    ffn_out: str  # FFN output projection; its *input* is the per-neuron activation
    attention: str  # the module to replace by a no-op when a layer loses every head
    ffn_size_key: str = "intermediate_size"  # config attribute holding the FFN width
    qkv_layout: str = "separate"  # q, k, v in one projection: its row layout (core.fused: concat, interleaved, ...)
    ffn_layout: str = "separate"  # gate and up in one projection: `concat` ([gate | up], Phi-3's gate_up_proj)
    head_extra: tuple[str, ...] = ()  # more projections with per-query-head outputs (DeBERTa's pos_key_proj)
    encoder: bool = False  # bidirectional (cannot be fine-tuned as a causal LM)

    @property
    def fused_qkv(self) -> bool:
        """q, k and v are one projection (GPT-2's c_attn, GPT-NeoX's query_key_value)."""
        return self.qkv_layout != "separate"

    def role_paths(self, role: str) -> tuple[str, ...]:
        """Block-relative paths of the linears that play `role`."""
        if role == "ffn_in":
            return self.ffn_in
        return (getattr(self, role),)

    def linear_role(self, role: str) -> str:
        """Role recorded for a linear: `qkv` for the fused projection, which q, k and v all name."""
        return "qkv" if self.fused_qkv and role in QKV_ROLES else role

    @property
    def o_inside_attention(self) -> bool:
        """Decoders keep the output projection inside the attention module (BERT keeps it beside)."""
        return self.o.startswith(self.attention + ".")


BERT_LIKE = ArchSpec(
    family="bert",
    layers="encoder.layer",
    q="attention.self.query",
    k="attention.self.key",
    v="attention.self.value",
    o="attention.output.dense",
    ffn_in=("intermediate.dense",),
    ffn_out="output.dense",
    attention="attention.self",
    encoder=True,
)

OPT = ArchSpec(
    family="opt",
    layers="decoder.layers",
    q="self_attn.q_proj",
    k="self_attn.k_proj",
    v="self_attn.v_proj",
    o="self_attn.out_proj",
    ffn_in=("fc1",),
    ffn_out="fc2",
    attention="self_attn",
    ffn_size_key="ffn_dim",
)

# GPT-2: Conv1D linears (weight (in, out)); q, k, v fused in c_attn; n_inner None means 4 x hidden
GPT2 = ArchSpec(
    family="gpt2",
    layers="h",
    q="attn.c_attn",
    k="attn.c_attn",
    v="attn.c_attn",
    o="attn.c_proj",
    ffn_in=("mlp.c_fc",),
    ffn_out="mlp.c_proj",
    attention="attn",
    ffn_size_key="n_inner",
    qkv_layout="concat",
)

# Llama-style decoders: grouped-query attention, SwiGLU FFN (gate and up rows pruned together with down columns)
LLAMA_LIKE = ArchSpec(
    family="llama",
    layers="layers",
    q="self_attn.q_proj",
    k="self_attn.k_proj",
    v="self_attn.v_proj",
    o="self_attn.o_proj",
    ffn_in=("mlp.gate_proj", "mlp.up_proj"),
    ffn_out="mlp.down_proj",
    attention="self_attn",
)

ARCHITECTURES: dict[str, ArchSpec] = {
    "bert": BERT_LIKE,
    "roberta": BERT_LIKE,
    "xlm-roberta": BERT_LIKE,
    "electra": BERT_LIKE,
    "opt": OPT,
    "gpt2": GPT2,
    "llama": LLAMA_LIKE,
    "mistral": LLAMA_LIKE,
    "qwen2": LLAMA_LIKE,
    "qwen3": LLAMA_LIKE,  # per-head q/k RMSNorm acts on head_dim only, so whole heads slice cleanly
}


def get_arch(model_or_config) -> ArchSpec:
    """Structure entry for a model or config: the table's, else a discovered and verified one (cached per config);
    a one-line LightPeftError says why a model cannot be pruned."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    from lightpeft.core.discovery import discovered_arch  # discovery builds on surgery, which imports this module

    return discovered_arch(config)


def table_arch(model_type: str) -> ArchSpec:
    """The table entry of `model_type` (for code that only has a plan's model type)."""
    if model_type not in ARCHITECTURES:
        raise LightPeftError(f"model type {model_type!r} has no structure table entry; pass its discovered entry "
                             "(arch.get_arch(config))")
    return ARCHITECTURES[model_type]


def backbone_prefix(model: nn.Module) -> str:
    """Dotted name of the backbone inside a task model (`bert` in BertForSequenceClassification), or ''."""
    prefix = getattr(model, "base_model_prefix", "")
    return prefix if prefix and hasattr(model, prefix) else ""


def layer_modules(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a (task or bare) HF model, in order."""
    return list(model.base_model.get_submodule(get_arch(model).layers))


def num_layers(model: nn.Module) -> int:
    return len(layer_modules(model))


def head_size(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def num_heads(config) -> int:
    return config.num_attention_heads


def num_kv_heads(config) -> int:
    """Key/value heads (grouped-query attention); equal to the query heads elsewhere.

    Falcon names them `num_kv_heads` and, with `multi_query` in its original layout, uses one whatever that says;
    GPTBigCode's `multi_query` also means one.
    """
    if getattr(config, "multi_query", False) and not getattr(config, "new_decoder_architecture", False):
        return 1
    return getattr(config, "num_key_value_heads", None) or getattr(config, "num_kv_heads", None) or num_heads(config)


def kv_group_size(config) -> int:
    """Query heads per key/value head (1 without grouped-query attention)."""
    heads, kv = num_heads(config), num_kv_heads(config)
    if heads % kv:
        raise LightPeftError(f"{heads} attention heads do not split into {kv} key/value groups; check the config")
    return heads // kv


def ffn_size(config) -> int:
    width = getattr(config, get_arch(config).ffn_size_key, None)
    return width or 4 * config.hidden_size  # GPT-2 stores n_inner=None for the default 4 x hidden


def features(linear: nn.Module) -> tuple[int, int]:
    """(in, out) features of an nn.Linear or a transformers Conv1D (whose weight is stored (in, out))."""
    if isinstance(linear, Conv1D):
        return linear.nx, linear.nf
    return linear.in_features, linear.out_features


def layer_path(model: nn.Module, layer: int) -> str:
    """Dotted name of block `layer` from the top of `model`."""
    prefix = backbone_prefix(model)
    path = f"{get_arch(model).layers}.{layer}"
    return f"{prefix}.{path}" if prefix else path


def linear_roles(model: nn.Module, roles) -> dict[str, tuple[int, str]]:
    """Full module names (from the top of `model`) of the linears playing `roles` -> (layer, role), in order.

    A fused projection appears once, with role `qkv` (GPT-2's c_attn, named by any of q, k, v).
    """
    spec = get_arch(model)
    out = {}
    for layer in range(num_layers(model)):
        for role in roles:
            for path in spec.role_paths(role):
                out.setdefault(f"{layer_path(model, layer)}.{path}", (layer, spec.linear_role(role)))
    return out


def linear_names(model: nn.Module, roles) -> list[str]:
    return list(linear_roles(model, roles))
