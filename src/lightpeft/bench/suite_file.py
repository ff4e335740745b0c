"""A suite file: the tasks of `lightpeft suite`, each a `lightpeft bench` config, and the targets its summary checks.

    output_dir: benchmarks/results/suite-promise     # default suite directory (--output_dir overrides)
    common: {seeds: [42, 43, 44], threads: 1}        # bench flags for every task, over its config file
    targets:                                         # checked on every task; a task may override or drop (null)
      metric_delta: ">= -1.0"
      train_speedup: ">= 1.8"
    stretch: {at_least: 3, targets: {train_speedup: ">= 2.0"}}   # met by N tasks among those that check them
    tasks:
      minilm-sst2:
        config: ../configs/minilm_sst2.yaml          # a bench config file, relative to the suite file
        max_train_samples: 2000                      # any bench flag, over the config file and `common`
        targets: {train_speedup: null}

A task's settings: its config file, then `common`, then its own flags; `output_dir` is always the suite's
tasks/NAME. Data paths inside them are read as `lightpeft bench` reads them (relative to the working directory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lightpeft.errors import LightPeftError

# figure -> (what it is, where bench.json keeps it); see `suite_report.task_figures`
FIGURES = {
    "metric_delta": "Light-PEFT - vanilla dev metric (points; perplexity for causal LMs), mean of seeds",
    "train_speedup": "training throughput, Light-PEFT / vanilla",
    "end_to_end_speedup": "vanilla training time / Light-PEFT estimate + training time",
    "peak_train_live_memory": "peak training live-tensor bytes, Light-PEFT / vanilla",
    "fraction_of_flop_ideal": "measured training speed-up / counted FLOP-ideal speed-up",
    "peer_speed": "training throughput, vanilla / the plain peft + Trainer script (peer arm)",
}
SUITE_KEYS = {"output_dir", "common", "targets", "stretch", "tasks", "description"}
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
BOUND = re.compile(r"\s*(>=|<=)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*")


@dataclass(frozen=True)
class Target:
    """`figure op bound`, e.g. train_speedup >= 1.8."""

    figure: str
    op: str
    bound: float

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


@dataclass
class SuiteTask:
    name: str
    values: dict  # bench flags: config file, then common, then the task's own (output_dir not yet set)
    targets: dict[str, Target]


@dataclass
class Stretch:
    """At least `at_least` of the tasks that check every figure of `targets` meet all of them."""

    at_least: int
    targets: dict[str, Target]


@dataclass
class SuiteFile:
    path: Path
    output_dir: str | None
    description: str
    tasks: list[SuiteTask]
    stretch: Stretch | None = None
    targets: dict[str, Target] = field(default_factory=dict)

    def select(self, names: list[str] | None) -> list[SuiteTask]:
        if not names:
            return list(self.tasks)
        known = {t.name for t in self.tasks}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise LightPeftError(f"--tasks {','.join(unknown)}: not in {self.path}; its tasks are "
                                 f"{', '.join(t.name for t in self.tasks)}")
        return [t for t in self.tasks if t.name in names]


def parse_targets(raw, source: str) -> dict[str, Target | None]:
    """`{figure: ">= 1.8" | null}` -> Targets (None: not checked)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LightPeftError(f"{source}: `targets` must map figures to bounds such as \">= 1.8\"")
    targets = {}
    for figure, bound in raw.items():
        if figure not in FIGURES:
            raise LightPeftError(f"{source}: unknown target figure {figure!r}; use one of {', '.join(FIGURES)}")
        if bound is None:
            targets[figure] = None
            continue
        match = BOUND.fullmatch(str(bound))
        if not match:
            raise LightPeftError(f"{source}: target {figure}: {bound!r} must read \">= NUMBER\" or \"<= NUMBER\"")
        targets[figure] = Target(figure, match.group(1), float(match.group(2)))
    return targets


def _mapping(value, what: str, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LightPeftError(f"{source}: `{what}` must be a mapping")
    return value


def load_suite_file(path: str | Path) -> SuiteFile:
    """Read and check a suite file (every task's flags are checked when the suite builds its configs)."""
    from lightpeft.cli import read_config_file

    path = Path(path)
    data = read_config_file(str(path))
    source = f"suite file {path}"
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise LightPeftError(f"{source} has unknown keys: {', '.join(unknown)}; use {', '.join(sorted(SUITE_KEYS))}")
    tasks_raw = _mapping(data.get("tasks"), "tasks", source)
    if not tasks_raw:
        raise LightPeftError(f"{source} has no `tasks`; add at least one task (name: {{config: FILE}})")
    common = _mapping(data.get("common"), "common", source)
    suite_targets = {k: v for k, v in parse_targets(data.get("targets"), source).items() if v is not None}
    tasks = []
    for name, raw in tasks_raw.items():
        name = str(name)
        if not TASK_NAME.fullmatch(name):
            raise LightPeftError(f"{source}: task name {name!r} must be letters, digits, '.', '_' or '-' (it names "
                                 "the task's directory)")
        task_source = f"{source}, task {name}"
        raw = dict(_mapping(raw, name, source))
        values = {}
        config = raw.pop("config", None)
        if config is not None:
            config_path = Path(config) if Path(config).is_absolute() else path.parent / config
            values.update(read_config_file(str(config_path)))
        overrides = parse_targets(raw.pop("targets", None), task_source)
        values.update(common)
        values.update(raw)
        values.pop("output_dir", None)  # always the suite's tasks/NAME
        targets = {k: v for k, v in {**suite_targets, **overrides}.items() if v is not None}
        tasks.append(SuiteTask(name, values, targets))
    stretch = _stretch(data.get("stretch"), source)
    return SuiteFile(path=path, output_dir=data.get("output_dir"), description=str(data.get("description") or ""),
                     tasks=tasks, stretch=stretch, targets=suite_targets)


def _stretch(raw, source: str) -> Stretch | None:
    if raw is None:
        return None
    raw = _mapping(raw, "stretch", source)
    at_least = raw.get("at_least")
    targets = {k: v for k, v in parse_targets(raw.get("targets"), f"{source}, stretch").items() if v is not None}
    if not isinstance(at_least, int) or at_least <= 0 or not targets or set(raw) - {"at_least", "targets"}:
        raise LightPeftError(f"{source}: `stretch` must be {{at_least: N > 0, targets: {{figure: bound}}}}")
    return Stretch(at_least, targets)
