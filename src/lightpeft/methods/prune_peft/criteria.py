"""The pruning criteria of PrunePEFT's Table 1, in a registry, and the running statistics they read.

Each criterion is one function of a module's `ModuleStats` that returns its score Θ, already divided by the
module's parameter count |w| as Table 1 writes it, and a direction: whether the lowest or the highest scores are
pruned first. A new criterion is one `@criterion(...)` function.

  weight       Σ w² / |w|                                   lowest pruned
  zeros        Σ 1[w ≠ 0] / |w|  (share of non-zero weights) lowest pruned
  threshold    Σ 1[|w| < t] / |w|                            highest pruned
  activation   mean over the round's non-padding tokens of Σ |module output|, / |w|    lowest pruned
  sensitivity  Σ_steps Σ |w ∂L/∂w| / steps / |w|  (first-order Taylor)              lowest pruned
  gradient     Σ_steps Σ |∂L/∂w| / steps / |w|                                       lowest pruned

`w` is the module's trainable weights (LoRA A and B of each of its linears; adapter down and up); its "output" is
the PEFT branch's output (the delta it adds, scaling included). Gradients are read once per optimizer step (after
accumulation and clipping), as running sums on the device: no host sync per step. Across processes the activation
sums and token counts are summed (each rank saw other rows), the gradient statistics averaged (DDP all-reduced the
gradients already), so every rank computes the same scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from transformers import TrainerCallback

from lightpeft.core.peft_kinds import PeftUnit, hf_model, peft_units
from lightpeft.errors import LightPeftError


@dataclass
class ModuleStats:
    """What one candidate module's criteria read at the end of a round (CPU, float64 scalars)."""

    weights: list[torch.Tensor]  # its trainable tensors
    numel: int
    activation_sum: float  # Σ over training tokens of Σ |branch output|
    tokens: float  # non-padding training tokens the round saw
    grad_abs_sum: float  # Σ over optimizer steps of Σ |∂L/∂w|
    taylor_sum: float  # Σ over optimizer steps of Σ |w ∂L/∂w|
    steps: float
    threshold: float = 1e-6


@dataclass(frozen=True)
class Criterion:
    name: str
    prune_lowest: bool
    score: Callable[[ModuleStats], float]


CRITERIA: dict[str, Criterion] = {}


def criterion(name: str, prune: str):
    """Register `fn(stats) -> Θ` as criterion `name`; `prune`: `lowest` or `highest` scores go first."""
    def register(fn):
        CRITERIA[name] = Criterion(name, prune == "lowest", fn)
        return fn

    return register


def check_criteria(names, flag: str) -> None:
    unknown = [n for n in names if n not in CRITERIA]
    if unknown:
        raise LightPeftError(f"{flag}: unknown criterion {unknown[0]!r}; choose from {', '.join(CRITERIA)}")


@criterion("weight", prune="lowest")
def weight(s: ModuleStats) -> float:
    return sum(w.double().pow(2).sum().item() for w in s.weights) / s.numel


@criterion("zeros", prune="lowest")
def zeros(s: ModuleStats) -> float:
    return sum((w != 0).sum().item() for w in s.weights) / s.numel


@criterion("threshold", prune="highest")
def threshold(s: ModuleStats) -> float:
    return sum((w.abs() < s.threshold).sum().item() for w in s.weights) / s.numel


@criterion("activation", prune="lowest")
def activation(s: ModuleStats) -> float:
    return s.activation_sum / max(s.tokens, 1.0) / s.numel


@criterion("sensitivity", prune="lowest")
def sensitivity(s: ModuleStats) -> float:
    return s.taylor_sum / max(s.steps, 1.0) / s.numel


@criterion("gradient", prune="lowest")
def gradient(s: ModuleStats) -> float:
    return s.grad_abs_sum / max(s.steps, 1.0) / s.numel


