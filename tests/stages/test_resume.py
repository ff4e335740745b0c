"""Resume: a `run` / `train` interrupted mid-training (an exception inside the Trainer, or SIGKILL of a real process)
continues from its staging area when the same command runs again: the estimate and plan are reused, training goes on
from the last complete checkpoint (no step repeated), and the result equals an uninterrupted run's. A changed
setting refuses to resume with one line; `--resume false` starts over."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from lightpeft import (
    DataConfig,
    EstimateConfig,
    LightPeftError,
    LightPeftTrainingArguments,
    ModelConfig,
    PeftSettings,
    PlanConfig,
    RunOptions,
    run,
    train,
)
from lightpeft.cli import main
from lightpeft.stages import train as train_stage
from lightpeft.stages.resume import CHECKPOINT_DONE, RESUME_FILE, partial_dir

SRC = Path(__file__).resolve().parents[2] / "src"
STEPS = 11  # 86 training rows (10% of 96 held out) / batch 8: one epoch


def args_for(out, **kw):
    return LightPeftTrainingArguments(**{**dict(
        output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=8, learning_rate=5e-3, disable_tqdm=True,
        seed=0, use_cpu=True, report_to="none", save_strategy="steps", save_steps=4, eval_strategy="no",
        logging_steps=1), **kw})


def run_tiny(out, model_dir, csv, resume=True, **kw):
    return run(ModelConfig(str(model_dir)), DataConfig(task=str(csv), max_seq_length=16), PeftSettings(),
               EstimateConfig(estimate_steps=4), PlanConfig(), args_for(out, **kw), RunOptions(resume=resume))


class StopAt(TrainerCallback):
    """A crash in the middle of training: raises once the Trainer reaches `step` (after the checkpoint before it)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated crash")


@pytest.fixture
def crash_training_at(monkeypatch):
    """`crash_training_at(step)`: the next training stage raises at `step`; the steps every later Trainer starts
    from are recorded in the returned list."""
    original = train_stage.make_trainer

    def arm(step):
        started = []

        def make_trainer(*args, callbacks=(), **kw):
            trainer = original(*args, callbacks=[*callbacks, StopAt(step)] if step else list(callbacks), **kw)
            train_call = trainer.train

            def train(resume_from_checkpoint=None, **tkw):
                started.append(resume_from_checkpoint)
                return train_call(resume_from_checkpoint=resume_from_checkpoint, **tkw)

            trainer.train = train
            return trainer

        monkeypatch.setattr(train_stage, "make_trainer", make_trainer)
        return started

    return arm


def weights(run_dir):
    return load_file(Path(run_dir) / "peft_weights.safetensors")


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=0, msg=key)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, tiny_csv):
    out = tmp_path_factory.mktemp("whole") / "run"
    return out, run_tiny(out, tiny_model_dir, tiny_csv)


def test_a_run_interrupted_mid_training_resumes_and_equals_an_uninterrupted_run(
        tmp_path, tiny_model_dir, tiny_csv, uninterrupted, crash_training_at, caplog):
    out = tmp_path / "run"
    crash_training_at(6)
    with pytest.raises(KeyboardInterrupt) as err:
        run_tiny(out, tiny_model_dir, tiny_csv)
    area = partial_dir(out)
    assert not out.exists() and err.value.kept_state == str(area)
    assert (area / "estimate" / "estimate.json").is_file() and (area / "plan.json").is_file()
    assert (area / "trainer" / "checkpoint-4" / CHECKPOINT_DONE).is_file()
    estimate_json = (area / "estimate" / "estimate.json").read_text()
    # the checkpoint holds safetensors weights; what the Trainer pickles (optimizer, scheduler, RNG) loads with
    # torch's weights_only=True
    assert list((area / "trainer" / "checkpoint-4").glob("*.safetensors"))

    started = crash_training_at(None)
    with caplog.at_level("INFO"):
        result = run_tiny(out, tiny_model_dir, tiny_csv)
    assert started == [str(area / "trainer" / "checkpoint-4")]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "reusing the finished estimate" in messages and "reusing the plan" in messages
    assert not area.exists() and (out / "run.json").is_file() and not (out / RESUME_FILE).exists()
    assert not (out / "trainer").exists()
    assert (out / "estimate" / "estimate.json").read_text() == estimate_json  # not redone

    whole_dir, whole = uninterrupted
    summary, reference = result.summary, whole.summary
    assert summary["optimizer_steps"] == reference["optimizer_steps"] == STEPS
    steps_logged = [h["step"] for h in json.loads((out / "log_history.json").read_text())["log_history"]
                    if "loss" in h]
    assert steps_logged == list(range(1, STEPS + 1))  # every step once: 1-4 before the crash, 5-12 after it
    assert result.plan.to_json() == whole.plan.to_json()
    assert_same_weights(out, whole_dir)  # CPU, one process: the resumed run is bit-identical
    assert summary["final_metric"] == reference["final_metric"]


