"""Structure discovery: the `ArchSpec` of a model type that has no table entry, found from the config's sizes and the
modules' shapes and call order, then verified before use (`core.discovery_check`).

How: a probe backbone is built from a copy of the config (two blocks, or one per attention type, weights random),
and one forward on a few token ids records, in block 0, the first call of every linear with its (in, out) widths.
With hidden size D, H query heads, KV key/value heads, head size d and FFN width F:

- attention projections: linears D -> H*d (q), D -> KV*d (k, v), or one fused D -> (H + 2*KV)*d, called before
- the output projection: the first H*d -> D linear after them;
- FFN input(s): D -> F linears after it (plain, or gate and up), or one fused D -> 2F (gate and up);
- FFN output: the F -> D linear after them. F is the first of the config's FFN width keys that fits.

q, k and v are told apart by width (GQA) and by name (query/key/value, q/k/v), else by call order. The attention
module is the innermost module holding q, k and v; the blocks are the ModuleList with one entry per layer. A fused
q/k/v projection's row layout cannot be read off shapes, so each layout is tried (core.fused) and the first that
verifies is kept.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import torch
from torch import nn
from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoModel, Conv1D

from lightpeft.core import arch
from lightpeft.errors import LightPeftError

FFN_SIZE_KEYS = ("intermediate_size", "ffn_dim", "n_inner", "hidden_dim", "ffn_hidden_size", "d_ff")
NAME_HINTS = {"q": re.compile(r"(^|[._])(q|query)(_|$|\.)|(^|[._])q_"),
              "k": re.compile(r"(^|[._])(k|key)(_|$|\.)|(^|[._])k_"),
              "v": re.compile(r"(^|[._])(v|value)(_|$|\.)|(^|[._])v_")}
# config entries that change no module shape or layout (labels, ids, bookkeeping): left out of the cache key
UNSTRUCTURAL_KEYS = ("id2label", "label2id", "num_labels", "problem_type", "architectures", "transformers_version",
                     "_name_or_path", "torch_dtype", "dtype", "pad_token_id", "bos_token_id", "eos_token_id")
ALIBI = ("ALiBi position biases are built per head from the config's head count for every layer at once, so a layer "
         "with fewer heads would get the wrong slopes")
REFUSED = {
    "albert": "ALBERT shares one block's weights across all layers (num_hidden_groups), so a head pruned in one layer "
              "would be pruned in every layer; lightpeft prunes each layer on its own",
    "bloom": ALIBI,
    "mpt": ALIBI,
}
_CACHE: dict[str, arch.ArchSpec | str] = {}
PROBE_VOCAB = 256


def discovered_arch(config) -> arch.ArchSpec:
    """The discovered and verified structure entry for `config` (cached per structural config)."""
    key = _cache_key(config)
    if key not in _CACHE:
        try:
            _CACHE[key] = discover(config)
        except LightPeftError as err:
            _CACHE[key] = str(err)
    found = _CACHE[key]
    if isinstance(found, str):
        raise LightPeftError(found)
    return found


def _cache_key(config) -> str:
    data = {k: v for k, v in config.to_dict().items() if k not in UNSTRUCTURAL_KEYS}
    return json.dumps(data, sort_keys=True, default=str)


def refusal(config) -> str | None:
    """Why a model type cannot be pruned soundly, or None."""
    model_type = getattr(config, "model_type", None)
    if model_type in REFUSED:
        return REFUSED[model_type]
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models have two kinds of blocks (and cross-attention); lightpeft prunes one stack"
    if getattr(config, "alibi", False):
        return ALIBI
    if any(getattr(config, key, 0) for key in ("num_experts", "num_local_experts", "n_routed_experts")):
        return "mixture-of-experts FFNs route tokens to experts; lightpeft prunes dense FFN neurons only"
    if getattr(config, "num_hidden_groups", 1) != 1 or getattr(config, "num_hidden_layers", None) is None:
        return "the config does not describe one block per layer (num_hidden_layers)"
    return None


def discover(config) -> arch.ArchSpec:
    """Find and verify the structure entry of `config`'s architecture (a LightPeftError says what did not fit)."""
    from lightpeft.core.discovery_check import verified

    model_type = getattr(config, "model_type", None)
    why = refusal(config)
    if why:
        raise LightPeftError(f"model type {model_type!r} is refused: {why}; supported: "
                             f"{', '.join(sorted(arch.ARCHITECTURES))} and the model types structure discovery verifies "
                             "(see the README's architecture table)")
    probe = probe_model(config)
    layers = _find_layers(probe, probe.config.num_hidden_layers, model_type)
    calls = trace_linears(probe, layers)
    candidates = candidate_specs(probe.config, layers, calls, probe.get_submodule(layers)[0])
    return verified(candidates, probe, config)


