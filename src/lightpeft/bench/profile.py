"""Where a training step's time goes: data, forward parts, backward, optimizer.

Forward parts are exclusive times from module hooks (a child's time is not counted in its parent):
  attention projections  frozen q/k/v/o linears
  attention core         scores, softmax and context (the attention module minus its projections)
  FFN linears            frozen FFN input/output linears
  PEFT                   LoRA branches (dropout, A, B, scaling, add) / adapters of wrapped linears
  other forward          the rest: embeddings, LayerNorm, activations, dropout, task head, loss
Backward is timed as a whole; it runs only down to the lowest trainable parameter, which the report names.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from peft.tuners.lora import LoraLayer

from lightpeft.bench.latency import LABEL_COLUMNS, MODEL_INPUTS
from lightpeft.core import arch
from lightpeft.core.adapters import AdapterLinear

ROLE_PART = {"q": "attention projections", "k": "attention projections", "v": "attention projections",
             "o": "attention projections", "ffn_in": "FFN linears", "ffn_out": "FFN linears"}
PARTS = ("data", "attention projections", "attention core", "FFN linears", "PEFT", "other forward", "backward",
         "optimizer")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _ExclusiveClock:
    """Accumulates exclusive wall time per part from pre/post forward hooks on nested modules."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [part, start, time spent in hooked children]
        self.handles = []

    def watch(self, module: torch.nn.Module, part: str) -> None:
        def enter(mod, args):
            _sync()
            self._stack.append([part, time.perf_counter(), 0.0])

        def leave(mod, args, output):
            _sync()
            name, start, children = self._stack.pop()
            elapsed = time.perf_counter() - start
            self.totals[name] += elapsed - children
            if self._stack:
                self._stack[-1][2] += elapsed

        self.handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _watch_model(clock: _ExclusiveClock, model: torch.nn.Module) -> None:
    hf_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    spec = arch.get_arch(hf_model)
    for block in arch.layer_modules(hf_model):
        attention = block.get_submodule(spec.attention)
        clock.watch(attention, "attention core")
    for name, (_, role) in arch.linear_roles(hf_model, list(ROLE_PART)).items():
        module = hf_model.get_submodule(name)
        if isinstance(module, (LoraLayer, AdapterLinear)):
            clock.watch(module, "PEFT")
            module = module.base_layer
        clock.watch(module, ROLE_PART[role])


def lowest_trainable_layer(model: torch.nn.Module) -> int | None:
    """Index of the lowest block holding a trainable parameter (backward stops there), None if none does."""
    hf_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    for index, block in enumerate(arch.layer_modules(hf_model)):
        if any(p.requires_grad for p in block.parameters()):
            return index
    return None


def profile_training_step(model: torch.nn.Module, dataset, collator, batch_size: int, steps: int = 10,
                          warmup: int = 2, lr: float = 1e-3) -> dict:
    """Mean seconds per training step, per part, over `steps` steps of a fresh AdamW on the trainable params."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    clock = _ExclusiveClock()
    columns = [c for c in dataset.column_names if c in MODEL_INPUTS + LABEL_COLUMNS]
    totals = defaultdict(float)
    for step in range(warmup + steps):
        measuring = step >= warmup
        if measuring and not clock.handles:
            _watch_model(clock, model)
        start = time.perf_counter()
        rows = [dataset[(step * batch_size + i) % len(dataset)] for i in range(batch_size)]
        batch = {k: v.to(device) for k, v in collator([{c: r[c] for c in columns} for r in rows]).items()}
        _sync()
        t_data = time.perf_counter()
        loss = model(**batch).loss
        _sync()
        t_forward = time.perf_counter()
        loss.backward()
        _sync()
        t_backward = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync()
        t_end = time.perf_counter()
        if measuring:
            totals["data"] += t_data - start
            totals["forward"] += t_forward - t_data
            totals["backward"] += t_backward - t_forward
            totals["optimizer"] += t_end - t_backward
    clock.remove()
    parts = {part: clock.totals.get(part, 0.0) / steps for part in PARTS[1:5]}
    parts["other forward"] = totals["forward"] / steps - sum(parts.values())
    parts.update({k: totals[k] / steps for k in ("data", "backward", "optimizer")})
    step_seconds = sum(parts.values())
    return {"step_seconds": step_seconds, "parts_seconds": {p: parts[p] for p in PARTS},
            "lowest_trainable_layer": lowest_trainable_layer(model), "num_layers": len(arch.layer_modules(
                model.get_base_model() if hasattr(model, "get_base_model") else model)), "steps": steps}
