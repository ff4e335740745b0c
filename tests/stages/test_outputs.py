"""Output directories: the marker and what `--overwrite_output_dir` may replace, the stage's inputs, the lock held
for the whole stage (a second process refuses at once), SIGTERM, and staging left by a killed run."""

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightpeft import (
    DataConfig,
    LightPeftError,
    LightPeftTrainingArguments,
    ModelConfig,
    PeftSettings,
    export_run,
    train,
)
from lightpeft.cli import main
from lightpeft.io import exclusive_lock
from lightpeft.stages.outputs import MARKER, claimed_output_dir, lock_file

from conftest import save_tiny_model_dir, write_tiny_csv

SRC = Path(__file__).resolve().parents[2] / "src"


def args_for(out, **kw):
    return LightPeftTrainingArguments(**{**dict(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=8,
                                                disable_tqdm=True, seed=0, use_cpu=True, report_to="none"), **kw})


def train_into(out, model_dir, csv, overwrite=False, **kw):
    return train(ModelConfig(str(model_dir)), DataConfig(task=str(csv), max_seq_length=16), PeftSettings(),
                 args_for(out), overwrite=overwrite, **kw)


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def refused(match: str, call, *args, **kwargs) -> str:
    with pytest.raises(LightPeftError, match=match) as err:
        call(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


# ------------------------------------------------------------------------------------- marker and overwrite


def test_overwrite_pointed_at_the_base_model_directory_leaves_it_intact(tmp_path):
    model = save_tiny_model_dir(tmp_path / "model")
    csv = write_tiny_csv(model / "train.csv")  # the training file inside the model directory, as in the report
    before = snapshot(model)
    refused("is the --model_name_or_path", train_into, model, model, csv, overwrite=True)
    link = tmp_path / "link"
    link.symlink_to(model, target_is_directory=True)  # through a symlink too
    refused("is the --model_name_or_path", train_into, link, model, csv, overwrite=True)
    assert snapshot(model) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "model"]  # no lock or staging left


def test_overwrite_refuses_a_directory_lightpeft_did_not_write(tmp_path, tiny_model_dir, tiny_csv):
    other = save_tiny_model_dir(tmp_path / "other-model")  # not an input of this run: still not lightpeft's
    data = tmp_path / "data"
    data.mkdir()
    write_tiny_csv(data / "train.csv")
    before = snapshot(other), snapshot(data)
    refused(f"no {MARKER} marker.*empty this one yourself", train_into, other, tiny_model_dir, tiny_csv,
            overwrite=True)
    refused("holds the --task", train_into, data, tiny_model_dir, data / "train.csv", overwrite=True)
    assert (snapshot(other), snapshot(data)) == before


def test_overwrite_replaces_an_old_run_which_carries_the_marker(lora_run, tmp_path, tiny_model_dir, tiny_csv):
    out = tmp_path / "run"
    shutil.copytree(lora_run[0], out)  # a finished `lightpeft run` directory
    marker = json.loads((out / MARKER).read_text())
    assert marker["written_by"] == "lightpeft" and marker["kind"] == "run"
    assert {"run.json", "plan.json", "estimate/estimate.json"} <= set(marker["files"])
    refused("already holds a finished run; pass --overwrite_output_dir", train_into, out, tiny_model_dir, tiny_csv)
    refused("holds the --plan_path", train_into, out, tiny_model_dir, tiny_csv, overwrite=True,
            plan=str(out / "plan.json"))
    refused("holds the --estimate_dir", train_into, out, tiny_model_dir, tiny_csv, overwrite=True,
            inputs={"--estimate_dir": out / "estimate"})
    summary = train_into(out, tiny_model_dir, tiny_csv, overwrite=True).summary  # vanilla over the old Light-PEFT run
    assert summary["method"] == "vanilla" and not (out / "estimate").exists()
    assert json.loads((out / MARKER).read_text())["kind"] == "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    (out / MARKER).unlink()  # e.g. written by an older lightpeft: no longer proof that it is ours
    refused(f"no {MARKER} marker", train_into, out, tiny_model_dir, tiny_csv, overwrite=True)


