"""Masked == physically pruned: the central invariant of the method's pruning step."""

import pytest
import torch

from lightpeft.core import arch
from lightpeft.core.build import build_model
from lightpeft.core.peft_kinds import PEFT_ROLES, lora_layers
from lightpeft.core.peft_modules import export_state
from lightpeft.core.surgery import NoAttention, slice_peft_state
from lightpeft.methods.light_peft import masks
from lightpeft.methods.light_peft.config import PlanConfig

from conftest import tiny_batch, tiny_model
from helpers import PRUNING_CASES, as_base, lora_everywhere, random_plan


def masked_twin(family, plan, r=4):
    """Unpruned model + LoRA everywhere, with gates at 0/1 and pruned modules/ranks zeroed."""
    model = lora_everywhere(tiny_model(family), r=r)
    handle = masks.attach_gates(model.get_base_model())
    masks.set_binary(handle.gates, plan.heads, plan.ffn)
    state = export_state(model)
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            keep = torch.zeros(r, dtype=torch.bool)
            if name in plan.peft_modules:
                keep[plan.kept_units(name)] = True
            layer.lora_A["default"].weight[~keep] = 0.0  # rows of A, columns of B belong to ranks
            layer.lora_B["default"].weight[:, ~keep] = 0.0
    return model, state


CASES = {**PRUNING_CASES,
         "GQA: same query heads in every group": dict(cfg=PlanConfig(head_ratio=0.5, gqa_policy="per_group"))}


@pytest.mark.parametrize("case", CASES)
def test_masked_equals_physically_pruned(family, case):
    kwargs = CASES[case]
    plan = random_plan(tiny_model(family), **kwargs)
    masked, estimated_state = masked_twin(family, plan)
    batch = tiny_batch()
    expected = masked(**batch).logits
    pruned = build_model(as_base(tiny_model(family)), plan, slice_peft_state(estimated_state, plan)).eval()
    assert torch.allclose(pruned(**batch).logits, expected, atol=1e-5)


@pytest.mark.parametrize("case", ["paper defaults", "layer loses every head"])
def test_xlm_roberta_masked_equals_physically_pruned(case):
    test_masked_equals_physically_pruned("xlm-roberta", case)


def test_layer_without_heads_gets_no_attention_and_fewer_parameters():
    model = tiny_model()
    plan = random_plan(model, PlanConfig(head_ratio=0.5, head_scope="global"), kill_heads_layer=0)
    assert plan.heads[0] == []
    pruned = build_model(as_base(tiny_model()), plan)
    block = pruned.get_base_model().bert.encoder.layer[0]
    assert isinstance(block.attention.self, NoAttention)
    assert block.attention.output.dense.in_features == 0
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_pruned_weights_are_contiguous_and_sized():
    model = tiny_model()
    plan = random_plan(model, PlanConfig())
    pruned = build_model(as_base(tiny_model()), plan).get_base_model()
    layer = pruned.bert.encoder.layer[1]
    kept_heads, kept_ffn = len(plan.heads[1]), len(plan.ffn[1])
    assert layer.attention.self.query.weight.shape == (kept_heads * 8, 32)
    assert layer.attention.self.num_attention_heads == kept_heads
    assert layer.intermediate.dense.weight.shape == (kept_ffn, 32)
    assert layer.output.dense.weight.shape == (32, kept_ffn)
    assert all(p.is_contiguous() for p in pruned.parameters())


def test_zero_ratios_keep_everything_and_match_unpruned(family):
    model = tiny_model(family)
    plan = random_plan(model, PlanConfig(head_ratio=0, ffn_ratio=0, module_ratio=0, rank_ratio=0))
    assert all(len(h) == arch.num_heads(model.config) for h in plan.heads) and all(len(f) == 37 for f in plan.ffn)
    assert len(plan.peft_modules) == len(arch.linear_names(model, PEFT_ROLES))
    assert all(len(e["units"]) == 4 for e in plan.peft_modules.values())
    reference = lora_everywhere(tiny_model(family))
    batch = tiny_batch()
    rebuilt = build_model(as_base(tiny_model(family)), plan, slice_peft_state(export_state(reference), plan)).eval()
    assert torch.allclose(rebuilt(**batch).logits, reference(**batch).logits, atol=1e-6)
