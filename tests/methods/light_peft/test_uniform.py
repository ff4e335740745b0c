"""Uniform plans: one head count (whole KV groups) and one FFN width for every layer, from the same gates."""

import pytest
import torch

from lightpeft import LightPeftError, PlanConfig
from lightpeft.methods.light_peft.selection import keep_structure
from lightpeft.methods.light_peft.uniform import (
    fit_to_standard_config,
    removed_gate_mass,
    shared_prune_count,
    uniform_note,
    uniform_structure,
)

from conftest import tiny_config


def gates(layers=4, heads=6, ffn=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(layers, heads, generator=g), torch.rand(layers, ffn, generator=g)


@pytest.mark.parametrize("rule", ["layer", "global"])
@pytest.mark.parametrize("group_size, policy", [(1, "kv_group"), (2, "kv_group"), (3, "kv_group"), (2, "per_group")])
def test_every_layer_keeps_the_same_counts_and_its_own_highest_gates(rule, group_size, policy):
    head_masks, ffn_masks = gates()
    cfg = PlanConfig(head_ratio=0.4, ffn_ratio=0.45, uniform=True, gqa_policy=policy)
    heads, ffn = uniform_structure(head_masks, ffn_masks, cfg, group_size, rule)
    assert len({len(h) for h in heads}) == 1 and len({len(f) for f in ffn}) == 1
    assert 0 < len(heads[0]) < 6 and 0 < len(ffn[0]) < 40
    for row, kept in zip(ffn_masks, ffn):  # within a layer, nothing pruned beats anything kept
        dropped = [c for c in range(40) if c not in kept]
        assert row[dropped].max() <= row[kept].min()
    if policy == "kv_group":  # whole groups: a kept query head's group is kept entirely
        for layer in heads:
            assert all(all(g * group_size + i in layer for i in range(group_size)) for g in {h // group_size
                                                                                           for h in layer})
            kept_groups = {h // group_size for h in layer}
            scores = head_masks[heads.index(layer)].reshape(-1, group_size).mean(-1)
            others = [g for g in range(6 // group_size) if g not in kept_groups]
            assert not others or scores[others].max() <= scores[list(kept_groups)].min()


def test_the_two_count_rules_differ_by_at_most_one_unit_and_never_prune_everything():
    for width in (4, 12, 37, 1536):
        for ratio in (0.0, 0.1, 0.333333333, 0.5, 0.9, 0.999):
            layer, glob = (shared_prune_count(6, width, ratio, rule) for rule in ("layer", "global"))
            assert abs(layer - glob) <= 1 and layer < width and glob < width
    assert shared_prune_count(6, 12, 0.0) == 0


def test_uniform_ffn_width_rounds_to_the_multiple_and_the_default_plan_is_unchanged():
    head_masks, ffn_masks = gates(ffn=200)
    _, ffn = uniform_structure(head_masks, ffn_masks, PlanConfig(uniform=True, round_to=32))
    assert {len(f) for f in ffn} == {128}  # 200 - 67 pruned = 133 -> 128
    default = keep_structure(head_masks, ffn_masks, PlanConfig())
    assert len({len(f) for f in default[1]}) > 1  # global FFN scope: widths differ by layer
    uniform = keep_structure(head_masks, ffn_masks, PlanConfig(uniform=True))
    assert uniform[0] == default[0]  # heads: the default per-layer rule already is uniform
    # uniformity costs gate mass: the global ranking removes the least for its count
    assert removed_gate_mass(ffn_masks, uniform[1]) >= removed_gate_mass(ffn_masks, default[1]) - 1e-6


def test_family_decides_what_a_uniform_plan_prunes():
    bert, llama = tiny_config("bert"), tiny_config("llama")
    cfg = PlanConfig(uniform=True, head_ratio=0.5)
    assert fit_to_standard_config(cfg, bert, "lora").head_ratio == 0.0  # head size = hidden / heads: keep them
    assert "FFN neurons only" in uniform_note(cfg, bert)
    assert fit_to_standard_config(cfg, llama, "lora").head_ratio == 0.5 and uniform_note(cfg, llama) is None
    assert fit_to_standard_config(PlanConfig(head_ratio=0.5), bert, "adapter").head_ratio == 0.5  # not uniform
    with pytest.raises(LightPeftError, match="--peft lora") as err:
        fit_to_standard_config(cfg, llama, "adapter")
    assert "\n" not in str(err.value)


def test_run_refuses_uniform_adapters_before_estimating(tmp_path):
    from lightpeft import DataConfig, EstimateConfig, LightPeftTrainingArguments, ModelConfig, PeftSettings, run

    with pytest.raises(LightPeftError, match="--peft lora"):  # the model path does not even exist: nothing ran
        run(ModelConfig(str(tmp_path / "missing")), DataConfig(task="rotten_tomatoes"), PeftSettings(peft="adapter"),
            EstimateConfig(), PlanConfig(uniform=True), LightPeftTrainingArguments(output_dir=str(tmp_path / "o")))
