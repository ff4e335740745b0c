"""`lightpeft suite`: tasks of a suite file run as benches, resumed per task, summarised in one table and plot."""

import json

import pytest
import yaml

from lightpeft.bench.suite import finished_bench, task_configs
from lightpeft.bench.suite_file import load_suite_file
from lightpeft.cli import main
from lightpeft.errors import LightPeftError

from helpers import REPO


def write_suite(tmp_path, model_dir, csv, **task_b) -> str:
    """Two tiny tasks on one seed: `a` with both arms, `b` vanilla only (its ratios stay empty)."""
    config = tmp_path / "tiny_bench.yaml"
    config.write_text(yaml.safe_dump({
        "model_name_or_path": str(model_dir), "task": str(csv), "max_seq_length": 16, "num_train_epochs": 1,
        "per_device_train_batch_size": 16, "learning_rate": 5e-3, "estimate_steps": 2, "use_cpu": True,
        "infer_examples": 8, "infer_batch_sizes": [4], "output_dir": "ignored"}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "out"), "common": {"seeds": [42]},
        "targets": {"metric_delta": ">= -100", "train_speedup": ">= 100"},
        "tasks": {"a": {"config": config.name},
                  "b": {"config": config.name, "arms": ["vanilla"], "targets": {"train_speedup": None}, **task_b}}}))
    return str(suite)


def test_suite_runs_tasks_resumes_finished_ones_and_summarises(tiny_model_dir, tiny_csv, tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_model_dir, tiny_csv)
    out = tmp_path / "out"
    assert main(["suite", "--config", suite, "--tasks", "a"]) == 0
    first = capsys.readouterr().out
    assert "task 1/1 a: running" in first and "[1/2] seed 42 vanilla: training" in first
    bench_a = (out / "tasks" / "a" / "bench.json").read_text()
    assert "| b | - |" in (out / "suite.md").read_text()  # not run yet: listed, empty

    assert main(["suite", "--config", suite]) == 0
    second = capsys.readouterr().out
    assert "task 1/2 a: finished result reused" in second and "task 2/2 b: running" in second
    assert (out / "tasks" / "a" / "bench.json").read_text() == bench_a  # not run again
    summary = json.loads((out / "suite.json").read_text())
    rows = {t["task"]: t for t in summary["tasks"]}
    assert rows["a"]["finished"] and rows["b"]["finished"]
    assert rows["a"]["checks"] == {"metric_delta": True, "train_speedup": False}
    assert rows["a"]["train_speedup"] == pytest.approx(json.loads(bench_a)["ratios"]["train_throughput"])
    assert rows["b"]["checks"] == {"metric_delta": None}  # no Light-PEFT arm: nothing to check
    table = (out / "suite.md").read_text()
    assert "| a | " in table and "**miss** (>= 100)" in table and "targets met: 1 of 2 checks" in table
    assert (out / "suite.png").stat().st_size > 10_000
    assert (out / "tasks" / "b" / "bench.md").is_file()


def test_a_finished_task_with_other_settings_is_not_reused(tiny_model_dir, tiny_csv, tmp_path):
    """Resumption compares every recorded setting; here a fake bench.json stands for the finished task."""
    suite = load_suite_file(write_suite(tmp_path, tiny_model_dir, tiny_csv))
    task = suite.tasks[0]
    out = tmp_path / "out"
    configs = task_configs(task, out)
    from lightpeft.bench.runner import bench_settings

    path = out / "tasks" / "a" / "bench.json"
    path.parent.mkdir(parents=True)
    settings = bench_settings(*configs)
    path.write_text(json.dumps({"configs": settings}, default=str))
    assert finished_bench(out, task, configs)[0] is not None
    moved = json.loads(json.dumps(settings, default=str))
    moved["training"]["output_dir"] = "/elsewhere"  # where it was written does not matter
    path.write_text(json.dumps({"configs": moved}))
    assert finished_bench(out, task, configs)[0] is not None
    moved["BenchConfig"]["seeds"] = [1, 2]
    moved["training"]["learning_rate"] = 1.0
    path.write_text(json.dumps({"configs": moved}))
    bench, reason = finished_bench(out, task, configs)
    assert bench is None and "BenchConfig.seeds" in reason and "training.learning_rate" in reason


def test_suite_file_errors_name_what_to_fix(tiny_model_dir, tiny_csv, tmp_path):
    suite = write_suite(tmp_path, tiny_model_dir, tiny_csv, no_such_flag=1)
    with pytest.raises(LightPeftError, match="suite task b has unknown keys: no_such_flag"):
        [task_configs(t, tmp_path) for t in load_suite_file(suite).tasks]
    assert main(["suite", "--config", write_suite(tmp_path, tiny_model_dir, tiny_csv), "--tasks", "zz"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tasks": {"a": {}}, "targets": {"train_speedup": "fast"}}))
    with pytest.raises(LightPeftError, match="must read"):
        load_suite_file(bad)
    bad.write_text(yaml.safe_dump({"tasks": {"a/b": {}}}))
    with pytest.raises(LightPeftError, match="task name"):
        load_suite_file(bad)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["suite", "--config", suite, "--output_dir", str(tmp_path / "taken")]) == 2


def test_committed_promise_suite_parses():
    suite = load_suite_file(REPO / "benchmarks" / "suites" / "promise.yaml")
    names = [t.name for t in suite.tasks]
    assert names == ["minilm-rotten-tomatoes", "minilm-sst2", "minilm-mrpc", "minilm-rte", "minilm-stsb",
                     "minilm-cola", "smollm2-sst2", "smollm2-mrpc"]
    for task in suite.tasks:
        *_, bench_cfg, args, _search = task_configs(task, REPO / "benchmarks" / "results" / "suite-promise")
        assert bench_cfg.seeds == [42, 43, 44] and bench_cfg.threads == 1 and bench_cfg.arms[:2] == ["vanilla",
                                                                                                  "light-peft"]
        assert args.output_dir.endswith(f"tasks/{task.name}")
    peer_tasks = [t.name for t in suite.tasks if "peer" in task_configs(t, REPO)[-3].arms]
    assert peer_tasks == ["minilm-stsb", "smollm2-sst2", "smollm2-mrpc"]
    assert "train_speedup" not in suite.tasks[-1].targets and suite.tasks[0].targets["train_speedup"].bound == 1.8
