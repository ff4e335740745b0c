"""Physical pruning: slice backbone weights to the kept heads and neurons, and PEFT weights to match.

transformers v5 has no `prune_heads`; BERT and Llama attention reshape with `-1` heads, but OPT reshapes with
`num_heads`, GPT-2 splits its fused q/k/v with `split_size` and grouped-query attention repeats k/v by
`num_key_value_groups`, so those bookkeeping attributes are updated with the weights. A layer that keeps no head gets
a no-op attention (its output projection reduces to its bias, exactly as a fully gated layer); a layer that keeps no
FFN neuron keeps zero-width FFN linears, which compute the same thing (SwiGLU included).
"""

from __future__ import annotations

import re
from collections import Counter

import torch
from torch import nn
from transformers import Cache, Conv1D, EncoderDecoderCache

from lightpeft.core import arch
from lightpeft.core.fused import ffn_in_rows, head_rows, qkv_rows
from lightpeft.core.peft_kinds import get_kind, weight_suffixes
from lightpeft.core.plan import Plan
from lightpeft.errors import LightPeftError

# Keyword under which a decoder layer hands its attention module the KV cache: `cache` since transformers 5.24,
# `past_key_values` before (a deprecated alias until 5.40), `layer_past` in older GPT-2 code.
CACHE_KEYWORDS = ("cache", "past_key_values", "layer_past")


def find_cache(args: tuple, kwargs: dict) -> Cache | None:
    """The KV cache among an attention module's call arguments, whatever its keyword.

    Known keywords first; then any argument that is a `Cache`. A cache passed under a name this module does not
    know is still found, so an upstream rename cannot make a pruned layer silently skip its cache entry.
    """
    for name in CACHE_KEYWORDS:
        if kwargs.get(name) is not None:
            return kwargs[name]
    return next((value for value in (*args, *kwargs.values()) if isinstance(value, Cache)), None)


class NoAttention(nn.Module):
    """Stands in for an attention block that lost every head: an empty per-head context.

    Encoders (BERT) keep the output projection outside the attention module, and get the context (B, T, 0) itself.
    Decoders keep it inside, so it moves in here (same attribute name, so its path still resolves) and the block
    gets its output: the projection's bias. With a KV cache, the layer still records a (B, 1, T, 1) placeholder:
    transformers reads the cached sequence length from the cache layers (an empty tensor counts as length 0),
    so generation positions and masks stay right.
    """

    def __init__(self, output: nn.Module | None = None, output_name: str = "", layer_idx: int | None = None):
        super().__init__()
        self.output_name = output_name if output is not None else ""
        if output is not None:
            self.add_module(output_name, output)
        self.layer_idx = layer_idx

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        batch, length = hidden_states.shape[:2]
        cache = find_cache(args, kwargs)
        if cache is None and kwargs.get("use_cache"):
            raise LightPeftError(
                "the decoder layer asked for a KV cache but passed none that lightpeft recognises (keywords "
                f"{', '.join(CACHE_KEYWORDS)}; got {sorted(kwargs)}): this transformers version is not supported by "
                "lightpeft's head pruning yet; generate with use_cache=False or install the tested versions "
                "(constraints.txt)"
            )
        if cache is not None and self.layer_idx is not None:
            if isinstance(cache, EncoderDecoderCache):  # GPT-2 with cross-attention: this is self-attention
                cache = cache.self_attention_cache
            placeholder = hidden_states.new_zeros(batch, 1, length, 1)  # (B, heads=1, T, head_dim=1)
            cache.update(placeholder, placeholder, self.layer_idx)
        context = hidden_states.new_zeros(*hidden_states.shape[:-1], 0)  # (B, T, 0)
        if self.output_name:
            return getattr(self, self.output_name)(context), None
        return context, None


def _replace(parent: nn.Module, path: str, new: nn.Module) -> None:
    owner_path, _, attr = path.rpartition(".")
    owner = parent.get_submodule(owner_path) if owner_path else parent
    setattr(owner, attr, new)


