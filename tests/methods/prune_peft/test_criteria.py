"""Table 1's criteria against a hand computation on a tiny supernet (LoRA on q and v of a layer as one module, an
adapter after the FFN output), and the registry: a new criterion is one function."""

import pytest
import torch

from lightpeft.core.build import build_model
from lightpeft.core.peft_kinds import PeftSettings, lora_layers, peft_units
from lightpeft.errors import LightPeftError
from lightpeft.methods.prune_peft import criteria
from lightpeft.methods.prune_peft.config import SearchConfig
from lightpeft.methods.prune_peft.criteria import CRITERIA, RoundStatistics, score_modules
from lightpeft.methods.prune_peft.supernet import build_supernet

from conftest import tiny_batch, tiny_model
from helpers import as_base

SETTINGS = PeftSettings(lora_r=2, adapter_size=3, lora_dropout=0.0, adapter_dropout=0.0)


def supernet_model():
    base = as_base(tiny_model(num_labels=2))
    supernet = build_supernet(base, SETTINGS, SearchConfig(budget_params=100))
    model = build_model(base, supernet.plan_of(supernet.names))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for unit in peft_units(model).values():
            for w in (unit.down, unit.up):
                w.copy_(torch.randn(w.shape, generator=g) * 0.3)
        first = peft_units(model)[supernet.candidate("lora/0").linears[0]]
        first.down.view(-1)[:5] = 0.0  # exact zeros (zeros criterion) and tiny values (threshold criterion)
        first.up.view(-1)[:3] = 1e-8
    return supernet, model.train()


def test_each_criterion_matches_a_hand_computation():
    supernet, model = supernet_model()
    groups = {c.name: c.linears for c in supernet.candidates}
    stats = RoundStatistics(model, groups, threshold=1e-6)
    inputs = {}  # linear name -> what its PEFT branch saw: the linear's input (LoRA) or its output (adapter)
    hooks = [layer.register_forward_pre_hook(lambda m, a, n=name: inputs.__setitem__(n, a[0].detach()))
             for name, layer in lora_layers(model).items()]
    units = peft_units(model)
    hooks += [u.base.register_forward_hook(lambda m, a, out, n=name: inputs.__setitem__(n, out.detach()))
              for name, u in units.items() if u.peft == "adapter"]
    batch = tiny_batch()
    model(**batch).logits.pow(2).sum().backward()
    stats.on_pre_optimizer_step(None, None, None)
    for hook in hooks:
        hook.remove()
    stats.remove()
    scores = score_modules(stats.module_stats(), list(CRITERIA))
    keep = batch["attention_mask"].bool()
    for candidate in supernet.candidates:
        ws = [w for n in candidate.linears for w in (units[n].down, units[n].up)]
        numel = sum(w.numel() for w in ws)
        activation = 0.0
        for n in candidate.linears:
            u, x = units[n], inputs[n]
            hidden = x @ u.down.T  # (B, T, units)
            if u.peft == "adapter":
                hidden = torch.relu(hidden)
            delta = hidden @ u.up.T * u.scaling  # (B, T, out)
            activation += delta.abs().sum(-1)[keep].sum().item()
        want = {
            "weight": sum(w.pow(2).sum().item() for w in ws) / numel,
            "zeros": sum((w != 0).sum().item() for w in ws) / numel,
            "threshold": sum((w.abs() < 1e-6).sum().item() for w in ws) / numel,
            "activation": activation / keep.sum().item() / numel,
            "sensitivity": sum((w * w.grad).abs().sum().item() for w in ws) / numel,
            "gradient": sum(w.grad.abs().sum().item() for w in ws) / numel,
        }
        for name, value in want.items():
            assert scores[name][candidate.name] == pytest.approx(value, rel=1e-5), (name, candidate.name)
    assert scores["zeros"]["lora/0"] < 1.0 and scores["threshold"]["lora/0"] > 0.0  # the planted values count
    assert scores["threshold"]["lora/1"] == 0.0


def test_eval_forwards_and_steps_without_gradients_are_not_counted():
    supernet, model = supernet_model()
    stats = RoundStatistics(model, {c.name: c.linears for c in supernet.candidates})
    model.eval()
    model(**tiny_batch())
    assert stats.tokens.item() == 0 and stats.activation.abs().sum().item() == 0
    stats.on_pre_optimizer_step(None, None, None)
    assert stats.grad_abs.abs().sum().item() == 0 and stats.steps.item() == 1


def test_a_new_criterion_is_one_function():
    @criterion_named("largest_tensor")
    def largest(s):
        return max(w.numel() for w in s.weights) / s.numel

    try:
        supernet, model = supernet_model()
        stats = RoundStatistics(model, {c.name: c.linears for c in supernet.candidates})
        scores = score_modules(stats.module_stats(), ["largest_tensor"])
        assert set(scores["largest_tensor"]) == set(supernet.names)
        SearchConfig(criteria=["largest_tensor", "gradient"])  # accepted by the settings too
    finally:
        CRITERIA.pop("largest_tensor")


def criterion_named(name):
    return criteria.criterion(name, prune="lowest")


def test_an_unknown_criterion_is_a_one_line_error():
    with pytest.raises(LightPeftError, match="unknown criterion 'magnitude'; choose from weight, zeros"):
        SearchConfig(criteria=["magnitude"])
