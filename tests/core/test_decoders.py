"""Decoders (OPT, GPT-2, Llama-style with grouped-query attention): generation with a KV cache after pruning, GQA
bookkeeping, counts from the meta device, and whole runs reloaded with `load_pruned` (RoBERTa and XLM-R too)."""

import inspect
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM

from lightpeft import LightPeftError, PlanConfig, load_pruned
from lightpeft.core import arch
from lightpeft.core.adapters import AdapterLinear
from lightpeft.core.counts import count_plan
from lightpeft.core.peft_kinds import peft_units, wrap_with_lora
from lightpeft.core.surgery import NoAttention, prune_backbone
from lightpeft.methods.light_peft import masks

from conftest import DECODERS, decoder_batch, tiny_config, tiny_model
from helpers import adapters_everywhere, random_plan

GQA_FAMILIES = [f for f in DECODERS if arch.kv_group_size(tiny_config(f)) > 1]
PLANS = {
    "paper defaults": dict(cfg=PlanConfig()),
    "layer 0 loses every head": dict(cfg=PlanConfig(head_ratio=0.5, head_scope="global"), kill_heads_layer=0),
    "GQA per group, layer 0 loses every head": dict(
        cfg=PlanConfig(head_ratio=0.5, head_scope="global", gqa_policy="per_group"), kill_heads_layer=0),
}


def causal_lm(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(family)).eval()


def greedy(model, prompt: dict, use_cache: bool):
    out = model.generate(**prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False, use_cache=use_cache,
                         output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    return out.sequences, torch.stack(out.scores)  # (B, T + 6), (6, B, vocab)


PROMPT = {"input_ids": torch.tensor([[5, 9, 17, 33, 8, 41, 12], [7, 7, 60, 2, 91, 14, 30]]),
          "attention_mask": torch.ones(2, 7, dtype=torch.long)}
# the `lightpeft predict` path: a batch of prompts of different lengths, padded on the left
LEFT_PADDED = {"input_ids": torch.tensor([[5, 9, 17, 33, 8, 41, 12], [0, 0, 0, 2, 91, 14, 30]]),
               "attention_mask": torch.tensor([[1] * 7, [0, 0, 0, 1, 1, 1, 1]])}
PROMPTS = {"full": PROMPT, "left-padded": LEFT_PADDED}


def cache_of(outputs):
    """The KV cache a forward returned (`cache` since transformers 5.24, `past_key_values` before)."""
    return outputs.cache if "cache" in outputs else outputs.past_key_values


def with_cache(model, cache) -> dict:
    """The forward keyword for a KV cache this transformers version takes."""
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache}


@pytest.mark.parametrize("family", list(DECODERS))
@pytest.mark.parametrize("case", PLANS)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_generation_with_kv_cache_after_pruning_matches_the_masked_model(family, case, prompt):
    if "GQA" in case and family not in GQA_FAMILIES:
        pytest.skip("one KV head per query head: the GQA policy changes nothing")
    plan = random_plan(causal_lm(family), **PLANS[case])
    if "kill_heads_layer" in PLANS[case]:
        assert plan.heads[0] == [] and plan.heads[1]
    pruned = prune_backbone(causal_lm(family), plan)
    masked = causal_lm(family)
    masks.set_binary(masks.attach_gates(masked, requires_grad=False).gates, plan.heads, plan.ffn)

    prompt = PROMPTS[prompt]
    tokens, scores = greedy(pruned, prompt, use_cache=True)
    tokens_no_cache, scores_no_cache = greedy(pruned, prompt, use_cache=False)
    tokens_masked, scores_masked = greedy(masked, prompt, use_cache=True)
    assert torch.equal(tokens, tokens_no_cache) and torch.equal(tokens, tokens_masked)
    assert torch.allclose(scores, scores_no_cache, atol=1e-5) and torch.allclose(scores, scores_masked, atol=1e-5)

    # a hand-written decoding loop: positions and masks come from the cache's length, also when layer 0 lost
    # its attention
    cache = cache_of(pruned(**prompt, use_cache=True))
    assert cache.layers[1].keys.shape[:2] == (2, len(plan.kept_kv_heads(1)))  # only the kept KV heads are cached
    assert cache.get_seq_length() == 7
    mask = torch.cat([prompt["attention_mask"], torch.ones(2, 1, dtype=torch.long)], dim=1)
    step = pruned(input_ids=tokens[:, 7:8], attention_mask=mask, use_cache=True, **with_cache(pruned, cache))
    full = pruned(input_ids=tokens[:, :8], attention_mask=mask)
    assert torch.allclose(step.logits[:, -1], full.logits[:, -1], atol=1e-5)


