"""examples/sft_trainer_integration.py on a tiny random-init Llama: the script's trainer trains a smaller model from
the estimation's weights, for the steps estimation left, and its export reloads with plain transformers to the same
logits (skipped where trl is not installed)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from conftest import WORDS, example_batch, save_tiny_model_dir

trl = pytest.importorskip("trl")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sft_trainer_integration.py"


def load_example():
    spec = importlib.util.spec_from_file_location("sft_trainer_integration", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pairs(rows: int) -> Dataset:
    """Prompt / completion rows on the tiny vocabulary: the answer is w1 iff w5 is in the prompt, else w2."""
    prompts = [" ".join(WORDS[3 + (i * 7 + j) % (len(WORDS) - 3)] for j in range(6)) for i in range(rows)]
    return Dataset.from_dict({"prompt": prompts, "completion": [" w1" if "w5 " in p + " " else " w2" for p in prompts]})


def test_the_sft_example_trains_a_smaller_model_and_exports_a_standard_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    example = load_example()
    base = save_tiny_model_dir(tmp_path / "base", "llama", headless=True)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.eos_token = tokenizer.pad_token = tokenizer.sep_token  # the tiny word-level tokenizer has no EOS
    args = trl.SFTConfig(output_dir=str(tmp_path / "sft"), num_train_epochs=1, per_device_train_batch_size=8,
                         learning_rate=5e-3, use_cpu=True, report_to="none", disable_tqdm=True, seed=0,
                         max_length=16, logging_steps=1, save_strategy="no", bf16=False)  # fp32: exact logits
    # any candidate is within the drop: the cheapest (most pruned) plan is chosen, so the model must shrink
    trainer, light = example.build_trainer(str(base), args, pairs(64), tokenizer=tokenizer, max_metric_drop=1e6)
    choice = light.plan.ratios["accuracy_choice"]
    assert choice["examples"] == 16 and not choice["uninformative"]  # a quarter of the rows held out, scored
    counts = light.plan.counts
    assert counts["foundation_params_after"] < counts["foundation_params_before"]
    full = AutoModelForCausalLM.from_pretrained(base)
    assert sum(p.numel() for p in trainer.model.parameters()) < sum(p.numel() for p in full.parameters())

    trained = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    assert any(p.abs().sum() > 0 for n, p in trained.items() if "lora_B" in n)  # continues from the estimation
    trainer.train()
    planned = math.ceil(64 / 8)  # the remaining schedule: estimation + training take the run's steps
    assert trainer.state.global_step == planned - light.estimate.meta["steps"] > 0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(math.isfinite(loss) for loss in losses)
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(after[n], before) for n, before in trained.items())

    out = light.save(trainer, tmp_path / "export")
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    assert plain.config.intermediate_size < full.config.intermediate_size
    batch = example_batch()
    with torch.no_grad():
        assert torch.allclose(plain(**batch).logits, trainer.model.eval()(**batch).logits, atol=1e-5)
