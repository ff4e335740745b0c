"""TRL's SFTTrainer with Light-PEFT: the SFTTrainer prepares the data and collator, LightPeft estimates and prunes on
them, a second SFTTrainer trains the pruned model (skipped where trl is not installed)."""

import pytest
from datasets import Dataset
from peft import LoraConfig

from lightpeft import EstimateConfig, PlanConfig
from lightpeft.integrations import LightPeft

from conftest import WORDS, save_tiny_model_dir

trl = pytest.importorskip("trl")


def test_sft_trainer_trains_a_uniformly_pruned_decoder(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = save_tiny_model_dir(tmp_path / "base", "llama", headless=True)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.eos_token = tokenizer.pad_token = tokenizer.sep_token  # the tiny word-level tokenizer has no EOS
    texts = [" ".join(WORDS[2 + (i + j) % (len(WORDS) - 2)] for j in range(8)) for i in range(32)]
    args = trl.SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=3, per_device_train_batch_size=8,
                         learning_rate=5e-3, use_cpu=True, report_to="none", disable_tqdm=True, seed=0,
                         max_length=16)
    model = AutoModelForCausalLM.from_pretrained(base)
    # the user's SFTTrainer line, as it was: it tokenizes the data and makes the collator
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                             processing_class=tokenizer)
    light = LightPeft(LoraConfig(r=4, lora_alpha=8), estimate=EstimateConfig(estimate_steps=2),
                      plan=PlanConfig(head_ratio=0.5, uniform=True))
    pruned = light.prune(trainer.model, args, trainer.train_dataset, data_collator=trainer.data_collator,
                         processing_class=tokenizer)
    trainer = trl.SFTTrainer(model=pruned, args=args, train_dataset=trainer.train_dataset, processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 3
    assert {len(h) for h in light.plan.heads} == {3} and len({len(f) for f in light.plan.ffn}) == 1
    out = light.save(trainer, tmp_path / "export")
    plain = AutoModelForCausalLM.from_pretrained(out)
    assert plain.config.num_attention_heads == 3 and plain.config.num_key_value_heads == 1