@pytest.mark.parametrize("family", list(DECODERS))
def test_static_cache_generation_after_pruning_matches_the_dynamic_cache(family):
    """A static cache sizes each layer from the first keys it stores, so pruned layers (and empty ones) fit."""
    plan = random_plan(causal_lm(family), **PLANS["layer 0 loses every head"])
    pruned = prune_backbone(causal_lm(family), plan)
    dynamic = pruned.generate(**LEFT_PADDED, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    for chunking in ({}, {"prefill_chunk_size": 4}):  # a chunked prefill pre-allocates the static layers
        static = pruned.generate(**LEFT_PADDED, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0,
                                 cache_implementation="static", **chunking)
        assert torch.equal(dynamic, static), chunking
    # a cache the caller builds from the (unpruned) config: its layers also size themselves from the first keys
    from transformers import DynamicCache
    given = pruned.generate(**LEFT_PADDED, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0,
                            **with_cache(pruned, DynamicCache(config=pruned.config)))
    assert torch.equal(dynamic, given)


def test_no_attention_finds_the_cache_under_any_keyword_and_refuses_a_missing_one():
    """An upstream rename of the cache keyword must neither skip the cache entry nor go unnoticed."""
    from transformers import DynamicCache

    from lightpeft.core.surgery import find_cache
    hidden = torch.zeros(2, 3, 8)
    cache = DynamicCache()
    assert find_cache((), {"cache": cache}) is cache and find_cache((), {"past_key_values": cache}) is cache
    assert find_cache((), {"kv_store_of_the_future": cache}) is cache  # a new name is still found
    assert find_cache((hidden, cache), {}) is cache  # and a positional one
    NoAttention(layer_idx=0)(hidden, kv_store_of_the_future=cache)
    assert cache.get_seq_length() == 3
    with pytest.raises(LightPeftError, match="KV cache"):
        NoAttention(layer_idx=0)(hidden, use_cache=True)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_adapters_generate_after_pruning_as_the_masked_model(family):
    """Adapters on o / ffn_out (GPT-2: Conv1D c_proj) survive pruning, also on a layer that lost its attention."""
    plan = random_plan(causal_lm(family), **PLANS["layer 0 loses every head"])
    pruned = adapters_everywhere(prune_backbone(causal_lm(family), plan))  # same adapter weights in both models
    masked = adapters_everywhere(causal_lm(family))
    masks.set_binary(masks.attach_gates(masked, requires_grad=False).gates, plan.heads, plan.ffn)
    block, spec = arch.layer_modules(pruned)[0], arch.get_arch(pruned)
    assert isinstance(block.get_submodule(spec.attention), NoAttention)
    o = block.get_submodule(spec.o)
    assert isinstance(o, AdapterLinear) and arch.features(o.base_layer) == (0, tiny_config(family).hidden_size)

    tokens, scores = greedy(pruned, PROMPT, use_cache=True)
    tokens_masked, scores_masked = greedy(masked, PROMPT, use_cache=True)
    assert torch.equal(tokens, tokens_masked) and torch.allclose(scores, scores_masked, atol=1e-5)


@pytest.mark.parametrize("family", GQA_FAMILIES)
def test_gqa_policies_keep_groups_integral(family):
    config = tiny_config(family)
    group, kv_total = arch.kv_group_size(config), arch.num_kv_heads(config)
    whole = prune_backbone(tiny_model(family), plan := random_plan(tiny_model(family), PlanConfig(head_ratio=0.5)))
    attention = arch.layer_modules(whole)[1].self_attn
    assert attention.num_key_value_groups == group  # whole groups went: groups keep their size
    assert attention.k_proj.out_features == len(plan.kv_heads[1]) * 8 < kv_total * 8
    assert len(plan.heads[1]) == len(plan.kv_heads[1]) * group

    even = prune_backbone(tiny_model(family), plan := random_plan(tiny_model(family),
                                                                  PlanConfig(head_ratio=0.5, gqa_policy="per_group")))
    attention = arch.layer_modules(even)[1].self_attn
    assert attention.k_proj.out_features == kv_total * 8  # k/v untouched
    kept_per_group = len(plan.heads[1]) // kv_total
    assert 0 < kept_per_group < group and attention.num_key_value_groups == kept_per_group
    assert all(sum(h // group == g for h in plan.heads[1]) == kept_per_group for g in range(kv_total))


def test_plan_with_fractional_groups_is_refused():
    plan = random_plan(tiny_model("llama"), PlanConfig(head_ratio=0, ffn_ratio=0))
    plan.heads[1] = [0, 1, 3]  # two query heads of group 0, one of group 1
    plan.kv_heads[1] = [0, 1]
    with pytest.raises(LightPeftError, match="num_key_value_groups"):
        prune_backbone(tiny_model("llama"), plan)


@pytest.mark.parametrize("family", list(DECODERS))
def test_layer_without_heads_keeps_its_output_bias_and_counts_match_the_meta_device(family):
    model = tiny_model(family)
    plan = random_plan(model, PlanConfig(head_ratio=0.5, head_scope="global", ffn_ratio=0.5), kill_heads_layer=0)
    pruned = prune_backbone(tiny_model(family), plan)
    block, spec = arch.layer_modules(pruned)[0], arch.get_arch(pruned)
    assert isinstance(block.get_submodule(spec.attention), NoAttention)
    assert arch.features(block.get_submodule(spec.o)) == (0, model.config.hidden_size)
    counts = count_plan(plan, model.config)
    assert counts["foundation_params_before"] == sum(p.numel() for p in model.base_model.parameters())
    assert counts["foundation_params_after"] == sum(p.numel() for p in pruned.base_model.parameters())


def test_gpt2_lora_on_conv1d_is_told_fan_in_fan_out():
    model = tiny_model("gpt2")
    targets = arch.linear_names(model, ["q", "v", "o"])
    assert [n.rsplit(".", 2)[-2:] for n in targets[:2]] == [["attn", "c_attn"], ["attn", "c_proj"]]  # q, v fused
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft_model = wrap_with_lora(model, targets, r=2, alpha=4.0, dropout=0.0)
    assert peft_model.peft_config["default"].fan_in_fan_out
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]
    assert set(arch.linear_roles(model, ["q", "k", "v"]).values()) == {(0, "qkv"), (1, "qkv")}


@pytest.mark.parametrize("family, peft", [*((f, "lora") for f in [*DECODERS, "roberta", "xlm-roberta"]),
                                          ("gpt2", "adapter"), ("llama", "adapter")])
def test_run_and_load_pruned_round_trip(family, peft, family_runs):
    """estimate -> plan -> prune -> train on a saved tiny model (decoders, and the RoBERTa encoders beside the BERT
    runs of test_runs.py), then rebuild it from the base checkpoint."""
    model_dir, run_dir, result = family_runs(family, peft)
    plan = result.plan
    assert plan.peft == peft and plan.counts["foundation_pruned_fraction"] > 0
    assert plan.num_kv_heads == arch.num_kv_heads(tiny_config(family))
    batch = decoder_batch()
    loaded = load_pruned(str(model_dir), run_dir)
    assert set(peft_units(loaded)) == set(plan.peft_modules)
    assert torch.allclose(loaded(**batch).logits, result.model(**batch).logits, atol=1e-6)
