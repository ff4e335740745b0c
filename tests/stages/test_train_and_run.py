"""The stages end to end on a tiny saved checkpoint and a CSV file (seconds, CPU)."""

import json

import pytest
import torch

from lightpeft import (
    DataConfig,
    EstimateConfig,
    LightPeftError,
    LightPeftTrainingArguments,
    ModelConfig,
    PeftSettings,
    PlanConfig,
    RunOptions,
    load_pruned,
    make_plan,
    run,
    train,
)
from lightpeft.core.models import load_base
from lightpeft.data import load_task
from lightpeft.methods.light_peft.estimate import Estimate
from lightpeft.methods.light_peft.planning import initial_state
from lightpeft.stages.prepare import load_task_base

from conftest import save_tiny_model_dir


def args_for(out, **kw):
    defaults = dict(output_dir=str(out), num_train_epochs=2, per_device_train_batch_size=8, learning_rate=5e-3,
                    logging_steps=5, disable_tqdm=True, seed=0, use_cpu=True)
    return LightPeftTrainingArguments(**{**defaults, **kw})


def configs(model_dir, csv, **plan):
    return (ModelConfig(model_name_or_path=str(model_dir)), DataConfig(task=str(csv), max_seq_length=16),
            PeftSettings(), EstimateConfig(estimate_steps=4), PlanConfig(**plan))


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tiny_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg = configs(tiny_model_dir, tiny_csv)
    result = run(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args_for(out), RunOptions(compare_vanilla=True))
    return out, result


def test_run_writes_every_artifact(finished_run):
    out, result = finished_run
    for rel in ["run.json", "plan.json", "peft_weights.safetensors", "summary.md", "estimate/estimate.json",
                "estimate/masks.safetensors", "estimate/importance.safetensors", "estimate/masks.png",
                "vanilla/run.json"]:
        assert (out / rel).is_file(), rel
    summary = json.loads((out / "run.json").read_text())
    assert summary["method"] == "light-peft" and summary["plan_counts"]["foundation_pruned_fraction"] > 0
    assert json.loads((out / "vanilla/run.json").read_text())["method"] == "vanilla"
    assert "vanilla LoRA" in result.summary["summary_table"]
    assert not list(out.parent.glob(".run.*"))  # no staging leftovers