def _slice(block: nn.Module, path: str, index: torch.Tensor, side: str) -> None:
    """Keep `index` of the outputs (`side="out"`) or inputs (`"in"`) of an nn.Linear or Conv1D, in place.

    Parameters are replaced by sliced copies with the same dtype and device (meta included).
    """
    linear = block.get_submodule(path)
    index = index.to(linear.weight.device)
    out_dim = 1 if isinstance(linear, Conv1D) else 0  # Conv1D stores its weight (in, out), nn.Linear (out, in)
    dim = out_dim if side == "out" else 1 - out_dim
    grad = linear.weight.requires_grad
    linear.weight = nn.Parameter(linear.weight.detach().index_select(dim, index), requires_grad=grad)
    if side == "out" and linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias.detach().index_select(0, index), requires_grad=grad)
    width = len(index)
    if isinstance(linear, Conv1D):
        linear.nf, linear.nx = (width, linear.nx) if side == "out" else (linear.nf, width)
        if linear.nx == 0:  # Conv1D cannot reshape an empty input; an nn.Linear with no inputs gives its bias
            _replace(block, path, _bias_only_linear(linear))
    elif side == "out":
        linear.out_features = width
    else:
        linear.in_features = width


def _bias_only_linear(conv1d: Conv1D) -> nn.Linear:
    weight = conv1d.weight
    linear = nn.Linear(0, conv1d.nf, bias=True, device=weight.device, dtype=weight.dtype)
    linear.bias = conv1d.bias
    return linear


# Head-count attributes that attention modules read in forward (or keep for bookkeeping), by family:
# BERT num_attention_heads/all_head_size, OPT and GPT-2 num_heads, GPT-2 split_size, Llama num_key_value_groups,
# DistilBERT n_heads, Falcon num_kv_heads, GPTBigCode kv_heads.
HEAD_ATTRIBUTES = {
    "num_attention_heads": lambda heads, kv, d: heads,
    "num_heads": lambda heads, kv, d: heads,
    "n_heads": lambda heads, kv, d: heads,
    "num_kv_heads": lambda heads, kv, d: kv,
    "kv_heads": lambda heads, kv, d: kv,
    "all_head_size": lambda heads, kv, d: heads * d,
    "split_size": lambda heads, kv, d: heads * d,
    "num_key_value_heads": lambda heads, kv, d: kv,
    "num_key_value_groups": lambda heads, kv, d: heads // kv,
}


# Names of integer attributes that hold a head count or a width derived from one: any such attribute of an attention
# module that is not in HEAD_ATTRIBUTES (and is not the per-head size) would keep its unpruned value after pruning
COUNT_LIKE = re.compile(r"head|group|split")


def check_head_attributes(attention: nn.Module, head_size: int) -> None:
    """Refuse to prune heads of an attention module that keeps a head count we would not update.

    Pruning updates the attributes in HEAD_ATTRIBUTES; an upstream rename (OPT's `num_heads` becoming `n_heads`, say)
    would leave the forward reshaping with the old count, so fail loudly instead.
    """
    unknown = {name: value for name, value in vars(attention).items()
               if type(value) is int and COUNT_LIKE.search(name) and name not in HEAD_ATTRIBUTES and value != head_size}
    if unknown:
        found = ", ".join(f"{name}={value}" for name, value in sorted(unknown.items()))
        raise LightPeftError(
            f"{type(attention).__name__} keeps {found}, which looks like a head count that pruning would not update "
            f"(it updates {', '.join(HEAD_ATTRIBUTES)}); this transformers version changed the attention module, so "
            "pruned heads would compute wrong outputs; use a transformers version lightpeft supports"
        )


