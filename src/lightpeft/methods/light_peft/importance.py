"""Importance of PEFT modules and their units, kept as running sums over the last part of estimation.

* Module importance: per token, ||delta|| / ||h||, h = W x + b the frozen layer's biased output and delta the PEFT
  branch output incl. dropout and scaling (LoRA: alpha/r * B A drop(x); adapter: s * up(act(down(drop(h))))),
  averaged over non-padding tokens of each training batch.
* Unit importance (first-order Taylor): per unit i (LoRA rank, adapter bottleneck unit),
  |mean_j A[i,j] dL/dA[i,j]| + |mean_k B[k,i] dL/dB[k,i]| with A = lora_A / W_down (units, in) and
  B = lora_B / W_up (out, units), read after backward and before gradient clipping (the reference's order).

Per-step values that are NaN/inf count as 0; the importance is the mean over the steps of the window. Sums live on
the model's device (no host sync per step) and are summed across processes by `all_reduce`.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from lightpeft.core.peft_kinds import PeftUnit, hf_model, peft_units
from lightpeft.errors import LightPeftError


def taylor_rank_scores(lora_a: torch.Tensor, grad_a: torch.Tensor, lora_b: torch.Tensor, grad_b: torch.Tensor):
    """|mean over inputs of A*dA| + |mean over outputs of B*dB|, one score per rank. A: (r, in), B: (out, r)."""
    return (lora_a * grad_a).mean(dim=1).abs() + (lora_b * grad_b).mean(dim=0).abs()  # (r,)


def _is_sharded(tensor: torch.Tensor) -> bool:
    return type(tensor).__name__ == "DTensor" or hasattr(tensor, "ds_id")  # FSDP2 / DeepSpeed ZeRO parameters


def masked_token_mean(values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-token `values` (B, T) over positions where `attention_mask` is 1 (all if no mask fits).

    Values of flattened tokens (B*T,), as OPT's FFN sees them, are matched to the mask row-major. Padded
    positions are left out even when their value is NaN.
    """
    if attention_mask is None or attention_mask.numel() != values.numel():
        return values.mean()
    values = values.reshape(attention_mask.shape)  # (B*T,) -> (B, T); a no-op for (B, T)
    keep = attention_mask.bool()
    # where, not a product: padding can give 0/0 = NaN (a zero pad embedding, as in tiny Llama configs)
    return torch.where(keep, values, 0.0).sum() / keep.sum().clamp_min(1).to(values.dtype)


