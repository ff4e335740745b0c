"""Light-PEFT inside a user's own Trainer script: `LightPeft.prune` stands in for `get_peft_model` and gives the
plan `lightpeft run` gives for the same seed, data and collator; `save` exports what the user's Trainer trained."""

import json

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from lightpeft import (
    DataConfig,
    Estimate,
    EstimateConfig,
    LightPeftError,
    LightPeftTrainingArguments,
    ModelConfig,
    PeftSettings,
    PlanConfig,
    run,
)
from lightpeft.integrations import LightPeft
from lightpeft.stages.prepare import prepare

from conftest import example_batch

TRAINING = dict(num_train_epochs=1, per_device_train_batch_size=8, learning_rate=5e-3, logging_steps=5, seed=0,
                use_cpu=True, disable_tqdm=True)
LORA = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["query", "value"])


@pytest.fixture(scope="module")
def setup(base_model_dir, tiny_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("integration")
    plan_cfg = PlanConfig(uniform=True)
    reference = run(ModelConfig(str(base_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                    PeftSettings(lora_r=8, lora_alpha=16.0, lora_dropout=0.05), EstimateConfig(estimate_steps=4),
                    plan_cfg, LightPeftTrainingArguments(output_dir=str(root / "run"), **TRAINING))
    # the user's script: their data and collator (here the same features lightpeft run used), their Trainer
    prepared = prepare(ModelConfig(str(base_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16))
    args = TrainingArguments(output_dir=str(root / "user"), eval_strategy="epoch", **TRAINING)
    model = AutoModelForSequenceClassification.from_pretrained(base_model_dir, num_labels=2)
    light = LightPeft(LORA, estimate=EstimateConfig(estimate_steps=4), plan=plan_cfg)
    model = light.prune(model, args, prepared.train_ds, data_collator=prepared.trainer_parts().collator,
                        processing_class=prepared.tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=prepared.train_ds, eval_dataset=prepared.eval_ds,
                      data_collator=prepared.trainer_parts().collator, processing_class=prepared.tokenizer,
                      compute_metrics=prepared.trainer_parts().compute_metrics)
    trainer.train()
    return reference, light, trainer, root


def test_the_plan_is_the_one_lightpeft_run_makes(setup):
    reference, light, _, root = setup
    ours, theirs = light.plan.to_json(), reference.plan.to_json()
    for key in ("base_fingerprint", "heads", "ffn", "kv_heads", "peft_modules", "peft_configs"):
        assert ours[key] == theirs[key], key
    estimated = Estimate.load(root / "run" / "estimate")  # the very same gates, not only the same ranking
    assert torch.allclose(light.estimate.ffn_masks, estimated.ffn_masks, atol=1e-6)
    assert torch.allclose(light.estimate.head_masks, estimated.head_masks, atol=1e-6)
    assert len({len(f) for f in ours["ffn"]}) == 1 and len(ours["ffn"][0]) < reference.plan.ffn_size  # uniform


def test_the_user_trainer_trains_the_pruned_model_and_save_writes_a_standard_checkpoint(setup):
    _, light, trainer, root = setup
    assert trainer.state.global_step > 0
    trained = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n or "classifier" in n or "pooler" in n for n in trained)
    out = light.save(trainer, root / "export", task_name="tiny")
    meta = json.loads((out / "export.json").read_text())
    assert meta["format"] == "transformers"
    card = (out / "README.md").read_text()
    assert "dev accuracy" in card and "| FFN width per layer |" in card
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = example_batch()
    with torch.no_grad():
        assert torch.allclose(plain(**batch).logits, trainer.model.eval()(**batch).logits, atol=1e-5)
    assert any("lora_" in n for n, _ in trainer.model.named_parameters())  # save merged a copy, not the model


def test_wrong_inputs_give_one_line_errors(base_model_dir):
    light = LightPeft()
    with pytest.raises(LightPeftError, match="prune"):
        light.save(torch.nn.Linear(2, 2), "nowhere")
    from peft import get_peft_model

    wrapped = get_peft_model(AutoModelForSequenceClassification.from_pretrained(base_model_dir, num_labels=2),
                             LoraConfig(r=2, target_modules=["query"]))
    with pytest.raises(LightPeftError, match="before get_peft_model"):
        light.prune(wrapped, TrainingArguments(output_dir="x", use_cpu=True), [])
    with pytest.raises(LightPeftError, match="LoraConfig"):
        LightPeft(object())
    with pytest.raises(LightPeftError, match="--peft lora"):
        LightPeft(PeftSettings(peft="adapter"), plan=PlanConfig(uniform=True))