def check_groups(layer: int, heads: list[int], kv_heads: list[int], group_size: int) -> None:
    """Every kept KV head must serve the same number of kept query heads, all from its own group."""
    per_kv = Counter(h // group_size for h in heads)
    if sorted(per_kv) != sorted(kv_heads) or len(set(per_kv.values())) > 1:
        raise LightPeftError(
            f"the plan keeps query heads {heads} over key/value heads {kv_heads} in layer {layer}, which leaves "
            "num_key_value_groups fractional; re-create the plan with `lightpeft plan` (--gqa_policy kv_group or "
            "per_group)"
        )


def prune_heads(block: nn.Module, spec: arch.ArchSpec, heads: list[int], kv_heads: list[int], head_size: int,
                num_heads: int, num_kv_heads: int | None = None) -> None:
    """Keep query `heads` and key/value `kv_heads` of one block: q/k/v output rows, o input columns, bookkeeping."""
    if heads:
        check_head_attributes(block.get_submodule(spec.attention), head_size)
    rows = head_rows(heads, head_size)
    if spec.fused_qkv:
        total_kv = num_kv_heads or num_heads
        _slice(block, spec.q, qkv_rows(spec.qkv_layout, heads, kv_heads, head_size, num_heads, total_kv), "out")
    else:
        _slice(block, spec.q, rows, "out")
        for role in ("k", "v"):
            _slice(block, getattr(spec, role), head_rows(kv_heads, head_size), "out")
    for path in spec.head_extra:
        _slice(block, path, rows, "out")
    _slice(block, spec.o, rows, "in")
    attention = block.get_submodule(spec.attention)
    if not heads:
        _replace(block, spec.attention, _no_attention(block, spec, attention))
        return
    for name, value in HEAD_ATTRIBUTES.items():
        if hasattr(attention, name):
            setattr(attention, name, value(len(heads), len(kv_heads), head_size))
    _own_head_counts(attention, len(heads), len(kv_heads))


class LayerConfig:
    """One pruned layer's view of the model config: its own head counts, everything else read from (and written
    to) the shared config, so a later `set_attn_implementation` still reaches the layer."""

    def __init__(self, shared, **own):
        self.__dict__.update(_shared=shared, _own=own)

    def __getattr__(self, name: str):
        if name.startswith("__") or "_own" not in self.__dict__:  # copy/deepcopy probe dunders on a bare instance
            raise AttributeError(name)
        own = self.__dict__["_own"]
        return own[name] if name in own else getattr(self.__dict__["_shared"], name)

    def __setattr__(self, name: str, value) -> None:
        if name in self._own:
            self._own[name] = value
        else:
            setattr(self._shared, name, value)


def _own_head_counts(attention: nn.Module, heads: int, kv_heads: int) -> None:
    """Give an attention module that may read head counts from its config (Phi-3 splits its fused q/k/v at
    `config.num_attention_heads * head_dim` in forward) a view of the config with this layer's counts.

    `model.config` keeps the unpruned counts, which plans are rebuilt from.
    """
    config = getattr(attention, "config", None)
    if config is None or not hasattr(config, "num_attention_heads"):
        return
    own = {"num_attention_heads": heads}
    if getattr(config, "num_key_value_heads", None) is not None:
        own["num_key_value_heads"] = kv_heads
    shared = config._shared if isinstance(config, LayerConfig) else config
    attention.config = LayerConfig(shared, **own)


def _no_attention(block: nn.Module, spec: arch.ArchSpec, attention: nn.Module) -> NoAttention:
    layer_idx = getattr(attention, "layer_idx", None)
    if not spec.o_inside_attention:
        return NoAttention(layer_idx=layer_idx)
    output_name = spec.o[len(spec.attention) + 1:]
    return NoAttention(block.get_submodule(spec.o), output_name, layer_idx)


def prune_ffn(block: nn.Module, spec: arch.ArchSpec, neurons: list[int]) -> None:
    """Keep `neurons` of one block's FFN: input-projection rows (gate and up alike), output-projection columns."""
    index = torch.tensor(neurons, dtype=torch.long)
    width = arch.features(block.get_submodule(spec.ffn_out))[0]
    for path in spec.ffn_in:
        _slice(block, path, ffn_in_rows(spec.ffn_layout, neurons, width), "out")
    _slice(block, spec.ffn_out, index, "in")


def prune_backbone(model: nn.Module, plan: Plan) -> nn.Module:
    """Physically remove the heads and neurons `plan` drops from an HF model (in place; returns it)."""
    spec = arch.get_arch(model)
    head_size = arch.head_size(model.config)
    for layer, (block, heads, neurons) in enumerate(zip(arch.layer_modules(model), plan.heads, plan.ffn)):
        if len(heads) < plan.num_heads:
            kv_heads = plan.kept_kv_heads(layer)
            check_groups(layer, heads, kv_heads, plan.kv_group_size)
            prune_heads(block, spec, heads, kv_heads, head_size, plan.num_heads, plan.kv_head_count)
        if len(neurons) < plan.ffn_size:
            prune_ffn(block, spec, neurons)
    if hasattr(model, "_get_static_cache_init_shape"):
        # generate(cache_implementation="static", prefill_chunk_size=...) pre-allocates every cache layer with the
        # config's KV head count, which pruned layers no longer have; None is transformers' "cannot be early
        # initialized", and each static layer then sizes itself from the first keys it stores
        model._get_static_cache_init_shape = lambda: None
    return model


def slice_units(down: torch.Tensor, up: torch.Tensor, units: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep `units` of one PEFT module: rows of down (units, in), columns of up (out, units)."""
    index = torch.tensor(units, dtype=torch.long)
    return down[index], up[:, index]


def slice_lora_structure(name: str, lora_a: torch.Tensor, lora_b: torch.Tensor, plan: Plan,
                         spec: arch.ArchSpec) -> tuple:
    """Cut a LoRA pair (A: (r, in), B: (out, r)) to the plan's kept heads / neurons on its linear's pruned side.

    On a fused projection B's rows are cut exactly as the projection's (core.fused), so fused LoRA stays consistent.
    """
    layer, role = plan.role_of(name)
    if role == "q":
        lora_b = lora_b[head_rows(plan.heads[layer], plan.head_size)]
    elif role in ("k", "v"):
        lora_b = lora_b[head_rows(plan.kept_kv_heads(layer), plan.head_size)]
    elif role == "qkv":
        lora_b = lora_b[qkv_rows(spec.qkv_layout, plan.heads[layer], plan.kept_kv_heads(layer), plan.head_size,
                                 plan.num_heads, plan.kv_head_count)]
    elif role == "o":
        lora_a = lora_a[:, head_rows(plan.heads[layer], plan.head_size)]
    elif role == "ffn_in":
        lora_b = lora_b[ffn_in_rows(spec.ffn_layout, plan.ffn[layer], plan.ffn_size)]
    elif role == "ffn_out":
        lora_a = lora_a[:, torch.tensor(plan.ffn[layer], dtype=torch.long)]
    return lora_a, lora_b


def slice_peft_state(state: dict[str, torch.Tensor], plan: Plan, spec: arch.ArchSpec | None = None
                     ) -> dict[str, torch.Tensor]:
    """Estimated weights cut to a plan: PEFT modules that survive sliced to their kept units (and, for kinds with a
    side on a pruned width such as LoRA, to the kept structure; adapters sit on hidden-size outputs); head weights as
    they are. `spec`: the base model's structure entry (default: the table's for the plan's model type)."""
    spec = spec or arch.table_arch(plan.model_type)
    out = {k: v for k, v in state.items() if not k.endswith(weight_suffixes())}
    for name, entry in plan.peft_modules.items():
        kind = get_kind(entry["kind"])
        down_key, up_key = kind.weights
        down, up = slice_units(state[f"{name}.{down_key}"], state[f"{name}.{up_key}"], plan.kept_units(name))
        if kind.sliced_with_structure:
            down, up = slice_lora_structure(name, down, up, plan, spec)
        out[f"{name}.{down_key}"], out[f"{name}.{up_key}"] = down.contiguous(), up.contiguous()
    return out
