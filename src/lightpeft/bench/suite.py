"""`lightpeft suite`: every task of a suite file as a `lightpeft bench`, resumable per task, and one summary.

Suite directory: tasks/NAME/ (each task's whole bench directory: bench.json, bench.md, bench.png, logs/, runs/),
suite.json (every task's figures and target checks), suite.md (the table) and suite.png. A task whose bench.json
is there with the same settings (every config the bench records, its output directory aside) is reused, not run
again, so an interrupted suite resumes at the first unfinished task; a task whose settings changed runs again. The
summary is rewritten after every task and covers every finished task of the suite file, also those not selected
with --tasks.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lightpeft.bench.config import SuiteOptions
from lightpeft.bench.runner import bench_settings, run_bench
from lightpeft.bench.suite_file import SuiteFile, SuiteTask, load_suite_file
from lightpeft.bench.suite_report import suite_markdown, suite_plot, summarise_suite
from lightpeft.errors import LightPeftError
from lightpeft.io import LockHeld, exclusive_lock, write_json, write_text
from lightpeft.stages.outputs import lock_file, marker_of, write_marker

SUITE_SCHEMA_VERSION = 1
TASKS_DIR = "tasks"


def run_suite(options: SuiteOptions, progress: Callable[[str], None] | None = None) -> dict:
    """Run the selected tasks of the suite file (reusing finished ones) and return suite.json's content plus
    `markdown` (suite.md)."""
    suite = load_suite_file(options.config)
    out = Path(options.output_dir or suite.output_dir or "")
    if not str(out) or str(out) == ".":
        raise LightPeftError(f"no suite directory: pass --output_dir DIR or set `output_dir` in {options.config}")
    selected = suite.select(options.task_names())
    configs = {task.name: task_configs(task, out) for task in suite.tasks}  # every task's flags checked up front
    started = time.perf_counter()
    say = progress or (lambda line: print(f"suite {time.perf_counter() - started:7.0f}s  {line}", flush=True))
    with _claimed_suite_dir(out):
        for i, task in enumerate(selected, 1):
            head = f"task {i}/{len(selected)} {task.name}"
            finished, reason = finished_bench(out, task, configs[task.name])
            if finished is not None and not options.rerun:
                say(f"{head}: finished result reused ({task_dir(out, task)}/bench.json)")
                continue
            why = "(--rerun)" if options.rerun else "" if reason == "not run" else f"again: {reason}"
            say(f"{head}: running {why}".rstrip())
            task_started = time.perf_counter()
            *bench_configs, search = configs[task.name]
            run_bench(*bench_configs, overwrite=True, search_cfg=search,
                      progress=lambda line, head=head, t0=task_started: say(
                          f"{head} ({time.perf_counter() - t0:.0f}s): {line}"))
            _write_summary(out, suite, configs)
        summary = _write_summary(out, suite, configs)
    say(f"done: {out / 'suite.md'}")
    return summary


def task_dir(out: Path, task: SuiteTask) -> Path:
    return out / TASKS_DIR / task.name


def task_configs(task: SuiteTask, out: Path) -> tuple:
    """(ModelConfig, DataConfig, PeftSettings, EstimateConfig, PlanConfig, BenchConfig, training args,
    SearchConfig) of a task, parsed exactly as `lightpeft bench --config` parses a file."""
    from lightpeft.cli import parse_values

    values = {**task.values, "output_dir": str(task_dir(out, task))}
    model, data, peft, estimate, plan, search, bench, _options, args = parse_values(
        "bench", values, f"suite task {task.name}")
    return model, data, peft, estimate, plan, bench, args, search


def _comparable(configs: dict) -> dict:
    """Settings as JSON would round-trip them, without where the bench was written."""
    settings = json.loads(json.dumps(configs))
    settings.get("training", {}).pop("output_dir", None)
    return settings


def finished_bench(out: Path, task: SuiteTask, configs: tuple) -> tuple[dict | None, str]:
    """The task's finished bench.json if its settings are the task's; else None and why (`not run`, or the
    settings that differ)."""
    path = task_dir(out, task) / "bench.json"
    try:
        bench = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, "not run"
    expected, found = _comparable(bench_settings(*configs)), _comparable(bench.get("configs", {}))
    if expected == found:
        return bench, ""
    differ = sorted(f"{group}.{key}" for group in set(expected) | set(found)
                    for key in set(expected.get(group, {})) | set(found.get(group, {}))
                    if expected.get(group, {}).get(key) != found.get(group, {}).get(key))
    return None, f"settings changed ({', '.join(differ[:4])}{', ...' if len(differ) > 4 else ''})"


def _write_summary(out: Path, suite: SuiteFile, configs: dict) -> dict:
    benches = {task.name: finished_bench(out, task, configs[task.name])[0] for task in suite.tasks}
    summary = summarise_suite(suite, benches)
    summary["schema_version"] = SUITE_SCHEMA_VERSION
    markdown = suite_markdown(summary)
    write_json(out / "suite.json", summary)
    write_text(out / "suite.md", markdown)
    if any(benches.values()):
        suite_plot(summary, out / "suite.png")
    return summary | {"markdown": markdown}


@contextlib.contextmanager
def _claimed_suite_dir(out: Path) -> Iterator[Path]:
    """The suite directory, created and marked as a lightpeft suite if new, locked against a second suite run.
    A non-empty directory that is not a suite lightpeft wrote is refused (nothing there is ever deleted)."""
    if out.exists() and not out.is_dir():
        raise LightPeftError(f"suite directory {out} is a file; pass another --output_dir")
    if out.is_dir() and any(out.iterdir()) and (marker_of(out) or {}).get("kind") != "suite":
        raise LightPeftError(f"{out} holds files that are not a lightpeft suite (no suite marker); pass another "
                             "--output_dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(lock_file(out.resolve())):
            if marker_of(out) is None:
                (out / TASKS_DIR).mkdir(parents=True, exist_ok=True)
                write_marker(out, "suite")
            yield out
    except LockHeld as held:
        raise LightPeftError(f"suite directory {out} is being written by another lightpeft process (PID "
                             f"{held.pid}); wait for it to end or pass another --output_dir") from None
