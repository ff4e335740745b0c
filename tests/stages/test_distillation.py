"""`--distill_weight` in the stages: `run` distills from its estimation model, `train` from an estimate directory;
weight 0 trains exactly as without the option; the settings are recorded; the baseline never distills."""

import json

import torch

from lightpeft import (
    DataConfig,
    EstimateConfig,
    LightPeftTrainingArguments,
    ModelConfig,
    PeftSettings,
    PlanConfig,
    RunOptions,
    run,
)
from lightpeft.cli import main


def args_for(out, **kw):
    defaults = dict(output_dir=str(out), per_device_train_batch_size=8, learning_rate=5e-3, logging_steps=5,
                    disable_tqdm=True, seed=0, use_cpu=True)
    return LightPeftTrainingArguments(**{**defaults, **kw})


def configs(model_dir, csv):
    return (ModelConfig(model_name_or_path=str(model_dir)), DataConfig(task=str(csv), max_seq_length=16),
            PeftSettings(), EstimateConfig(estimate_steps=3), PlanConfig())


def trained_weights(result) -> dict:
    return {k: v.detach().clone() for k, v in result.model.named_parameters() if v.requires_grad}


def test_weight_zero_trains_exactly_as_before_and_a_weight_changes_training(tiny_model_dir, tiny_csv, tmp_path):
    cfgs = configs(tiny_model_dir, tiny_csv)
    before = run(*cfgs, args_for(tmp_path / "plain", max_steps=6))
    zero = run(*cfgs, args_for(tmp_path / "zero", max_steps=6, distill_weight=0.0))
    half = run(*cfgs, args_for(tmp_path / "half", max_steps=6, distill_weight=0.5, distill_temperature=3.0),
               RunOptions(compare_vanilla=True))
    plain, zeroed, distilled = trained_weights(before), trained_weights(zero), trained_weights(half)
    assert plain.keys() == zeroed.keys() == distilled.keys()
    assert all(torch.equal(plain[k], zeroed[k]) for k in plain)
    assert any(not torch.equal(plain[k], distilled[k]) for k in plain)
    assert before.summary["distillation"] is None
    record = half.summary["distillation"]
    assert record["weight"] == 0.5 and record["temperature"] == 3.0 and record["teacher_params"] > 0
    assert record["teacher_params"] > half.summary["foundation_params"]  # the unpruned model, PEFT and gates
    run_config = json.loads((tmp_path / "half" / "run_config.json").read_text())["training"]
    assert run_config["distill_weight"] == 0.5 and run_config["distill_temperature"] == 3.0
    vanilla = json.loads((tmp_path / "half" / "vanilla" / "run.json").read_text())
    assert vanilla["distillation"] is None
    assert json.loads((tmp_path / "half" / "vanilla" / "run_config.json").read_text())["training"][
        "distill_weight"] == 0.0


def test_train_distills_from_an_estimate_directory(tiny_model_dir, tiny_csv, tmp_path, capsys):
    common = ["--model_name_or_path", str(tiny_model_dir), "--task", str(tiny_csv), "--max_seq_length", "16",
              "--use_cpu", "true", "--disable_tqdm", "true", "--per_device_train_batch_size", "8"]
    assert main(["estimate", *common, "--output_dir", str(tmp_path / "est"), "--estimate_steps", "3"]) == 0
    assert main(["plan", "--estimate_dir", str(tmp_path / "est"), "--plan_path", str(tmp_path / "plan.json")]) == 0
    assert main(["train", *common, "--output_dir", str(tmp_path / "run"), "--max_steps", "3",
                 "--plan_path", str(tmp_path / "plan.json"), "--estimate_dir", str(tmp_path / "est"),
                 "--distill_weight", "0.5"]) == 0
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["distillation"]["weight"] == 0.5 and summary["distillation"]["temperature"] == 2.0
