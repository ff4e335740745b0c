"""`lightpeft` command line: parse flags (and an optional YAML/JSON config) into the dataclasses, call the API.

    lightpeft run      --output_dir runs/rt [--compare_vanilla]      estimate -> plan -> prune -> train
                       [--method prune_peft]                          (or: search -> retrain the searched plan)
    lightpeft estimate --output_dir runs/est                          masks + LoRA importance only
    lightpeft plan     --estimate_dir runs/est --plan_path p.json     a new plan from an estimate, no training
    lightpeft search   --output_dir runs/s [--budget_params N | --budget_fraction F]
                                                                      PrunePEFT: which PEFT modules go where
    lightpeft train    --output_dir runs/t [--plan_path p.json --estimate_dir runs/est]   (no plan: vanilla PEFT)
    lightpeft bench    --output_dir benchmarks/results/x [--seeds 42 43] [--shape_only roberta-base]
                                                                      vanilla vs Light-PEFT side by side
    lightpeft suite    --config benchmarks/suites/promise.yaml [--tasks a,b]   every task of a suite file as a
                                                                      bench, resumable, one summary table and plot
    lightpeft predict  --run_dir runs/t (--text "..." ["..."] | --input_file F) [--output_file preds.jsonl]
    lightpeft export   --run_dir runs/t --output_dir exports/t    compact model (+ vanilla peft adapter for LoRA)

`--peft adapter` switches estimate/run/train from LoRA to bottleneck adapters.

Every subcommand takes `--config FILE.yaml|json`; flags given on the command line override the file (`suite`: the
suite file, whose tasks are bench configs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from lightpeft.bench.config import BenchConfig, SuiteOptions
from lightpeft.config import (
    DataConfig,
    ExportConfig,
    LightPeftTrainingArguments,
    ModelConfig,
    PredictConfig,
    RunOptions,
)
from lightpeft.core.peft_kinds import PeftSettings
from lightpeft.errors import Interrupted, LightPeftError, is_disk_full
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig
from lightpeft.methods.light_peft.recipes import recipe_values
from lightpeft.methods.prune_peft.config import SearchConfig

COMMANDS = {
    "run": (ModelConfig, DataConfig, PeftSettings, SearchConfig, EstimateConfig, PlanConfig, RunOptions,
            LightPeftTrainingArguments),
    "estimate": (ModelConfig, DataConfig, PeftSettings, EstimateConfig, PlanConfig, RunOptions,
                 LightPeftTrainingArguments),
    "plan": (PlanConfig, RunOptions),
    "search": (ModelConfig, DataConfig, PeftSettings, SearchConfig, RunOptions, LightPeftTrainingArguments),
    "train": (ModelConfig, DataConfig, PeftSettings, RunOptions, LightPeftTrainingArguments),
    "bench": (ModelConfig, DataConfig, PeftSettings, EstimateConfig, PlanConfig, SearchConfig, BenchConfig, RunOptions,
              LightPeftTrainingArguments),
    "suite": (SuiteOptions,),
    "predict": (PredictConfig,),
    "export": (ExportConfig,),
}


def read_config_file(path: str) -> dict:
    file = Path(path)
    if not file.is_file():
        raise LightPeftError(f"config file {path} does not exist; pass an existing YAML or JSON file to --config")
    try:
        data = json.loads(file.read_text()) if file.suffix == ".json" else yaml.safe_load(file.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise LightPeftError(f"config file {path} is not valid YAML/JSON ({str(err).splitlines()[0]}); fix it") from None
    if not isinstance(data, dict):
        raise LightPeftError(f"config file {path} must hold a mapping of flag names to values")
    return data


def parse(command: str, argv: list[str]):
    """Dataclasses for `command` from argv; `--config FILE` supplies defaults that flags override (`suite`: its
    `--config` is the suite file itself, read by the suite)."""
    config_path = None if command == "suite" else _pop_config(argv)
    values = read_config_file(config_path) if config_path else {}
    return parse_values(command, values, f"config file {config_path}", argv)


def parse_values(command: str, values: dict, source: str, argv: list[str] | None = None):
    """Dataclasses for `command` from a mapping of flag values (what a `--config` file holds), then `argv` flags
    over them. Unknown keys are a LightPeftError naming `source`."""
    parser = HfArgumentParser(COMMANDS[command], prog=f"lightpeft {command}",
                              epilog="--config FILE: YAML or JSON file of flag values (flags given override it).")
    known = flag_names(COMMANDS[command])
    unknown = sorted(set(values) - known)
    if unknown:
        raise LightPeftError(f"{source} has unknown keys: {', '.join(unknown)}; see `lightpeft {command} --help`")
    argv = list(argv or [])
    if PlanConfig in COMMANDS[command]:  # the recipe's values first; the file and the flags override them
        recipe = recipe_values(_flag_value(argv, "recipe") or values.get("recipe", "paper"))
        parser.set_defaults(**{key: value for key, value in recipe.items() if key in known})
    parser.set_defaults(**values)
    *configs, rest = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    if rest:
        raise LightPeftError(f"unknown arguments {' '.join(rest)}; see `lightpeft {command} --help`")
    return configs


def flag_names(dataclass_types) -> set[str]:
    """The flags `HfArgumentParser` makes of `dataclass_types`: one per init field (`--no_X` sets X too)."""
    return {f.name for cls in dataclass_types for f in dataclasses.fields(cls) if f.init}


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value given to `--name` in argv (the last one wins, as argparse does), without removing it."""
    found = None
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(f"--{name}="):
            found = arg.split("=", 1)[1]
    return found