def test_load_pruned_gives_the_logits_of_the_trained_model(finished_run, tiny_model_dir):
    out, result = finished_run
    batch = {"input_ids": torch.tensor([[2, 7, 9, 11, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    expected = result.model(**batch).logits
    loaded = load_pruned(str(tiny_model_dir), out)
    assert torch.allclose(loaded(**batch).logits, expected, atol=1e-6)


def test_new_plan_from_estimate_and_train_with_it(finished_run, tiny_model_dir, tiny_csv, tmp_path):
    out, _ = finished_run
    plan = make_plan(out / "estimate", PlanConfig(head_ratio=0.5, ffn_ratio=0.5))
    assert all(len(h) == 2 for h in plan.heads)
    plan.save(tmp_path / "plan.json")
    model_cfg, data_cfg, peft_cfg, *_ = configs(tiny_model_dir, tiny_csv)
    result = train(model_cfg, data_cfg, peft_cfg, args_for(tmp_path / "t"), plan=tmp_path / "plan.json",
                   init_state=initial_state(Estimate.load(out / "estimate"), plan))
    assert result.summary["foundation_params"] < json.loads((out / "vanilla/run.json").read_text())[
        "foundation_params"]


def test_zero_ratios_prune_nothing(finished_run):
    out, _ = finished_run
    plan = make_plan(out / "estimate", PlanConfig(head_ratio=0, ffn_ratio=0, module_ratio=0, rank_ratio=0))
    assert plan.counts["foundation_params_after"] == plan.counts["foundation_params_before"]
    assert len(plan.peft_modules) == 12 and plan.counts["peft_params_after"] == plan.counts["peft_params_estimate"]


def test_finished_run_directory_is_not_overwritten(finished_run, tiny_model_dir, tiny_csv):
    out, _ = finished_run
    model_cfg, data_cfg, peft_cfg, *_ = configs(tiny_model_dir, tiny_csv)
    with pytest.raises(LightPeftError, match="overwrite_output_dir"):
        train(model_cfg, data_cfg, peft_cfg, args_for(out))


def test_failure_leaves_no_partial_output_and_keeps_the_finished_estimate(tiny_model_dir, tiny_csv, tmp_path,
                                                                           monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash during training")

    monkeypatch.setattr("lightpeft.stages.run.train_into", boom)
    model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg = configs(tiny_model_dir, tiny_csv)
    with pytest.raises(RuntimeError):
        run(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args_for(tmp_path / "out"))
    assert [p.name for p in tmp_path.iterdir()] == [".out.partial"]  # no output; the staging area for a rerun
    assert sorted(p.name for p in (tmp_path / ".out.partial").iterdir()) == ["estimate", "plan.json", "resume.json"]


def test_corrupt_estimate_is_reported(finished_run, tmp_path):
    import shutil

    out, _ = finished_run
    broken = tmp_path / "estimate"
    shutil.copytree(out / "estimate", broken)
    data = (broken / "masks.safetensors").read_bytes()
    (broken / "masks.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(LightPeftError, match="corrupt") as err:
        make_plan(broken)
    assert "\n" not in str(err.value)
    (broken / "estimate.json").write_text("{not json")
    with pytest.raises(LightPeftError, match="corrupt"):
        make_plan(broken)
    (broken / "estimate.json").write_text('{"schema_version": 99}')
    with pytest.raises(LightPeftError, match="schema version 99.*re-run `lightpeft estimate`"):
        make_plan(broken)


def test_plan_for_another_base_is_refused_at_load(finished_run, tmp_path):
    out, _ = finished_run
    other = save_tiny_model_dir(tmp_path / "other", seed=7)
    with pytest.raises(LightPeftError, match="base checkpoint"):
        load_pruned(str(other), out)


def test_unsupported_architecture_names_the_supported_ones(tmp_path, tiny_csv):
    from transformers import T5Config

    T5Config(num_layers=1, d_model=16, num_heads=2).save_pretrained(tmp_path / "t5")
    with pytest.raises(LightPeftError, match="supported: .*bert.*gpt2.*llama"):
        load_base(str(tmp_path / "t5"), 2)
    with pytest.raises(LightPeftError, match="does not exist"):
        load_base(str(tmp_path / "nowhere"), 2)


def test_checkpoint_head_that_does_not_fit_the_task_is_refused(tmp_path, tiny_csv):
    from conftest import tiny_model

    head3 = tiny_model(num_labels=3)
    head3.config.architectures = ["BertForSequenceClassification"]
    head3.save_pretrained(tmp_path / "head3")
    with pytest.raises(LightPeftError, match="3 outputs but task"):
        load_task_base(ModelConfig(str(tmp_path / "head3")), load_task(DataConfig(task=str(tiny_csv))))


def test_trained_model_carries_no_estimation_machinery(finished_run, tiny_model_dir):
    """The pruned training model pays for nothing pruned: no gates, no hooks, contiguous sliced weights."""
    out, result = finished_run
    model = result.model  # the very model the training stage trained
    assert not any("lightpeft_gates" in n for n, _ in model.named_parameters())
    for name, module in model.named_modules():
        assert not module._forward_pre_hooks and not module._forward_hooks, name
    assert all(p.is_contiguous() for p in model.parameters())


def test_seed_decides_the_fresh_head_and_lora_of_a_run(base_model_dir, tiny_csv, tmp_path):
    """The Trainer seeds only after the model exists; the stages seed first, so `--seed` varies the initial head and
    LoRA A, and the same seed repeats a run exactly, even after other code drew random numbers."""
    model_cfg, data_cfg, peft_cfg, *_ = configs(base_model_dir, tiny_csv)

    def trained_state(name, seed):
        torch.rand(7)  # whatever ran before in the process must not matter
        result = train(model_cfg, data_cfg, peft_cfg, args_for(tmp_path / name, seed=seed, max_steps=1))
        return {k: v.detach().clone() for k, v in result.model.named_parameters() if v.requires_grad}

    first, again, other = trained_state("a", 1), trained_state("b", 1), trained_state("c", 2)
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not any(torch.equal(first[k], other[k]) for k in first if "lora_B" not in k)


def test_remaining_schedule_trains_the_steps_estimation_left(finished_run, tiny_model_dir, tiny_csv, tmp_path):
    """`--train_schedule remaining`: estimation + training take the run's step count; `full` trains all of it."""
    model_cfg, data_cfg, peft_cfg, _, plan_cfg = configs(tiny_model_dir, tiny_csv)
    est_cfg = EstimateConfig(estimate_steps=4, train_schedule="remaining")
    result = run(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args_for(tmp_path / "out"))
    full = finished_run[1].summary["optimizer_steps"]
    assert result.summary["optimizer_steps"] == full - 4 > 0
    with pytest.raises(LightPeftError, match="--train_schedule"):
        EstimateConfig(train_schedule="half")
