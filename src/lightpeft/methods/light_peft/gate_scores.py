"""First-order Taylor scores of the gates, accumulated for free from estimation's own backward passes.

The score of a head or neuron is the sum over optimizer steps of |g * dL_task/dg|: the first-order change of the
task loss if that unit's gate went from g to 0 (Molchanov et al. 2017; Michel et al. 2019 for heads). It is read
from the same gradients the gates are trained with, so it costs one multiply-add per gate and step. Why beside the
gate values: in a short run at the PEFT learning rate a gate moves by about one learning rate per step, so after a
few dozen steps the gate values differ by thousandths and rank units almost arbitrarily, while the Taylor sums
carry the whole run's evidence.

The L1 term's gradient (l1_coef * sign(g), once per optimizer step) is taken out, so the score measures the task
loss alone. Gate gradients are DDP-synchronised, so every process accumulates the same sums.
"""

from __future__ import annotations

import torch

from lightpeft.methods.light_peft.masks import Gates


class GateTaylor:
    """Running sums of |g * dL/dg| per head (layers, heads) and per FFN neuron (layers, ffn)."""

    def __init__(self, gates: Gates, l1_coef: float):
        self.gates, self.l1_coef = gates, l1_coef
        self.head = torch.zeros_like(gates.head, dtype=torch.float64, requires_grad=False)
        self.ffn = torch.zeros_like(gates.ffn, dtype=torch.float64, requires_grad=False)
        self.steps = 0

    @torch.no_grad()
    def end_step(self) -> None:
        """Add this optimizer step's terms; call after the step's backward, before the optimizer step."""
        for gate, total in ((self.gates.head, self.head), (self.gates.ffn, self.ffn)):
            if gate.grad is None:
                continue
            task_grad = gate.grad.float() - self.l1_coef * torch.sign(gate.float())
            total += torch.nan_to_num((gate.float() * task_grad).abs(), nan=0.0, posinf=0.0).double()
        self.steps += 1

    def results(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean per-step scores (head (layers, heads), ffn (layers, ffn)) as float32 CPU tensors."""
        steps = max(1, self.steps)
        return (self.head / steps).float().cpu(), (self.ffn / steps).float().cpu()