def probe_config(config):
    """A copy of `config` with two blocks (one per attention type where `layer_types` lists several) and at most
    PROBE_VOCAB token ids."""
    probe = copy.deepcopy(config)
    types = getattr(config, "layer_types", None)
    if types:
        distinct = list(dict.fromkeys(types))
        try:
            probe.layer_types = distinct if len(distinct) > 1 else distinct * 2
        except AttributeError:  # derived from other fields (hybrid state-space models): no small probe
            raise LightPeftError(f"model type {config.model_type!r}: its per-layer block types are derived from the "
                                 "config, so no small probe can be built to discover its structure") from None
    probe.num_hidden_layers = len(probe.layer_types) if types else 2
    probe.use_cache = False
    if (getattr(probe, "vocab_size", 0) or 0) > PROBE_VOCAB:  # the blocks never see the vocabulary: a small one
        probe.vocab_size = PROBE_VOCAB  # keeps the probe cheap at full hidden size
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if isinstance(getattr(probe, key, None), int) and getattr(probe, key) >= PROBE_VOCAB:
                setattr(probe, key, None)
    return probe


def probe_model(config) -> nn.Module:
    """The bare backbone of `probe_config(config)`, random weights scaled so every unit moves the output."""
    probe_cfg = probe_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = AutoModel.from_config(probe_cfg).eval()
        except Exception as err:  # whatever the modeling code raises on this config
            raise LightPeftError(f"model type {config.model_type!r}: transformers cannot build it from its config "
                                 f"({str(err).splitlines()[0]}); lightpeft needs a transformers model class") from None
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.Linear, Conv1D)):
                    fan_in = arch.features(module)[0]
                    module.weight.normal_(0.0, fan_in ** -0.5)
                    if module.bias is not None:
                        module.bias.normal_(0.0, 0.1)
    return model.float()


def probe_inputs(config, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    vocab = min(getattr(config, "vocab_size", 100) or 100, 100)
    input_ids = torch.randint(3, vocab, (2, 6), generator=g)  # (B, T), away from the usual special ids
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def _find_layers(model: nn.Module, count: int, model_type) -> str:
    """Dotted path of the ModuleList that holds one block per layer (the one with the most parameters)."""
    lists = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) == count and name]
    lists = [(name, m) for name, m in lists if len({type(block) for block in m}) == 1]
    if not lists:
        raise LightPeftError(f"model type {model_type!r}: found no list of {count} transformer blocks (one per layer); "
                             "it may share blocks across layers, which lightpeft cannot prune per layer")
    name, blocks = max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()))
    pointers = [{p.data_ptr() for p in block.parameters()} for block in blocks]
    if set.intersection(*pointers):
        raise LightPeftError(f"model type {model_type!r}: its blocks share weights across layers, so a head pruned "
                             "in one layer would be pruned in every layer; lightpeft prunes each layer on its own")
    return name


def trace_linears(model: nn.Module, layers: str) -> list[tuple[str, int, int]]:
    """(path from block 0, in, out) of every linear block 0 calls, in the order of their first call."""
    block = model.get_submodule(layers)[0]
    calls: dict[str, tuple[int, int]] = {}

    def record(path):
        def hook(module, args):
            calls.setdefault(path, arch.features(module))  # returns None: the call's arguments stay as they are

        return hook

    hooks = [module.register_forward_pre_hook(record(path)) for path, module in block.named_modules()
             if isinstance(module, (nn.Linear, Conv1D))]
    try:
        with torch.no_grad():
            model(**probe_inputs(model.config))
    except Exception as err:  # any modeling error: the probe forward is ours, the message says which model
        raise LightPeftError(f"model type {model.config.model_type!r}: a forward on token ids failed "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                             "lightpeft supports text models that take input_ids") from None
    finally:
        for hook in hooks:
            hook.remove()
    return [(path, *features) for path, features in calls.items()]


def _by_hint(paths: list[str], role: str) -> str | None:
    hits = [p for p in paths if NAME_HINTS[role].search(p.rpartition(".")[2])]
    return hits[0] if len(hits) == 1 else None


def _order_qkv(paths: list[str]) -> list[str]:
    """Three same-width projections as [q, k, v]: by name where the names say, else in call order."""
    named = {role: _by_hint(paths, role) for role in ("q", "k", "v")}
    if all(named.values()) and len(set(named.values())) == 3:
        return [named["q"], named["k"], named["v"]]
    return paths[:3]


def _common_parent(paths: list[str]) -> str:
    parents = [p.rpartition(".")[0].split(".") for p in paths]
    common = []
    for parts in zip(*parents):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return ".".join(common)


