"""Structure discovery: it reproduces every hand-written table entry, and the families it covers prune soundly
(masked == physically pruned with LoRA everywhere, all-ones gates change nothing, rebuild from the saved plan and
weights, generation with the KV cache); what it refuses, it refuses in one line naming the reason or module."""

import copy
import dataclasses

import pytest
import torch
from families import DISCOVERED, DISCOVERED_DECODERS, discovered_config, discovered_model
from safetensors.torch import load_file, save_file
from transformers import AlbertConfig, AutoModelForSequenceClassification, FalconConfig, MixtralConfig

from lightpeft import LightPeftError, PlanConfig
from lightpeft.core import arch, discovery
from lightpeft.core.build import build_model
from lightpeft.core.discovery_check import verified
from lightpeft.core.peft_kinds import lora_layers
from lightpeft.core.peft_modules import export_state
from lightpeft.core.surgery import prune_backbone, slice_peft_state
from lightpeft.methods.light_peft import masks

from conftest import DECODERS, tiny_batch, tiny_config
from helpers import as_base, lora_everywhere, random_plan

# a tiny config for every model type of the table (a new table entry without one fails the coverage test)
TABLE_CONFIGS = {**{f: (lambda f=f: tiny_config(f)) for f in ["bert", "roberta", "xlm-roberta", *DECODERS]},
                 "electra": lambda: discovered_config("electra")}
CASES = {
    "paper defaults": dict(cfg=PlanConfig()),
    "layer loses every head": dict(cfg=PlanConfig(head_ratio=0.5, head_scope="global"), kill_heads_layer=0),
    "layer loses every FFN neuron": dict(cfg=PlanConfig(ffn_ratio=0.5), kill_ffn_layer=1),
    "GQA per group": dict(cfg=PlanConfig(head_ratio=0.5, gqa_policy="per_group")),
}


def test_every_table_entry_is_checked_against_discovery():
    assert set(TABLE_CONFIGS) == set(arch.ARCHITECTURES)


@pytest.mark.parametrize("family", TABLE_CONFIGS)
def test_discovery_reproduces_the_table_entry(family):
    config = TABLE_CONFIGS[family]()
    table = arch.ARCHITECTURES[config.model_type]
    found = discovery.discover(config)
    assert dataclasses.replace(found, family=table.family) == table


def test_discovery_covers_a_family_the_table_does_not_know():
    assert "gpt_neox" not in arch.ARCHITECTURES
    spec = arch.get_arch(discovered_config("gpt_neox"))
    assert (spec.q, spec.o, spec.qkv_layout) == ("attention.query_key_value", "attention.dense", "interleaved")
    spec = arch.get_arch(discovered_config("phi3"))
    assert (spec.qkv_layout, spec.ffn_layout, spec.ffn_in) == ("concat", "concat", ("mlp.gate_up_proj",))
    assert arch.get_arch(discovered_config("falcon-40b")).qkv_layout == "grouped"
    assert arch.get_arch(discovered_config("deberta-v2")).head_extra == ("attention.self.pos_key_proj",
                                                                         "attention.self.pos_query_proj")
    assert arch.get_arch(discovered_config("modernbert")).encoder and not arch.get_arch(discovered_config("gemma")).encoder


def _case(name, case) -> dict:
    """The case's plan options; one KV head (Falcon's multi-query) only prunes query heads within the group."""
    kwargs = dict(CASES[case])
    if arch.num_kv_heads(discovered_config(name)) == 1:
        kwargs["cfg"] = dataclasses.replace(kwargs["cfg"], gqa_policy="per_group")
    return kwargs