def masked_token_sum(values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Sum of per-token `values` ((B, T), or (B*T,) as OPT's FFN sees tokens) over positions the mask keeps."""
    if attention_mask is None or attention_mask.numel() != values.numel():
        return values.sum()
    values = values.reshape(attention_mask.shape)  # (B*T,) -> (B, T); a no-op for (B, T)
    return torch.where(attention_mask.bool(), values, 0.0).sum()


class RoundStatistics(TrainerCallback):
    """Running sums of one round for the modules `groups` names (candidate -> the linears it sits on).

    Forward hooks add each PEFT branch's Σ |output| over non-padding tokens; `on_pre_optimizer_step` adds each
    weight's Σ |g| and Σ |w g|. Pass it to the Trainer as a callback; `remove()` the hooks after training.
    """

    def __init__(self, model: nn.Module, groups: dict[str, tuple[str, ...]], threshold: float = 1e-6):
        units = peft_units(model)
        self.names = list(groups)
        self.threshold = threshold
        self.units: list[list[PeftUnit]] = [[units[linear] for linear in groups[name]] for name in self.names]
        device = units[next(iter(units))].down.device
        n = len(self.names)
        self.activation = torch.zeros(n, device=device, dtype=torch.float64)
        self.grad_abs = torch.zeros(n, device=device, dtype=torch.float64)
        self.taylor = torch.zeros(n, device=device, dtype=torch.float64)
        self.tokens = torch.zeros((), device=device, dtype=torch.float64)
        self.steps = torch.zeros((), device=device, dtype=torch.float64)
        self._attention_mask = None
        self._hooks = [hf_model(model).register_forward_pre_hook(self._grab_mask, with_kwargs=True)]
        for index, module_units in enumerate(self.units):
            for unit in module_units:
                self._hooks.append(unit.branch.register_forward_hook(self._branch_hook(index, unit.scaling)))

    def _grab_mask(self, module, args, kwargs):
        self._attention_mask = kwargs.get("attention_mask")
        if module.training:
            mask, ids = self._attention_mask, kwargs.get("input_ids")
            count = mask.sum() if mask is not None else (ids.numel() if ids is not None else 0)
            self.tokens += count

    def _branch_hook(self, index: int, scaling: float):
        def hook(module, args, output):
            if module.training:
                per_token = output.detach().abs().sum(dim=-1).double() * abs(scaling)  # (B, T) or (B*T,)
                self.activation[index] += masked_token_sum(per_token, self._attention_mask)

        return hook

    @torch.no_grad()
    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        for index, module_units in enumerate(self.units):
            for unit in module_units:
                for weight_ in (unit.down, unit.up):
                    if weight_.grad is not None:
                        grad = weight_.grad.double()
                        self.grad_abs[index] += grad.abs().sum()
                        self.taylor[index] += (weight_.double() * grad).abs().sum()
        self.steps += 1

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def all_reduce(self) -> None:
        """Sum activations and tokens over processes; average the (already all-reduced) gradient statistics."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            world = dist.get_world_size()
            for tensor in (self.activation, self.tokens, self.grad_abs, self.taylor, self.steps):
                dist.all_reduce(tensor)
            for tensor in (self.grad_abs, self.taylor, self.steps):
                tensor /= world

    def module_stats(self) -> dict[str, ModuleStats]:
        """One host transfer for the whole round: each module's statistics and a CPU copy of its weights."""
        activation, grad_abs, taylor = self.activation.tolist(), self.grad_abs.tolist(), self.taylor.tolist()
        tokens, steps = float(self.tokens), float(self.steps)
        out = {}
        for index, (name, module_units) in enumerate(zip(self.names, self.units)):
            weights = [w.detach().float().cpu() for unit in module_units for w in (unit.down, unit.up)]
            out[name] = ModuleStats(weights, sum(w.numel() for w in weights), activation[index], tokens,
                                    grad_abs[index], taylor[index], steps, self.threshold)
        return out


def score_modules(stats: dict[str, ModuleStats], names: list[str]) -> dict[str, dict[str, float]]:
    """criterion -> module -> Θ for the criteria `names`."""
    return {c: {module: CRITERIA[c].score(s) for module, s in stats.items()} for c in names}