def _ffn_width(config, calls, hidden) -> tuple[str, int]:
    """The config key holding the FFN width, and the width: the first key whose value an F -> D linear has."""
    widths = {i for _, i, o in calls if o == hidden}
    for key in FFN_SIZE_KEYS:
        if key in config.to_dict() or hasattr(config, key):
            width = getattr(config, key, None) or 4 * hidden  # GPT-2 keeps n_inner=None for 4 x hidden
            if isinstance(width, int) and width in widths:
                return key, width
    raise LightPeftError(f"model type {config.model_type!r}: no FFN output projection (in = the config's FFN width "
                         f"under {', '.join(FFN_SIZE_KEYS)}, out = {hidden}) in its blocks")


def _qkv(before, q_width: int, kv_width: int, fused_width: int):
    """(q, k, v, extra per-head projections) among the D -> ... linears called before a candidate o, or None."""
    fused = [p for p, _, n_out in before if n_out == fused_width and fused_width not in (q_width, kv_width)]
    per_head = [p for p, _, n_out in before if n_out == q_width]
    per_kv = [p for p, _, n_out in before if n_out == kv_width and kv_width != q_width]
    if fused and not per_head:
        return fused[0], fused[0], fused[0], []
    if kv_width == q_width and len(per_head) >= 3:
        q, k, v = _order_qkv(per_head)
        return q, k, v, [p for p in per_head if p not in (q, k, v)]
    if per_head and len(per_kv) >= 2:
        q = _by_hint(per_head, "q") or per_head[0]
        k = _by_hint(per_kv, "k") or per_kv[0]
        v = _by_hint(per_kv, "v") or next(p for p in per_kv if p != k)
        return q, k, v, [p for p in per_head if p != q]
    return None


def _causal(config, attention: nn.Module) -> bool:
    """Causal self-attention (a decoder): the attention module's `is_causal`, else a causal-LM class exists."""
    causal = getattr(attention, "is_causal", None)
    return bool(causal) if causal is not None else type(config) in MODEL_FOR_CAUSAL_LM_MAPPING


def candidate_specs(config, layers: str, calls, block: nn.Module) -> list[arch.ArchSpec]:
    """Structure entries that fit the traced shapes (one per fused layout to try), best first."""
    model_type = config.model_type
    hidden, heads, kv, d = config.hidden_size, arch.num_heads(config), arch.num_kv_heads(config), arch.head_size(config)
    q_width, kv_width, fused_width = heads * d, kv * d, (heads + 2 * kv) * d
    attention_widths = (q_width, kv_width, fused_width)
    ffn_start = next((i for i, (_, n_in, n_out) in enumerate(calls) if n_in == hidden and n_out not in attention_widths),
                     len(calls))
    found, o_at = None, None
    # o: the last H*d -> D linear before the FFN with a full q/k/v set before it (DeBERTa's position projections
    # are H*d -> D too, and come between v and o)
    for at in range(ffn_start):
        if calls[at][1] == q_width and calls[at][2] == hidden:
            qkv = _qkv([c for c in calls[:at] if c[1] == hidden], q_width, kv_width, fused_width)
            if qkv:
                found, o_at = qkv, at
    if not found:
        raise LightPeftError(f"model type {model_type!r}: no attention output projection ({q_width} -> {hidden}) "
                             f"after q/k/v projections ({q_width}, {kv_width} wide, or one fused {fused_width} wide) "
                             f"in block 0 of {layers}")
    q, k, v, extra = found
    key, width = _ffn_width(config, calls[o_at + 1:], hidden)
    after = calls[o_at + 1:]
    out_at = next((i for i, (_, n_in, n_out) in enumerate(after) if n_in == width and n_out == hidden), None)
    ffn_in = [p for p, n_in, n_out in after[:out_at] if n_in == hidden and n_out in (width, 2 * width)]
    if not ffn_in:
        raise LightPeftError(f"model type {model_type!r}: no FFN input projection ({hidden} -> {width}) before "
                             f"{after[out_at][0]}")
    ffn_layout = "concat" if arch.features(block.get_submodule(ffn_in[0]))[1] == 2 * width else "separate"
    attention = q.rpartition(".")[0] if q == k else _common_parent([q, k, v, *extra])
    if not attention:
        raise LightPeftError(f"model type {model_type!r}: q/k/v ({q}, {k}, {v}) sit in no attention module")
    base = arch.ArchSpec(family=model_type, layers=layers, q=q, k=k, v=v, o=calls[o_at][0], ffn_in=tuple(ffn_in),
                         ffn_out=after[out_at][0], attention=attention, ffn_size_key=key, ffn_layout=ffn_layout,
                         head_extra=tuple(extra), encoder=not _causal(config, block.get_submodule(attention)))
    if q != k:
        return [base]
    # one KV head: [q | k | v] either way; otherwise per-head interleaving needs KV == H, per-group KV < H
    layouts = ["concat"] if kv == 1 else ["concat", "interleaved"] if kv == heads else ["concat", "grouped"]
    return [dataclasses.replace(base, qkv_layout=layout) for layout in layouts]
