"""The distillation trainer: soft-target losses by task kind, weight 0 is the plain task gradient, a student identical
to its teacher has no soft-target loss, the teacher never trains, and the term is normalised like the task loss."""

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import TrainerCallback, default_data_collator

from lightpeft.core.distill import DistillationTrainer, soft_target_loss
from lightpeft.core.training import TrainerParts, make_trainer
from lightpeft.errors import LightPeftError

from grad_probe import ROWS, _GradRecorder, assert_same_grads, build_trainer, rows, tiny_task_model

SOFT_KINDS = ("classification", "regression", "causal_lm")


def distill_trainer(kind: str, out_dir: str, weight: float, teacher=None, temperature: float = 2.0, **args):
    """The training-stage trainer of `build_trainer` on `rows(kind)`, made by `make_trainer` as a
    DistillationTrainer; the teacher defaults to a copy of the student (identical outputs)."""
    plain = build_trainer(kind, "training", out_dir, **args)
    teacher = teacher if teacher is not None else copy.deepcopy(plain.model)
    return make_trainer(plain.model, plain.args, rows(kind), None, None, TrainerParts(default_data_collator),
                        cls=DistillationTrainer, teacher=teacher, distill_weight=weight,
                        distill_temperature=temperature)


def step_grads(trainer) -> dict:
    recorder = _GradRecorder()
    trainer.add_callback(recorder)
    trainer.train()
    return recorder.grads


def test_soft_target_loss_matches_the_formulas():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    total, rows = soft_target_loss(student, teacher, "classification", 2.0)
    p_teacher = F.softmax(teacher / 2, -1)
    expected = (p_teacher * (p_teacher.log() - F.log_softmax(student / 2, -1))).sum(-1).mean() * 4
    assert rows == 4 and total / rows == pytest.approx(expected.item(), rel=1e-5)
    total, rows = soft_target_loss(student[:, :1], teacher[:, :1], "regression", 2.0)
    assert total / rows == pytest.approx(((student[:, 0] - teacher[:, 0]) ** 2).mean().item(), rel=1e-5)
    # causal LM: only positions predicting a response token (labels shifted by one) count
    student, teacher = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, 2, 3, 4]])
    total, tokens = soft_target_loss(student, teacher, "causal_lm", 1.0, labels)
    keep = labels[:, 1:] != -100
    s, t = F.log_softmax(student[:, :-1][keep], -1), F.log_softmax(teacher[:, :-1][keep], -1)
    assert tokens == 6 and total.item() == pytest.approx((t.exp() * (t - s)).sum().item(), rel=1e-5)


@pytest.mark.parametrize("kind", SOFT_KINDS)
def test_weight_zero_is_the_plain_task_gradient(kind, tmp_path):
    plain = step_grads(build_trainer(kind, "training", str(tmp_path), per_device_train_batch_size=ROWS))
    teacher = tiny_task_model(kind, seed=5)  # any other model: with weight 0 it must not matter
    zero = step_grads(distill_trainer(kind, str(tmp_path), 0.0, teacher=teacher, per_device_train_batch_size=ROWS))
    assert_same_grads(zero, plain)


class _SoftLossAtStart(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.first = trainer, None

    def on_step_end(self, args, state, control, **kwargs):
        if self.first is None:
            self.first = self.trainer.last_soft_target_loss


@pytest.mark.parametrize("kind", SOFT_KINDS)
def test_student_identical_to_its_teacher_has_no_soft_target_loss(kind, tmp_path):
    trainer = distill_trainer(kind, str(tmp_path), 1.0, per_device_train_batch_size=ROWS)
    probe = _SoftLossAtStart(trainer)
    trainer.add_callback(probe)
    trainer.train()
    assert probe.first.item() == 0.0
    # and with weight 1, a zero soft-target loss is a zero gradient (up to float rounding in the softmax backward)
    grads = step_grads(distill_trainer(kind, str(tmp_path), 1.0, per_device_train_batch_size=ROWS))
    task = step_grads(build_trainer(kind, "training", str(tmp_path), per_device_train_batch_size=ROWS))
    assert grads.keys() == task.keys()
    assert all(grads[n].abs().max() <= 1e-5 * task[n].abs().max() + 1e-12 for n in task)


@pytest.mark.parametrize("kind", SOFT_KINDS)
def test_teacher_never_changes_and_gets_no_grad(kind, tmp_path):
    teacher = tiny_task_model(kind, seed=5)
    before = {n: p.detach().clone() for n, p in teacher.state_dict().items()}
    trainer = distill_trainer(kind, str(tmp_path), 0.7, teacher=teacher, per_device_train_batch_size=4, max_steps=2)
    student_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert trainer.last_soft_target_loss > 0
    logged = [h["soft_target_loss"] for h in trainer.state.log_history if "soft_target_loss" in h]
    assert len(logged) == 2 and all(value > 0 for value in logged)  # logging_steps 1: one mean per step
    assert not teacher.training and not any(p.requires_grad or p.grad is not None for p in teacher.parameters())
    assert all(torch.equal(before[n], p) for n, p in teacher.state_dict().items())
    assert not any(p is q for p in trainer.model.parameters() for q in teacher.parameters())
    trained = dict(trainer.model.named_parameters())
    assert any(not torch.equal(student_before[n], trained[n]) for n in student_before)  # the student did train


@pytest.mark.parametrize("kind", SOFT_KINDS)
def test_distillation_gradient_of_a_step_does_not_depend_on_accumulation(kind, tmp_path):
    teacher = tiny_task_model(kind, seed=5)
    whole = step_grads(distill_trainer(kind, str(tmp_path), 0.5, teacher=teacher, per_device_train_batch_size=ROWS))
    halves = step_grads(distill_trainer(kind, str(tmp_path), 0.5, teacher=teacher,
                                        per_device_train_batch_size=ROWS // 2, gradient_accumulation_steps=2))
    assert_same_grads(halves, whole)


def test_extractive_qa_is_refused(tmp_path):
    with pytest.raises(LightPeftError, match="not extractive QA") as err:
        distill_trainer("qa", str(tmp_path), 0.5)
    assert "\n" not in str(err.value)