def _masked_and_pruned(name, case, r=4):
    """Masked twin (gates 0/1, LoRA everywhere) and the physically pruned model built from the plan."""
    plan = random_plan(discovered_model(name), **_case(name, case))
    spec = arch.get_arch(discovered_config(name))
    model = lora_everywhere(discovered_model(name), r=r)
    masks.set_binary(masks.attach_gates(model.get_base_model()).gates, plan.heads, plan.ffn)
    state = export_state(model)
    with torch.no_grad():
        for layer_name, layer in lora_layers(model).items():
            keep = torch.zeros(r, dtype=torch.bool)
            if layer_name in plan.peft_modules:
                keep[plan.kept_units(layer_name)] = True
            layer.lora_A["default"].weight[~keep] = 0.0
            layer.lora_B["default"].weight[:, ~keep] = 0.0
    sliced = slice_peft_state(state, plan, spec)
    pruned = build_model(as_base(discovered_model(name)), plan, sliced).eval()
    return plan, model, pruned, sliced


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", DISCOVERED)
def test_discovered_family_masked_equals_pruned(name, case):
    config = discovered_config(name)
    if case == "GQA per group" and arch.kv_group_size(config) == 1:
        pytest.skip("one KV head per query head")
    plan, masked, pruned, _ = _masked_and_pruned(name, case)
    batch = tiny_batch()
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in masked.parameters())
    assert torch.allclose(pruned(**batch).logits, masked(**batch).logits, atol=1e-5)


@pytest.mark.parametrize("name", DISCOVERED)
def test_discovered_family_all_ones_gates_change_nothing_and_rebuild_from_saved_weights(name, tmp_path):
    batch = tiny_batch()
    reference = discovered_model(name)
    expected = reference(**batch).logits
    masks.attach_gates(reference, requires_grad=False)
    assert torch.equal(reference(**batch).logits, expected)

    plan, _, pruned, sliced = _masked_and_pruned(name, "paper defaults")
    save_file(export_state(pruned), tmp_path / "peft.safetensors")
    rebuilt = build_model(as_base(discovered_model(name)), plan, load_file(tmp_path / "peft.safetensors")).eval()
    assert torch.allclose(rebuilt(**batch).logits, pruned(**batch).logits, atol=1e-6)


PROMPT = {"input_ids": torch.tensor([[5, 9, 17, 33, 8, 41, 12], [0, 0, 60, 2, 91, 14, 30]]),
          "attention_mask": torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])}


def _greedy(model, use_cache):
    out = model.generate(**PROMPT, max_new_tokens=5, min_new_tokens=5, do_sample=False, use_cache=use_cache,
                         output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    return out.sequences, torch.stack(out.scores)


@pytest.mark.parametrize("case", ["paper defaults", "layer loses every head"])
@pytest.mark.parametrize("name", DISCOVERED_DECODERS)
def test_discovered_decoder_generates_with_kv_cache_as_the_masked_model(name, case):
    plan = random_plan(discovered_model(name, causal=True), **_case(name, case))
    pruned = prune_backbone(discovered_model(name, causal=True), plan)
    masked = discovered_model(name, causal=True)
    masks.set_binary(masks.attach_gates(masked, requires_grad=False).gates, plan.heads, plan.ffn)
    tokens, scores = _greedy(pruned, use_cache=True)
    tokens_no_cache, scores_no_cache = _greedy(pruned, use_cache=False)
    tokens_masked, scores_masked = _greedy(masked, use_cache=True)
    assert torch.equal(tokens, tokens_no_cache) and torch.equal(tokens, tokens_masked)
    assert torch.allclose(scores, scores_no_cache, atol=1e-4) and torch.allclose(scores, scores_masked, atol=1e-4)


def _one_line_error(config) -> str:
    with pytest.raises(LightPeftError) as excinfo:
        arch.get_arch(config)
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_shared_blocks_alibi_and_experts_are_refused_with_the_reason():
    albert = AlbertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=37, embedding_size=16)
    assert "shares one block's weights across all layers" in _one_line_error(albert)
    alibi = FalconConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, alibi=True)
    assert "ALiBi" in _one_line_error(alibi)
    moe = MixtralConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=4, intermediate_size=37)
    assert "mixture-of-experts" in _one_line_error(moe)


def test_a_layout_that_does_not_fit_is_refused_naming_the_module():
    config = discovered_config("gpt_neox")
    probe = discovery.probe_model(config)
    wrong = dataclasses.replace(arch.get_arch(config), qkv_layout="concat")
    with pytest.raises(LightPeftError, match=r"did not fit: layers\.0\.attention\.query_key_value") as excinfo:
        verified([wrong], probe, config)
    assert "\n" not in str(excinfo.value)
    bad_ffn = dataclasses.replace(arch.get_arch(discovered_config("phi3")), ffn_layout="separate")
    with pytest.raises(LightPeftError, match=r"mlp\.gate_up_proj -> mlp\.down_proj"):
        verified([bad_ffn], discovery.probe_model(discovered_config("phi3")), discovered_config("phi3"))


