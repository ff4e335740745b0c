"""Taylor gate scores: |g * dL_task/dg| from the estimation backward, with the L1 term's gradient taken out."""

import torch

from lightpeft.methods.light_peft.gate_scores import GateTaylor
from lightpeft.methods.light_peft.masks import attach_gates

from conftest import tiny_batch, tiny_model


def gated_model():
    model = tiny_model()
    handle = attach_gates(model)
    with torch.no_grad():  # gates away from 1, so the factor g matters
        handle.gates.head.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
        handle.gates.ffn.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(1))
    return model.eval(), handle.gates  # eval: no dropout, so repeated forwards agree (grads still flow)


def task_loss(model, seed):
    batch = {**tiny_batch(seed=seed), "labels": torch.tensor([0, 1, 2])}
    return model(**batch).loss


def test_scores_are_the_mean_task_taylor_term_with_the_l1_gradient_removed():
    l1 = 1e-3  # far above these tiny grads (~1e-6), so a score that kept the L1 gradient would differ visibly
    model, gates = gated_model()
    scores = GateTaylor(gates, l1_coef=l1)
    expected_head, expected_ffn = torch.zeros_like(gates.head), torch.zeros_like(gates.ffn)
    for seed in (1, 2, 3):
        model.zero_grad()
        task_loss(model, seed).backward()
        expected_head += (gates.head * gates.head.grad).abs().detach()
        expected_ffn += (gates.ffn * gates.ffn.grad).abs().detach()
        model.zero_grad()
        (task_loss(model, seed) + l1 * gates.l1()).backward()  # what estimation backpropagates
        scores.end_step()
    head, ffn = scores.results()
    assert torch.allclose(head, expected_head / 3, rtol=1e-3, atol=1e-10)
    assert torch.allclose(ffn, expected_ffn / 3, rtol=1e-3, atol=1e-10)
    assert head.abs().sum() > 0 and ffn.abs().sum() > 0


def test_a_unit_that_cannot_change_the_loss_scores_zero():
    """A zero gate contributes nothing to the output and its first-order term is 0: it ranks last."""
    model, gates = gated_model()
    with torch.no_grad():
        gates.head[0, 1] = 0.0
        gates.ffn[1, 3] = 0.0
    scores = GateTaylor(gates, l1_coef=1e-4)
    (task_loss(model, 1) + 1e-4 * gates.l1()).backward()
    scores.end_step()
    head, ffn = scores.results()
    assert head[0, 1] == 0 and ffn[1, 3] == 0
    assert head.flatten().argmin() == 1 and (head > 0).sum() == head.numel() - 1
