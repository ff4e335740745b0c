"""Gate statistics for the Trainer's log and report_to trackers."""

import pytest
import torch

from lightpeft import DataConfig, EstimateConfig, LightPeftTrainingArguments, ModelConfig, PeftSettings, estimate
from lightpeft.methods.light_peft.gate_stats import gate_statistics
from lightpeft.methods.light_peft.masks import Gates


def test_statistics_summarise_both_gate_kinds_and_the_l1():
    gates = Gates(2, 3, 4)
    with torch.no_grad():
        gates.head.copy_(torch.tensor([[1.0, 0.5, -0.5], [1.0, 1.0, 1.0]]))
        gates.ffn.fill_(0.25)
    stats = gate_statistics(gates)
    assert stats["gates/head_mean"] == pytest.approx(4.0 / 6) and stats["gates/head_min"] == -0.5
    assert stats["gates/ffn_std"] == 0.0 and stats["gates/ffn_mean"] == 0.25
    assert stats["gates/l1"] == pytest.approx(5.0 + 2.0)


def test_estimation_reports_gate_scalars_to_tensorboard(base_model_dir, tiny_csv, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "est"
    args = LightPeftTrainingArguments(output_dir=str(out), per_device_train_batch_size=8, logging_steps=1,
                                      report_to=["tensorboard"], seed=0, use_cpu=True, disable_tqdm=True)
    estimate(ModelConfig(str(base_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16), PeftSettings(),
             EstimateConfig(estimate_steps=3), args)
    events = EventAccumulator(str(out / "tensorboard")).Reload()  # kept in the estimate directory
    tags = events.Tags()["scalars"]
    for name in ("head_mean", "head_min", "head_std", "ffn_mean", "ffn_min", "ffn_std", "l1"):
        assert f"train/gates/{name}" in tags, tags
    l1 = [e.value for e in events.Scalars("train/gates/l1")]
    assert len(l1) >= 3 and l1[-1] < l1[0]  # the L1 term pulls the gates down