def _pop_config(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
            del argv[i : i + 2]
            return path
        if arg.startswith("--config="):
            del argv[i]
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        return 0
    logging.basicConfig(level=logging.INFO, format="lightpeft: %(message)s")
    command, rest = argv[0], argv[1:]
    previous = _on_sigterm_raise()
    try:
        configs = parse(command, rest)
        return HANDLERS[command](*configs)
    except LightPeftError as err:
        kept = getattr(err, "kept_state", None)
        print(f"error: {err}" + (f" (finished work kept in {kept} for a rerun)" if kept else ""), file=sys.stderr)
        return 2
    except Exception as err:
        if not is_disk_full(err):
            raise
        kept = getattr(err, "kept_state", None)
        note = f"; its finished work is kept in {kept} for a rerun" if kept else "; nothing was written"
        print(f"error: {command} ran out of disk space ({_first_line(err)}); free space on the output's disk or pass "
              f"another --output_dir, then run it again{note}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM as `Interrupted`: locks are released by now
        name, code = (err.signal_name, err.exit_code) if isinstance(err, Interrupted) else ("SIGINT", 130)
        kept = getattr(err, "kept_state", None)
        outcome = (f"its finished work is kept in {kept}: run the same command again to resume (--resume false "
                   "starts over)") if kept else "nothing was written"
        print(f"error: {command} interrupted ({name}); {outcome}", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _on_sigterm_raise():
    """SIGTERM raises `Interrupted` in the main thread (unwinding like Ctrl-C); a second SIGTERM during the clean-up
    ends the process at once. Returns the handler it replaced (None off the main thread, where it cannot)."""

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Interrupted("SIGTERM", 128 + signal.SIGTERM)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _run(model_cfg, data_cfg, peft_cfg, search_cfg, est_cfg, plan_cfg, options, args) -> int:
    from lightpeft.stages.run import run

    summary = run(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args, options, search_cfg=search_cfg).summary
    print(summary["summary_table"])
    print(f"\nrun directory: {args.output_dir}")
    return 0


def _estimate(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, options, args) -> int:
    from lightpeft.stages.estimate import estimate

    result = estimate(model_cfg, data_cfg, peft_cfg, est_cfg, args, overwrite=options.overwrite_output_dir,
                      plan_cfg=plan_cfg, resume=options.resume)
    stats, converged = result.meta["stats"], (result.meta.get("convergence") or {}).get("converged_at")
    note = f" (masks settled at step {converged})" if converged else ""
    print(f"estimate: {result.meta['steps']} of at most {result.meta['max_steps']} steps{note} in "
          f"{stats['seconds']:.1f}s -> {args.output_dir}")
    return 0


def _plan(plan_cfg, options) -> int:
    from lightpeft.methods.light_peft.planning import make_plan
    from lightpeft.report import markdown_table
    from lightpeft.stages.outputs import check_output_file

    if not options.estimate_dir or not options.plan_path:
        raise LightPeftError("`lightpeft plan` needs --estimate_dir DIR and --plan_path OUT.json")
    out = check_output_file(options.plan_path, options.overwrite_output_dir, "--plan_path", "--overwrite_output_dir",
                            {"--estimate_dir": options.estimate_dir})
    plan = make_plan(options.estimate_dir, plan_cfg)
    plan.save(out)
    print(markdown_table(["count", "value"], [[k, v] for k, v in plan.counts.items()]))
    print(f"\nplan: {out}")
    return 0


def _search(model_cfg, data_cfg, peft_cfg, search_cfg, options, args) -> int:
    from lightpeft.stages.search import rounds_table, search

    outcome = search(model_cfg, data_cfg, peft_cfg, search_cfg, args, overwrite=options.overwrite_output_dir)
    print(rounds_table(outcome))
    kept = ", ".join(outcome.record["kept_modules"])
    print(f"\nsearch: kept {kept} ({outcome.record['final_params']:,} PEFT parameters) in "
          f"{outcome.record['seconds']:.1f}s; retrain with `lightpeft train --plan_path {args.output_dir}/plan.json`")
    return 0


def _train(model_cfg, data_cfg, peft_cfg, options, args) -> int:
    from lightpeft.core.plan import Plan
    from lightpeft.methods.light_peft.estimate import Estimate
    from lightpeft.methods.light_peft.planning import initial_state
    from lightpeft.stages.run import estimation_teacher
    from lightpeft.stages.train import NO_TEACHER, train

    if options.estimate_dir and not options.plan_path:
        raise LightPeftError("--estimate_dir needs a --plan_path to prune with (make one with `lightpeft plan`)")
    if args.distill_weight and not options.estimate_dir:
        raise LightPeftError(NO_TEACHER)
    plan = Plan.load(options.plan_path) if options.plan_path else None
    # Light-PEFT's plans continue from the estimated PEFT and head weights (and distill from its model if asked)
    est = Estimate.load(options.estimate_dir) if options.estimate_dir else None
    init_state = initial_state(est, plan) if est else None
    teacher = estimation_teacher(model_cfg, est, args.seed) if est and args.distill_weight else None
    summary = train(model_cfg, data_cfg, peft_cfg, args, plan=plan, init_state=init_state,
                    overwrite=options.overwrite_output_dir, resume=options.resume, teacher=teacher,
                    inputs={"--plan_path": options.plan_path, "--estimate_dir": options.estimate_dir}).summary
    print(f"{summary['method']}: best {summary['metric']} {summary['best_metric']:.4f}, final "
          f"{summary['final_metric']:.4f}, trainable params {summary['trainable_params']:,}, "
          f"train {summary['train_seconds_excluding_eval']:.1f}s -> {args.output_dir}")
    return 0


def _predict(cfg) -> int:
    from lightpeft.stages.predict import predictions_table, run_predict

    rows = run_predict(cfg)
    if cfg.output_file:
        print(f"{len(rows)} predictions -> {cfg.output_file}")
    else:
        print(predictions_table(rows))
    return 0


def _export(cfg) -> int:
    from lightpeft.stages.export import export_run, read_export

    out = export_run(cfg.run_dir, cfg.output_dir, cfg.model_name_or_path, cfg.overwrite_output_dir)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    loader = read_export(out)["loader"]  # plain transformers for a standard checkpoint (uniform plans)
    print(f"export: {out} ({size / 2**20:.1f} MB); load with {loader}({str(out)!r})")
    return 0


def _bench(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, search_cfg, bench_cfg, options, args) -> int:
    from lightpeft.bench.report import markdown
    from lightpeft.bench.runner import run_bench

    bench = run_bench(model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, bench_cfg, args,
                      overwrite=options.overwrite_output_dir, search_cfg=search_cfg)
    print(markdown(bench))
    return 0


def _suite(options) -> int:
    from lightpeft.bench.suite import run_suite

    summary = run_suite(options)
    print(summary["markdown"])
    return 0


HANDLERS = {"run": _run, "estimate": _estimate, "plan": _plan, "search": _search, "train": _train, "bench": _bench,
            "predict": _predict, "export": _export, "suite": _suite}

if __name__ == "__main__":
    sys.exit(main())
