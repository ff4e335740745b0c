"""Budget planning: ratios and the lowest PEFT block chosen to meet a counted speed-up or a parameter fraction."""

import pytest

from lightpeft import PeftSettings, PlanConfig, make_plan
from lightpeft.bench.shapes import synthetic_estimate
from lightpeft.core.counts import block_costs, foundation_params, lowest_peft_block, train_step_cost
from lightpeft.errors import LightPeftError

from conftest import tiny_model


@pytest.fixture(scope="module")
def estimate():
    return synthetic_estimate(tiny_model(num_hidden_layers=4), PeftSettings(lora_r=4), seed=3)


def test_backward_cost_counts_blocks_from_the_lowest_trainable_one():
    assert train_step_cost([1.0, 2.0, 3.0], 0) == 12.0
    assert train_step_cost([1.0, 2.0, 3.0], 2) == 9.0
    assert train_step_cost([1.0, 2.0, 3.0], 3) == 6.0  # nothing trainable in the blocks: forward only


def test_min_peft_layer_keeps_the_module_count_above_that_block(estimate):
    free = make_plan(estimate, PlanConfig(rank_ratio=0.0))
    high = make_plan(estimate, PlanConfig(rank_ratio=0.0, min_peft_layer=2))
    assert {e["layer"] for e in high.peft_modules.values()} <= {2, 3}
    assert len(high.peft_modules) == len(free.peft_modules)
    assert lowest_peft_block(high) >= 2


def test_speedup_budget_is_met_with_the_paper_ratios_when_moving_peft_up_suffices(estimate):
    plan = make_plan(estimate, PlanConfig(target_train_speedup=1.6))
    budget = plan.ratios["budget"]
    assert budget["counted_speedup"] >= 1.6 and budget["ratio"] == pytest.approx(1 / 3)
    config = tiny_model(num_hidden_layers=4).config
    full = make_plan(estimate, PlanConfig(head_ratio=0.0, ffn_ratio=0.0))
    counted = train_step_cost(block_costs(full, config, 128), 0) / train_step_cost(
        block_costs(plan, config, 128), lowest_peft_block(plan))
    assert counted == pytest.approx(budget["counted_speedup"])
    # the chosen lowest block is the first that meets the target: one block lower does not
    if budget["min_peft_layer"] > 0:
        lower = make_plan(estimate, PlanConfig(min_peft_layer=budget["min_peft_layer"] - 1))
        assert lower.counts["counted_train_speedup_seq128"] < 1.6


def test_params_budget_raises_ratios_until_the_fraction_is_met(estimate):
    config = tiny_model(num_hidden_layers=4).config
    plan = make_plan(estimate, PlanConfig(target_params_fraction=0.8))
    full = make_plan(estimate, PlanConfig(head_ratio=0.0, ffn_ratio=0.0))
    kept = foundation_params(plan, config) / foundation_params(full, config)
    assert kept <= 0.8 and plan.ratios["budget"]["params_fraction"] == pytest.approx(kept)


def test_unreachable_budget_is_a_clear_error(estimate):
    with pytest.raises(LightPeftError, match="out of reach"):
        make_plan(estimate, PlanConfig(target_train_speedup=50.0))
    with pytest.raises(LightPeftError, match="one budget"):
        PlanConfig(target_train_speedup=2.0, target_params_fraction=0.5)
