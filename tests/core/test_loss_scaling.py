"""Per optimizer step, the task gradient is the mean over the step's rows and the L1 gradient is lambda * sign(gate),
whatever the accumulation steps (2 processes: tests/test_distributed.py), for every task kind and stage."""

import pytest
import torch

from lightpeft.methods.light_peft.masks import GATES_ATTR

from grad_probe import KINDS, ROWS, assert_same_grads, step_grads


@pytest.mark.parametrize("stage", ["estimation", "training"])
@pytest.mark.parametrize("kind", KINDS)
def test_task_gradient_of_a_step_does_not_depend_on_accumulation(kind, stage, tmp_path):
    whole, whole_norm = step_grads(kind, stage, ROWS, 1, str(tmp_path))
    halves, halves_norm = step_grads(kind, stage, ROWS // 2, 2, str(tmp_path))
    assert_same_grads(halves, whole)
    assert halves_norm == pytest.approx(whole_norm, rel=1e-4)  # what clipping sees


@pytest.mark.parametrize("accumulation", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_l1_adds_lambda_sign_once_per_step(kind, accumulation, tmp_path):
    lam = 0.05
    with_l1, _ = step_grads(kind, "estimation", ROWS // accumulation, accumulation, str(tmp_path), l1_coef=lam)
    without, _ = step_grads(kind, "estimation", ROWS // accumulation, accumulation, str(tmp_path))
    gate_names = [n for n in with_l1 if GATES_ATTR in n]
    assert len(gate_names) == 2
    for name in with_l1:
        l1_grad = with_l1[name] - without[name]
        expected = torch.full_like(l1_grad, lam) if name in gate_names else torch.zeros_like(l1_grad)  # gates = 1
        torch.testing.assert_close(l1_grad, expected, rtol=0, atol=1e-6, msg=name)