def test_export_plan_and_predict_never_write_over_their_inputs(lora_run, tmp_path, capsys):
    run_dir = lora_run[0]
    before = snapshot(run_dir)
    refused("is the --run_dir", export_run, run_dir, run_dir, overwrite=True)
    refused("holds the --run_dir", export_run, run_dir, run_dir.parent, overwrite=True)
    for argv, message in [
        (["plan", "--estimate_dir", run_dir / "estimate", "--plan_path", run_dir / "estimate"], "is a directory"),
        (["plan", "--estimate_dir", run_dir / "estimate", "--plan_path", run_dir / "estimate" / "estimate.json"],
         "replace a file of the"),
        (["predict", "--run_dir", run_dir, "--text", "w1 w2", "--output_file", run_dir], "is a directory"),
        (["predict", "--run_dir", run_dir, "--text", "w1", "--output_file", run_dir / "run.json"], "a file of the"),
    ]:
        code = main([str(a) for a in argv] + ["--overwrite_output_dir" if argv[0] == "plan"
                                               else "--overwrite_output_file", "true"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
    assert snapshot(run_dir) == before
    code = main(["plan", "--estimate_dir", str(run_dir / "estimate"), "--plan_path", str(tmp_path / "p.json")])
    assert code == 0 and (tmp_path / "p.json").is_file()  # a new file beside the inputs is fine


# ------------------------------------------------------------------------------------------------- the lock

HOLDER = """
import sys, types
package = types.ModuleType("lightpeft")  # only lightpeft.io, without the package's heavy imports
package.__path__ = [sys.argv[1]]
sys.modules["lightpeft"] = package
from lightpeft.io import exclusive_lock
with exclusive_lock(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_second_process_writing_the_same_output_dir_refuses_at_once(tmp_path, tiny_model_dir, tiny_csv):
    out = tmp_path / "run"
    stale = tmp_path / ".run.abcd1234"  # looks like staging, but its owner may be the live holder: kept
    (stale / "run").mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(SRC / "lightpeft"), str(lock_file(out))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        message = refused("being written by another lightpeft process", train_into, out, tiny_model_dir, tiny_csv)
        assert f"PID {holder.pid}" in message and time.perf_counter() - started < 5
        assert stale.is_dir() and not out.exists()
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0 and not lock_file(out).exists()  # released on exit
    with claimed_output_dir(out, overwrite=False):
        assert lock_file(out).read_text().strip() == str(os.getpid())
    assert not lock_file(out).exists()


def test_the_lock_is_released_when_the_stage_fails(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with claimed_output_dir(out, overwrite=False):
            raise RuntimeError("simulated crash")
    with exclusive_lock(lock_file(out)):  # free again
        pass
    assert list(tmp_path.iterdir()) == []


def test_staging_left_by_a_killed_run_is_removed_next_time(tmp_path, tiny_model_dir, tiny_csv, caplog):
    out = tmp_path / "run"
    stale = tmp_path / ".run.k9x_2abc"  # what kill -9 leaves: a finished estimate and the Trainer's checkpoints
    (stale / "run" / "estimate").mkdir(parents=True)
    (stale / "run" / "estimate" / "estimate.json").write_text("{}")
    (stale / "run" / "trainer" / "checkpoint-2").mkdir(parents=True)
    (stale / ".run.zzzzzzzz").mkdir()  # a nested atomic write of the same name
    unrelated = [tmp_path / ".run.json.abcd1234", tmp_path / ".run.keep", tmp_path / ".runs.abcd1234"]
    for path in unrelated:
        path.mkdir()
    (tmp_path / ".run.user1234").mkdir()
    (tmp_path / ".run.user1234" / "notes.txt").write_text("not staging")  # holds something else: kept
    with caplog.at_level(logging.WARNING, logger="lightpeft.stages.outputs"):
        train_into(out, tiny_model_dir, tiny_csv)
    assert not stale.exists() and (out / "run.json").is_file()
    assert all(p.is_dir() for p in unrelated) and (tmp_path / ".run.user1234").is_dir()
    assert any("interrupted run" in r.getMessage() and str(stale) in r.getMessage() for r in caplog.records)
    assert not lock_file(out).exists()


# --------------------------------------------------------------------------------------------------- SIGTERM


def test_sigterm_ends_a_real_train_with_one_line_and_leaves_nothing_without_a_checkpoint(tmp_path, tiny_model_dir, tiny_csv):
    root = tmp_path / "runs"
    root.mkdir()
    out = root / "t"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightpeft", "train", "--model_name_or_path", str(tiny_model_dir), "--task",
         str(tiny_csv), "--max_seq_length", "16", "--output_dir", str(out), "--num_train_epochs", "10000",
         "--eval_strategy", "no", "--save_strategy", "no", "--per_device_train_batch_size", "8", "--use_cpu", "true",
         "--disable_tqdm", "true", "--report_to", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (root / ".t.partial").is_dir() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (root / ".t.partial").is_dir(), proc.communicate(timeout=30)  # staging, training under way
        message = refused("being written by another lightpeft process", train_into, out, tiny_model_dir, tiny_csv)
        assert f"PID {proc.pid}" in message  # two real lightpeft processes: the second refuses at once
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    errors = [line for line in stderr.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert proc.returncode == 143, stderr[-2000:]
    assert errors == ["error: train interrupted (SIGTERM); nothing was written"], stderr[-2000:]
    assert list(root.iterdir()) == []  # no output, no staging, no lock
