"""Light-PEFT inside a user's own Trainer script: `LightPeft.prune` stands in for `get_peft_model` and gives the
plan `lightpeft run` gives for the same seed, data and collator; `save` exports what the user's Trainer trained."""

import json
import logging

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
from lightpeft.core.training import planned_steps
from lightpeft.integrations import LightPeft
from lightpeft.methods.light_peft.recipes import recipe_configs
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


@pytest.fixture(scope="module")
def accuracy_setup(base_model_dir, tiny_csv, tmp_path_factory):
    """The accuracy recipe (held-out rows, candidate ratios, min_estimate_steps, remaining schedule) both ways."""
    root = tmp_path_factory.mktemp("integration-accuracy")
    est_cfg, plan_cfg = recipe_configs("accuracy", uniform=True)
    reference = run(ModelConfig(str(base_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                    PeftSettings(lora_r=8, lora_alpha=16.0, lora_dropout=0.05), est_cfg, plan_cfg,
                    LightPeftTrainingArguments(output_dir=str(root / "run"), **TRAINING))
    prepared = prepare(ModelConfig(str(base_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16))
    args = TrainingArguments(output_dir=str(root / "user"), **TRAINING)
    light = LightPeft(LORA, recipe="accuracy", uniform=True)
    model = light.prune(AutoModelForSequenceClassification.from_pretrained(base_model_dir, num_labels=2), args,
                        prepared.train_ds, data_collator=prepared.trainer_parts().collator,
                        processing_class=prepared.tokenizer)
    trainer = Trainer(model=model, args=light.training_args(args), train_dataset=prepared.train_ds,
                      data_collator=prepared.trainer_parts().collator, processing_class=prepared.tokenizer)
    trainer.train()
    return reference, light, trainer, root, len(prepared.train_ds)


def test_the_accuracy_recipe_scores_the_same_candidates_and_chooses_the_same_plan(accuracy_setup):
    reference, light, _, root, rows = accuracy_setup
    ours, theirs = light.plan.to_json(), reference.plan.to_json()
    for key in ("heads", "ffn", "kv_heads", "peft_modules", "peft_configs"):
        assert ours[key] == theirs[key], key
    assert ours["ratios"]["recipe"] == "accuracy" and ours["ratios"] == theirs["ratios"]
    choice = ours["ratios"]["accuracy_choice"]  # on a random model the guard may keep every unit: still the same
    assert choice == theirs["ratios"]["accuracy_choice"] and "examples" in choice
    estimated = Estimate.load(root / "run" / "estimate")
    search = light.estimate.meta["plan_candidates"]
    assert search["examples"] == estimated.meta["plan_candidates"]["examples"] == rows // 4
    # the same rows give the same scores (losses to float rounding: eval batches run through other kernels' paths)
    assert len(search["candidates"]) == len(estimated.meta["plan_candidates"]["candidates"]) == 16
    for ours_scored, theirs_scored in zip(search["candidates"], estimated.meta["plan_candidates"]["candidates"]):
        assert ours_scored == pytest.approx(theirs_scored, rel=1e-5)
    assert search["reference"] == pytest.approx(estimated.meta["plan_candidates"]["reference"], rel=1e-5)
    # min_estimate_steps (60) is capped at half the run, as in `lightpeft run`
    run_steps = planned_steps(TrainingArguments(output_dir="unused", **TRAINING), rows)
    assert light.estimate.meta["steps"] == estimated.meta["steps"] == run_steps // 2


def test_the_remaining_schedule_gives_the_user_trainer_the_steps_lightpeft_run_trains(accuracy_setup, caplog):
    reference, light, trainer, root, rows = accuracy_setup
    run_steps = planned_steps(TrainingArguments(output_dir="unused", **TRAINING), rows)
    assert trainer.state.global_step == reference.summary["optimizer_steps"] == run_steps - run_steps // 2
    args = TrainingArguments(output_dir="unused", max_steps=40, use_cpu=True)
    assert light.training_args(args).max_steps == 40 - light.estimate.meta["steps"] and args.max_steps == 40
    paper = LightPeft(LORA)
    paper.estimate, paper.train_rows = light.estimate, 10
    assert paper.training_args(args) is args  # the paper recipe trains the whole schedule again
    with caplog.at_level(logging.WARNING, logger="lightpeft"):
        light.save(trainer, root / "export")
        assert "Trainer ran" not in caplog.text
        light.train_steps += 1  # as if the user's Trainer had kept the whole schedule
        light.save(trainer, root / "export", overwrite=True)
        assert "Trainer ran" in caplog.text


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
    with pytest.raises(LightPeftError, match="not both"):
        LightPeft(LORA, plan=PlanConfig(), recipe="accuracy")
    with pytest.raises(LightPeftError, match="--recipe"):
        LightPeft(LORA, recipe="fast")
    with pytest.raises(LightPeftError, match="unknown"):
        LightPeft(LORA, head_ratios=0.2)
    with pytest.raises(LightPeftError, match="before training_args"):
        light.training_args(TrainingArguments(output_dir="x", use_cpu=True))
    model = AutoModelForSequenceClassification.from_pretrained(base_model_dir, num_labels=2)
    with pytest.raises(LightPeftError, match="does not fit"):
        light.prune(model, TrainingArguments(output_dir="x", use_cpu=True), [], metric="perplexity")
    with pytest.raises(LightPeftError, match="datasets.Dataset"):
        LightPeft(LORA, recipe="accuracy").prune(model, TrainingArguments(output_dir="x", use_cpu=True), [{}] * 64)