class ImportanceTracker:
    """Hooks that accumulate module and unit importance over the last `window` of `total_steps` optimizer steps.

    Works for LoRA and adapters alike (see `peft_modules.PeftUnit`). Call `end_step()` once per optimizer step,
    after backward and before clipping (grads complete, unclipped).
    """

    def __init__(self, model: nn.Module, total_steps: int, window: float = 0.5, marks: bool = False):
        self.units = peft_units(model)
        if not self.units:
            raise LightPeftError("the model has no PEFT modules to score; estimation needs PEFT modules")
        self.names = list(self.units)
        self.step = 0
        self.window = window
        # with marks (estimation may stop early), accumulate from the start; the window is cut at the end from
        # cumulative snapshots taken at each `mark()`
        self.start_step = 0 if marks else int(math.floor(total_steps * (1.0 - window)))
        self._marks: list[tuple[int, tuple]] | None = [] if marks else None
        device = next(iter(self.units.values())).down.device
        n, r = len(self.names), max(unit.down.shape[0] for unit in self.units.values())
        self.module_sum = torch.zeros(n, device=device, dtype=torch.float64)
        self.module_count = torch.zeros(n, device=device, dtype=torch.float64)
        self.rank_sum = torch.zeros(n, r, device=device, dtype=torch.float64)
        self.rank_count = torch.zeros((), device=device, dtype=torch.float64)
        if marks:
            self.mark()
        self._attention_mask = None
        self._base_norm: dict[int, torch.Tensor] = {}
        self._hooks = []
        self._install(model)

    @property
    def active(self) -> bool:
        return self.step >= self.start_step

    def _install(self, model: nn.Module) -> None:
        self._hooks.append(hf_model(model).register_forward_pre_hook(self._grab_attention_mask, with_kwargs=True))
        for index, unit in enumerate(self.units.values()):
            self._hooks.append(unit.base.register_forward_hook(self._base_hook(index)))
            self._hooks.append(unit.branch.register_forward_hook(self._delta_hook(index, unit)))

    def _grab_attention_mask(self, module, args, kwargs):
        self._attention_mask = kwargs.get("attention_mask")

    def _base_hook(self, index: int):
        def hook(module, args, output):
            if module.training and self.active:
                self._base_norm[index] = output.detach().float().norm(dim=-1)  # (B, T)

        return hook

    def _delta_hook(self, index: int, unit: PeftUnit):
        def hook(module, args, output):
            base_norm = self._base_norm.pop(index, None)
            if not (module.training and self.active) or base_norm is None:
                return
            delta_norm = output.detach().float().norm(dim=-1) * abs(unit.scaling)  # (B, T)
            ratio = masked_token_mean(delta_norm / base_norm, self._attention_mask)
            self.module_sum[index] += torch.nan_to_num(ratio, nan=0.0, posinf=0.0, neginf=0.0).double()
            self.module_count[index] += 1

        return hook

    @torch.no_grad()
    def end_step(self) -> None:
        """Record unit Taylor scores from the current (accumulated, unclipped) grads, then advance one step."""
        if self.active:
            for index, unit in enumerate(self.units.values()):
                a, b = unit.down, unit.up
                if a.grad is None or b.grad is None:
                    continue
                if _is_sharded(a.grad) or _is_sharded(b.grad):  # a shard's A*dA is not the unit's score
                    raise LightPeftError("PEFT gradients are sharded (FSDP/DeepSpeed); estimation needs whole "
                                         "gradients on every rank: estimate with DDP or one process")
                scores = taylor_rank_scores(a.float(), a.grad.float(), b.float(), b.grad.float())
                self.rank_sum[index, : scores.numel()] += torch.nan_to_num(scores, nan=0.0, posinf=0.0).double()
            self.rank_count += 1
        self.step += 1

    def _sums(self) -> tuple:
        return self.module_sum, self.module_count, self.rank_sum, self.rank_count

    def mark(self) -> None:
        """Snapshot the running sums here: a possible start of the importance window (bounded: one per check)."""
        self._marks.append((self.step, tuple(t.clone() for t in self._sums())))

    def _collapse_window(self) -> None:
        """With marks: keep only what was accumulated since the last mark at or before the window's start."""
        if not self._marks:
            return
        start = int(math.floor(self.step * (1.0 - self.window)))
        _, snapshot = max((m for m in self._marks if m[0] <= start), key=lambda m: m[0])
        for running, earlier in zip(self._sums(), snapshot):
            running -= earlier
        self._marks = None

    def all_reduce(self) -> None:
        """Sum the statistics of every process, so every rank ends with the same importances."""
        self._collapse_window()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for tensor in (self.module_sum, self.module_count):
                dist.all_reduce(tensor)
            # Taylor scores come from all-reduced grads, identical on every rank: average, don't sum
            dist.all_reduce(self.rank_sum)
            self.rank_sum /= dist.get_world_size()

    def results(self) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """(names, module importance (n,), unit importance (n, r)) as float32 CPU tensors."""
        self._collapse_window()
        if self.module_count.sum() == 0 or self.rank_count == 0:
            raise LightPeftError(
                "no importance was recorded during estimation; raise --estimate_steps (the window needs >= 1 step)"
            )
        silent = [name for name, count in zip(self.names, self.module_count.tolist()) if count == 0]
        if silent:  # some modules ran their hooks, these never did: their importance would read as 0
            raise LightPeftError(
                f"{len(silent)} PEFT modules (first: {silent[0]}) never ran during estimation while the others did; "
                "something bypasses their call (a fused or hub kernel, or a modeling change in transformers)"
            )
        module = self.module_sum / self.module_count.clamp_min(1.0)
        rank = self.rank_sum / self.rank_count.clamp_min(1.0)
        return list(self.names), module.float().cpu(), rank.float().cpu()

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