@pytest.mark.parametrize("name", ["phi3", "deberta-v2"])
def test_discovered_family_runs_end_to_end_and_reloads(name, tmp_path):
    """estimate -> plan -> prune -> train on a saved tiny checkpoint of a discovered family, then `load_pruned`."""
    from transformers import BertTokenizerFast

    from lightpeft import (
        DataConfig,
        EstimateConfig,
        LightPeftTrainingArguments,
        ModelConfig,
        PeftSettings,
        load_pruned,
    )
    from lightpeft import run as run_pipeline

    from conftest import WORDS, write_tiny_csv

    base = tmp_path / "base"
    base.mkdir()
    (base / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    inputs = ["input_ids", "attention_mask"]
    BertTokenizerFast(vocab=str(base / "vocab.txt"), model_input_names=inputs).save_pretrained(base)
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(discovered_config(name, num_labels=2)).save_pretrained(base)
    data = write_tiny_csv(tmp_path / "tiny.csv", rows=40)
    args = LightPeftTrainingArguments(output_dir=str(tmp_path / "run"), num_train_epochs=1, learning_rate=5e-3,
                                      per_device_train_batch_size=12, disable_tqdm=True, seed=0, use_cpu=True)
    result = run_pipeline(ModelConfig(str(base)), DataConfig(task=str(data), max_seq_length=16), PeftSettings(),
                          EstimateConfig(estimate_steps=2), PlanConfig(head_ratio=0.5), args)
    assert result.plan.model_type == discovered_config(name).model_type
    assert result.plan.counts["foundation_pruned_fraction"] > 0
    batch = tiny_batch()
    loaded = load_pruned(str(base), tmp_path / "run")
    assert torch.allclose(loaded(**batch).logits, result.model(**batch).logits, atol=1e-6)


def test_a_pruned_layer_reads_its_own_head_counts_and_the_shared_attention_implementation():
    """Phi-3 reads `config.num_attention_heads` in forward: the pruned layer's view has its own count, while a later
    attention-implementation switch on the model still reaches it."""
    model = discovered_model("phi3", causal=True)
    plan = random_plan(model, PlanConfig(head_ratio=0.5, gqa_policy="per_group"))
    pruned = prune_backbone(model, plan)
    attention = arch.layer_modules(pruned)[1].self_attn
    assert attention.config.num_attention_heads == len(plan.heads[1]) < pruned.config.num_attention_heads
    pruned.set_attn_implementation("eager")
    assert attention.config._attn_implementation == "eager"
    copied = copy.deepcopy(pruned)
    assert arch.layer_modules(copied)[1].self_attn.config.num_attention_heads == len(plan.heads[1])


def test_causal_lm_is_refused_on_a_discovered_encoder():
    from lightpeft.core.heads import check_kind

    with pytest.raises(LightPeftError, match="is an encoder"):
        check_kind(discovered_config("modernbert"), "causal_lm")
    check_kind(discovered_config("gpt_neox"), "causal_lm")


@pytest.mark.parametrize("name", ["deberta-v2", "distilbert", "phi3", "gpt_neox", "falcon"])
def test_discovered_family_with_adapters_pruned_equals_masked(name):
    """Bottleneck adapters sit on o / ffn_out outputs (hidden size), also where the layer lost its attention."""
    from helpers import adapters_everywhere

    plan = random_plan(discovered_model(name), **_case(name, "layer loses every head"))
    pruned = adapters_everywhere(prune_backbone(discovered_model(name), plan))
    masked = adapters_everywhere(discovered_model(name))
    masks.set_binary(masks.attach_gates(masked, requires_grad=False).gates, plan.heads, plan.ffn)
    batch = tiny_batch()
    assert torch.allclose(pruned(**batch).logits, masked(**batch).logits, atol=1e-5)