def test_a_changed_setting_refuses_to_resume_and_resume_false_starts_over(
        tmp_path, tiny_model_dir, tiny_csv, crash_training_at, capsys):
    out = tmp_path / "run"
    crash_training_at(6)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(out, tiny_model_dir, tiny_csv)
    area = partial_dir(out)
    with pytest.raises(LightPeftError, match=r"interrupted run with other settings \(training.learning_rate 0.005 "
                                             r"-> 0.001\); rerun with the same settings") as err:
        run_tiny(out, tiny_model_dir, tiny_csv, learning_rate=1e-3)
    assert "\n" not in str(err.value) and area.is_dir() and not out.exists()
    started = crash_training_at(None)
    run_tiny(out, tiny_model_dir, tiny_csv, resume=False, learning_rate=1e-3)
    assert started == [None] and not area.exists() and (out / "run.json").is_file()


def test_train_resumes_and_an_area_without_finished_work_is_dropped(tmp_path, tiny_model_dir, tiny_csv,
                                                                    crash_training_at):
    out = tmp_path / "t"
    crash_training_at(2)  # before the first checkpoint: nothing to keep
    with pytest.raises(KeyboardInterrupt) as err:
        train(ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16), PeftSettings(),
              args_for(out))
    assert not hasattr(err.value, "kept_state") and not partial_dir(out).exists()
    assert list(tmp_path.iterdir()) == []


def test_vanilla_adapters_resume_bit_identically(tmp_path, tiny_model_dir, tiny_csv, crash_training_at):
    """Adapters are lightpeft's own modules inside the HF model (no peft wrapper): the Trainer checkpoints the
    whole model, and resuming must still give the uninterrupted weights."""

    def train_adapters(out):
        return train(ModelConfig(str(tiny_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                     PeftSettings(peft="adapter"), args_for(out))

    whole = tmp_path / "whole"
    crash_training_at(None)
    train_adapters(whole)
    out = tmp_path / "t"
    crash_training_at(6)
    with pytest.raises(KeyboardInterrupt):
        train_adapters(out)
    started = crash_training_at(None)
    result = train_adapters(out)
    assert started == [str(partial_dir(out) / "trainer" / "checkpoint-4")]
    assert result.summary["optimizer_steps"] == STEPS
    assert_same_weights(out, whole)


# ---------------------------------------------------------------------------------------------- a real SIGKILL

SLOW_TRAINING = """
import sys, time
import transformers
step = transformers.Trainer.training_step
def slow(self, *args, **kwargs):
    time.sleep(0.15)  # so the test can kill it between checkpoints
    return step(self, *args, **kwargs)
transformers.Trainer.training_step = slow
from lightpeft.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli_args(out, model_dir, csv):
    return ["train", "--model_name_or_path", str(model_dir), "--task", str(csv), "--max_seq_length", "16",
            "--output_dir", str(out), "--num_train_epochs", "2", "--per_device_train_batch_size", "8",
            "--learning_rate", "5e-3", "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "4",
            "--logging_steps", "1", "--seed", "0", "--use_cpu", "true", "--disable_tqdm", "true",
            "--report_to", "none"]


def test_sigkill_mid_training_then_the_same_command_resumes_and_matches(tmp_path, tiny_model_dir, tiny_csv, capsys):
    root = tmp_path / "runs"
    root.mkdir()
    out = root / "t"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_TRAINING, *cli_args(out, tiny_model_dir, tiny_csv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    done = partial_dir(out) / "trainer" / "checkpoint-8" / CHECKPOINT_DONE
    try:
        deadline = time.monotonic() + 180
        while not done.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert done.is_file(), proc.communicate(timeout=30)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and not out.exists()

    assert main(cli_args(out, tiny_model_dir, tiny_csv)) == 0  # the same command, in this process
    whole = tmp_path / "whole"
    assert main(cli_args(whole, tiny_model_dir, tiny_csv)) == 0
    resumed, reference = (json.loads((d / "run.json").read_text()) for d in (out, whole))
    assert resumed["optimizer_steps"] == reference["optimizer_steps"] == 2 * STEPS
    history = json.loads((out / "log_history.json").read_text())["log_history"]
    steps = [h["step"] for h in history if "loss" in h]
    assert steps == sorted(set(steps)) and steps[-1] == 2 * STEPS and 8 in steps  # no step repeated
    assert_same_weights(out, whole)
    assert resumed["final_metric"] == reference["final_metric"]
    assert sorted(p.name for p in root.iterdir()) == ["t"]  # no staging area, no lock left
