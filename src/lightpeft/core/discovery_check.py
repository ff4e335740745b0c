"""Verify a discovered structure entry before use: on the probe model, gating units with 0/1 gates (forward
pre-hooks on the output projections, as Light-PEFT's masks do) must equal physically pruning them, and all-ones
gates must change nothing. Heads and FFN neurons are checked apart, so a failure names the module that did not fit.

The gates are drawn at random per check: one block keeps a random subset (whole KV groups; with grouped-query
attention also the same query heads in every group), the other loses every unit, then the other way round, so each
attention type of the probe is checked both partly pruned and emptied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from lightpeft.core import arch
from lightpeft.core.discovery import probe_inputs
from lightpeft.core.surgery import prune_ffn, prune_heads
from lightpeft.errors import LightPeftError

TOLERANCE = 1e-4  # relative to the output's scale: the probe's activations are O(1)


def verified(candidates: list[arch.ArchSpec], probe: nn.Module, config) -> arch.ArchSpec:
    """The first candidate whose heads and FFN pass the check; else a LightPeftError naming what did not fit."""
    layers = list(probe.get_submodule(candidates[0].layers))
    reference = _output(probe, {})
    failures = []
    for spec in candidates:
        ones = _output(probe, _gates(spec, probe, [torch.ones(arch.num_heads(config))] * len(layers), None))
        if not _close(ones, reference):
            raise LightPeftError(_message(config, spec, spec.o, "all-ones head gates changed the output"))
        error = _head_error(spec, probe, config)
        if error is None:
            break
        failures.append(f"{spec.qkv_layout}: {error}")
    else:
        where = spec.q if spec.fused_qkv else f"{spec.q}/{spec.k}/{spec.v}"
        raise LightPeftError(_message(config, spec, where, "masked heads != pruned heads (" + "; ".join(failures)
                                      + ")"))
    error = _ffn_error(spec, probe, config)
    if error:
        raise LightPeftError(_message(config, spec, f"{', '.join(spec.ffn_in)} -> {spec.ffn_out}", error))
    return spec


def _message(config, spec: arch.ArchSpec, module: str, what: str) -> str:
    return (f"structure discovery for model type {config.model_type!r} failed its check: {what}; the module that did "
            f"not fit: {spec.layers}.0.{module}; this architecture is not supported yet")


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(((a - b).abs().max() <= TOLERANCE * max(1.0, b.abs().max().item())))


def _output(model: nn.Module, hooks: dict) -> torch.Tensor:
    handles = [module.register_forward_pre_hook(hook) for module, hook in hooks.items()]
    try:
        with torch.no_grad():
            return model(**probe_inputs(model.config))[0]
    finally:
        for handle in handles:
            handle.remove()


def _scale(gate: torch.Tensor, group: int):
    def hook(module, args):
        (x, *rest) = args
        units = x.reshape(*x.shape[:-1], gate.numel(), group)  # (B, T, U*g) -> (B, T, U, g)
        return ((units * gate.to(x.dtype)[:, None]).reshape(x.shape), *rest)

    return hook


def _gates(spec: arch.ArchSpec, model: nn.Module, head_gates, ffn_gates) -> dict:
    """Pre-hooks scaling each block's per-head context (o input) and per-neuron activation (ffn_out input)."""
    hooks = {}
    d = arch.head_size(model.config)
    for index, block in enumerate(model.get_submodule(spec.layers)):
        if head_gates is not None:
            hooks[block.get_submodule(spec.o)] = _scale(head_gates[index], d)
        if ffn_gates is not None:
            hooks[block.get_submodule(spec.ffn_out)] = _scale(ffn_gates[index], 1)
    return hooks


def _kept(units: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    keep = max(1, units // 2)
    return sorted(torch.randperm(units, generator=g)[:keep].tolist())


def _head_plans(config, blocks: int, seed: int = 0) -> list[list[tuple[list[int], list[int]]]]:
    """Per check, per block: (kept query heads, kept KV heads); each block is once partial, once emptied."""
    heads, kv = arch.num_heads(config), arch.num_kv_heads(config)
    group = heads // kv
    kv_kept = _kept(kv, seed) if kv > 1 else [0]
    whole_groups = ([h for g in kv_kept for h in range(g * group, (g + 1) * group)], kv_kept)
    layouts = [whole_groups] if kv > 1 else []
    if group > 1:  # the same query heads in every group, every KV head kept
        in_group = _kept(group, seed + 1)
        layouts.append(([g * group + h for g in range(kv) for h in in_group], list(range(kv))))
    checks = []
    for partial in layouts:
        for emptied in range(blocks):
            checks.append([([], []) if index == emptied else partial for index in range(blocks)])
    return checks


def _head_error(spec: arch.ArchSpec, probe: nn.Module, config) -> str | None:
    d, heads, kv = arch.head_size(config), arch.num_heads(config), arch.num_kv_heads(config)
    blocks = len(probe.get_submodule(spec.layers))
    for check in _head_plans(config, blocks):
        gates = [torch.zeros(heads).index_fill_(0, torch.tensor(kept, dtype=torch.long), 1.0) for kept, _ in check]
        masked = _output(probe, _gates(spec, probe, gates, None))
        pruned = copy.deepcopy(probe)
        try:
            for block, (kept, kv_kept) in zip(pruned.get_submodule(spec.layers), check):
                prune_heads(block, spec, kept, kv_kept, d, heads, kv)
            out = _output(pruned, {})
        except LightPeftError as err:
            return str(err)
        except Exception as err:  # a pruned forward that breaks: shapes the layout got wrong
            return f"the pruned forward failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        if not _close(out, masked):
            return f"max difference {(out - masked).abs().max().item():.2e} keeping heads {[k for k, _ in check]}"
    return None


def _ffn_error(spec: arch.ArchSpec, probe: nn.Module, config) -> str | None:
    width = arch.features(probe.get_submodule(spec.layers)[0].get_submodule(spec.ffn_out))[0]
    blocks = len(probe.get_submodule(spec.layers))
    ones = _output(probe, _gates(spec, probe, None, [torch.ones(width)] * blocks))
    if not _close(ones, _output(probe, {})):
        return "all-ones FFN gates changed the output"
    for emptied in range(blocks):
        kept = [[] if index == emptied else _kept(width, index) for index in range(blocks)]
        gates = [torch.zeros(width).index_fill_(0, torch.tensor(k, dtype=torch.long), 1.0) for k in kept]
        masked = _output(probe, _gates(spec, probe, None, gates))
        pruned = copy.deepcopy(probe)
        try:
            for block, neurons in zip(pruned.get_submodule(spec.layers), kept):
                prune_ffn(block, spec, neurons)
            out = _output(pruned, {})
        except Exception as err:
            return f"the pruned forward failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        if not _close(out, masked):
            return f"masked FFN != pruned FFN (max difference {(out - masked).abs().max().item():.2e})"
    return None
