"""Distillation in the training stage: a frozen teacher's outputs on the same batch are soft targets (as CoFi and APT
recover a pruned model): loss = (1 - w) * task loss + w * soft-target loss.

Soft-target loss per task kind: classification T^2 * KL(softmax(teacher / T) || softmax(student / T)) averaged over
rows (the T^2 keeps its gradient on the task loss's scale, Hinton et al.); regression the MSE to the teacher's
prediction; causal LM T^2 * the per-token KL on the response tokens (the ones the task loss counts), normalised as
that loss is. Extractive QA is refused. The teacher never trains: it runs in eval mode under `torch.no_grad()`,
is not a submodule of the student (the optimizer, checkpoints and DDP never see it), and evaluation reports the
task loss alone, comparable with a run without distillation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from lightpeft.core import heads
from lightpeft.core.peft_kinds import hf_model
from lightpeft.errors import LightPeftError

LABEL_KEYS = ("labels", "start_positions", "end_positions")  # the teacher needs no loss of its own


def check_distillable(task_kind: str) -> None:
    """Refuse, before any training, a task kind without a soft-target loss here (extractive QA)."""
    if task_kind == "qa":
        raise LightPeftError("--distill_weight supports classification, regression and causal-LM tasks, not "
                             "extractive QA; drop --distill_weight")


def soft_target_kind(model: nn.Module) -> str:
    """`classification`, `regression` or `causal_lm`: which soft-target loss fits `model` (QA is refused)."""
    model = hf_model(model)
    kind = heads.kind_of_model(model)
    check_distillable(kind)
    if kind == "classification" and (model.config.problem_type == "regression" or model.config.num_labels == 1):
        return "regression"
    return kind


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str, temperature: float,
                     labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | int]:
    """(summed soft-target loss, what to divide it by for a mean): rows for classification and regression, response
    tokens for causal LM (`labels`: the task's labels, -100 off the response)."""
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if kind == "regression":  # (B, 1) predictions
        return F.mse_loss(student_logits.squeeze(-1), teacher_logits.squeeze(-1), reduction="sum"), \
            student_logits.shape[0]
    if kind == "causal_lm":  # position t predicts token t + 1, as the task loss shifts its labels
        response = labels[:, 1:] != -100  # (B, T-1)
        student_logits, teacher_logits = student_logits[:, :-1][response], teacher_logits[:, :-1][response]  # (N, V)
    student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="sum") * temperature**2
    return kl, student_logits.shape[0]


class DistillationTrainer(Trainer):
    """`Trainer` whose training loss mixes the task loss with the soft-target loss of a frozen `teacher`."""

    def __init__(self, *args, teacher: nn.Module, distill_weight: float, distill_temperature: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = freeze(teacher).to(self.args.device)
        self.distill_weight, self.distill_temperature = distill_weight, distill_temperature
        self.soft_target_kind = soft_target_kind(self.model)
        self.last_soft_target_loss: torch.Tensor | None = None  # mean of the latest micro-batch (tests read it)
        self._soft_sum, self._soft_count = 0.0, 0  # since the last log, on the device (no per-step host sync)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation: the task loss alone
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        task_loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                                  num_items_in_batch=num_items_in_batch)
        with torch.no_grad():
            teacher_logits = self.teacher(**{k: v for k, v in inputs.items() if k not in LABEL_KEYS}).logits
        total, count = soft_target_loss(outputs.logits, teacher_logits, self.soft_target_kind,
                                        self.distill_temperature, inputs.get("labels"))
        soft = total / self._task_loss_divisor(num_items_in_batch, count)
        self.last_soft_target_loss = (total / max(1, count)).detach()  # per row / response token
        self._soft_sum, self._soft_count = self._soft_sum + self.last_soft_target_loss, self._soft_count + 1
        loss = (1.0 - self.distill_weight) * task_loss + self.distill_weight * soft
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if self._soft_count and "loss" in logs:  # the mean soft-target loss of the micro-batches since the last log
            logs["soft_target_loss"] = float(self._soft_sum) / self._soft_count
            self._soft_sum, self._soft_count = 0.0, 0
        super().log(logs, *args, **kwargs)

    def _task_loss_divisor(self, num_items_in_batch, count):
        """What the task loss was divided by, so both terms take the same share of a step's gradient.

        A loss the model normalised by the step's item count (causal LM: `num_items_in_batch`, over every
        micro-batch and process; `Trainer.compute_loss` then multiplies it by the process count, transformers 5.24)
        is matched term for term; every other task loss is a per-micro-batch mean (`training.use_mean_loss_scaling`).
        """
        if not (self.model_accepts_loss_kwargs and num_items_in_batch is not None):
            return max(1, count)
        scale = 1
        if self.args.average_tokens_across_devices:
            scale = self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1 else self.args.n_gpu
        return num_items_in_batch / scale


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode (no dropout) and no gradients: a teacher's parameters never change."""
    model.requires_grad_(False)
    return model.eval()


def module_megabytes(model: nn.Module) -> float:
    """Bytes of a model's parameters and buffers, in MiB (what a teacher adds to training memory)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20
