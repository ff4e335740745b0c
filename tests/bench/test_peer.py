"""The peer arm: a plain peft + Trainer script beside the vanilla arm, on the same data and settings."""

import json

import pytest

from lightpeft import LightPeftTrainingArguments
from lightpeft.bench.arm import peer_arguments
from lightpeft.bench.config import BenchConfig
from lightpeft.config import DataConfig, ModelConfig, to_dict
from lightpeft.core.peft_kinds import PeftSettings
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig


def test_peer_arm_runs_and_reports_beside_vanilla(tiny_model_dir, tiny_csv, tmp_path):
    from lightpeft.bench import run_bench

    out = tmp_path / "bench"
    args = LightPeftTrainingArguments(output_dir=str(out), num_train_epochs=2, per_device_train_batch_size=16,
                                      learning_rate=5e-3, seed=0, use_cpu=True)
    lines = []
    bench = run_bench(ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                      PeftSettings(), EstimateConfig(estimate_steps=2), PlanConfig(),
                      BenchConfig(arms=["vanilla", "peer"], infer_examples=8, infer_batch_sizes=[4]), args,
                      progress=lines.append)
    peer, vanilla = bench["arms"]["peer"], bench["arms"]["vanilla"]
    assert peer["metric"] == vanilla["metric"] == "accuracy" and 0.0 <= peer["best_metric_mean"] <= 1.0
    assert peer["train_throughput"] > 0 and peer["estimate_seconds"] == 0
    repeat = bench["repeats"]["peer"][0]
    assert repeat["target_modules"] == ["query", "value"]  # peft's default for BERT: LoRA q,v
    assert repeat["trainable_params"] == bench["repeats"]["vanilla"][0]["trainable_params"]  # same LoRA + head
    assert repeat["optimizer_steps"] * 16 / repeat["train_seconds"] == pytest.approx(repeat["train_throughput"])
    vanilla_run = json.loads((out / "runs" / "seed42-vanilla" / "run.json").read_text())
    assert repeat["optimizer_steps"] == vanilla_run["optimizer_steps"]  # same rows, batch and epochs
    comparison = bench["peer"]
    assert comparison["vanilla_over_peer_train_throughput"] == pytest.approx(
        vanilla["train_throughput"] / peer["train_throughput"])
    assert isinstance(comparison["within_tolerance"], bool)
    assert "ratios" not in bench  # no Light-PEFT arm to compare
    assert "## Vanilla arm vs a plain peft + Trainer script" in (out / "bench.md").read_text()
    spec = json.loads((out / "logs" / "seed42-peer-peer.spec.json").read_text())
    assert spec["learning_rate"] == 5e-3 and spec["per_device_train_batch_size"] == 16 and spec["seed"] == 42
    assert any("seed 42 peer: accuracy" in line for line in lines)


def spec_for(data_cfg=None, peft_cfg=None) -> dict:
    configs = to_dict(ModelConfig("minilm"), data_cfg or DataConfig(), peft_cfg or PeftSettings())
    return {"configs": configs, "training": {"learning_rate": 1e-3}, "run_dir": "/tmp/x", "seed": 3, "threads": 1}


def test_peer_arguments_carry_the_bench_settings_and_refuse_what_the_script_lacks():
    flags = peer_arguments(spec_for(DataConfig(task="t.csv", max_train_samples=10, max_seq_length=32)))
    assert flags["task"] == "t.csv" and flags["max_train_samples"] == 10 and flags["max_seq_length"] == 32
    assert flags["seed"] == 3 and flags["learning_rate"] == 1e-3 and flags["lora_r"] == 8
    with pytest.raises(LightPeftError, match="--text_column"):
        peer_arguments(spec_for(DataConfig(task="t.csv", text_column="sentence")))
    with pytest.raises(LightPeftError, match="peer"):
        peer_arguments(spec_for(peft_cfg=PeftSettings(vanilla_targets=["q", "k", "v"])))
    with pytest.raises(LightPeftError, match="shape_only"):
        BenchConfig(arms=["vanilla", "peer"], shape_only="minilm")
