"""Importance statistics against a hand computation on a tiny example."""

import pytest
import torch

from lightpeft.core import arch
from lightpeft.core.peft_kinds import wrap_with_lora
from lightpeft.methods.light_peft.importance import ImportanceTracker, masked_token_mean, taylor_rank_scores

from conftest import tiny_batch, tiny_model


def test_taylor_score_is_abs_of_signed_mean_not_mean_of_abs():
    a = torch.tensor([[1.0, -1.0], [2.0, 2.0]])  # (r=2, in=2)
    ga = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # (out=3, r=2)
    gb = torch.tensor([[3.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    # rank 0: |mean(1, -1)| + |mean(3, 0, 0)| = 0 + 1; rank 1: |mean(2, 2)| + 0 = 2
    assert torch.allclose(taylor_rank_scores(a, ga, b, gb), torch.tensor([1.0, 2.0]))


def test_masked_token_mean_ignores_padding():
    values = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.isclose(masked_token_mean(values, mask), torch.tensor(15.0 / 5))
    values[0, 2] = float("nan")  # 0/0 at a padded position (a zero pad embedding) must not poison the mean
    assert torch.isclose(masked_token_mean(values, mask), torch.tensor(15.0 / 5))
    assert torch.isclose(masked_token_mean(values.reshape(-1), mask), torch.tensor(15.0 / 5))  # (B*T,) as OPT's FFN


def _tracked_model(window=1.0, total_steps=2, family="bert", role="q"):
    model = tiny_model(family)
    name = arch.linear_names(model, [role])[0]
    peft_model = wrap_with_lora(model, [name], r=2, alpha=4.0, dropout=0.0)
    with torch.no_grad():
        layer = peft_model.get_base_model().get_submodule(name)
        layer.lora_B["default"].weight.normal_()
    return peft_model, name, ImportanceTracker(peft_model, total_steps=total_steps, window=window)


@pytest.mark.parametrize("family, role", [("bert", "q"), ("opt", "ffn_out"), ("gpt2", "q"), ("llama", "k")])
def test_module_and_rank_importance_match_hand_computation(family, role):
    """OPT's FFN sees flattened tokens (B*T, F); GPT-2's fused c_attn is a Conv1D; Llama's k_proj is GQA-narrow."""
    peft_model, name, tracker = _tracked_model(family=family, role=role)
    layer = peft_model.get_base_model().get_submodule(name)
    seen = {}
    layer.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].detach()))
    batch = tiny_batch()
    peft_model.train()
    out = peft_model(**batch, labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    tracker.end_step()

    x = seen["x"]  # (B, T, in), or (B*T, in) for OPT's FFN
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    weight, bias = layer.base_layer.weight, layer.base_layer.bias
    base = x @ (weight if family == "gpt2" else weight.T)  # Conv1D stores (in, out)
    base = base + bias if bias is not None else base
    delta = (x @ a.T @ b.T) * (4.0 / 2)
    keep = batch["attention_mask"].bool()
    ratio = (delta.norm(dim=-1) / base.norm(dim=-1)).reshape(keep.shape)  # (B, T)
    expected_module = ratio[keep].mean()
    expected_rank = (a * a.grad).mean(1).abs() + (b * b.grad).mean(0).abs()

    names, module, rank = tracker.results()
    assert names == [name]
    assert torch.isclose(module[0], expected_module.float(), rtol=1e-4)
    assert torch.allclose(rank[0], expected_rank.float(), rtol=1e-4)


def test_only_the_window_is_averaged_and_eval_is_ignored():
    peft_model, name, tracker = _tracked_model(window=0.5, total_steps=4)
    batch = tiny_batch()
    labels = torch.tensor([0, 1, 2])
    for step in range(4):
        peft_model.train()
        peft_model(**batch, labels=labels).loss.backward()
        if step < 2:
            assert tracker.module_count.sum() == 0  # first half: nothing recorded
        tracker.end_step()
        peft_model.zero_grad()
        peft_model.eval()
        peft_model(**batch)  # eval forwards never count
    assert tracker.module_count.item() == 2 and tracker.rank_count.item() == 2
