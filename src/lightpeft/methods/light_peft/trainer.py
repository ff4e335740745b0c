"""The estimation Trainer: `Trainer` plus the L1 term on the gates, importance read after each optimizer step, and
the gates' own optimizer group.
"""

from __future__ import annotations

import dataclasses

from transformers import Trainer, TrainingArguments

from lightpeft.core.training import loss_scaled_for_ga
from lightpeft.methods.light_peft.gate_scores import GateTaylor
from lightpeft.methods.light_peft.importance import ImportanceTracker
from lightpeft.methods.light_peft.masks import Gates


class EstimationTrainer(Trainer):
    """`Trainer` plus the two things estimation needs inside the step, and a separate learning rate for the gates.

    * L1 on the gates is a loss term, so gradient clipping sees it exactly as in the reference. Its gradient is
      lambda * sign(gate) once per optimizer step, whatever the accumulation steps and processes.
    * Rank and gate Taylor scores are read right after the backward that completes a step, before clipping.
    * Evaluation (candidate plans on held-out rows) sees the task loss alone, without the L1 term.
    """

    def __init__(self, *args, gates: Gates, tracker: ImportanceTracker, l1_coef: float, mask_lr_coef: float,
                 gate_taylor: GateTaylor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.gates, self.tracker, self.l1_coef, self.mask_lr_coef = gates, tracker, l1_coef, mask_lr_coef
        self.gate_taylor = gate_taylor or GateTaylor(gates, l1_coef)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if not model.training:
            return result
        penalty = self.l1_coef * self.gates.l1()
        if loss_scaled_for_ga(self, num_items_in_batch):
            # training_step will not divide this loss by the accumulation steps: keep lambda per optimizer step.
            # No process factor: DDP averages the penalty's (identical) gradients over processes.
            penalty = penalty / self.current_gradient_accumulation_steps
        if return_outputs:
            loss, outputs = result
            return loss + penalty, outputs
        return result + penalty

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:  # grads of this optimizer step are complete (and all-reduced)
            self.tracker.end_step()
            self.gate_taylor.end_step()
        return loss

    def create_optimizer(self, model=None):
        gate_params = list(self.gates.parameters())
        for p in gate_params:  # keep them out of the default groups, then give them their own
            p.requires_grad_(False)
        optimizer = super().create_optimizer(model)
        for p in gate_params:
            p.requires_grad_(True)
        # the reference's mask groups: lr x mask_lr_coef and the run's weight decay (0 in its scripts)
        optimizer.add_param_group({"params": gate_params, "lr": self.args.learning_rate * self.mask_lr_coef,
                                   "weight_decay": self.args.weight_decay})
        return optimizer


def estimation_args(args: TrainingArguments, steps: int, output_dir: str) -> TrainingArguments:
    """The user's optimisation settings, cut to `steps` with no evaluation or checkpoints (a short joint run)."""
    return dataclasses.replace(
        args, output_dir=output_dir, max_steps=steps, eval_strategy="no", save_strategy="no",
        load_best_model_at_end=False,
    )
