"""`lightpeft run`: estimate -> plan -> prune -> train in one output directory (`--method prune_peft`: search ->
retrain the searched plan from scratch), and the vanilla baseline beside it when asked, with a summary table.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lightpeft.config import DataConfig, LightPeftTrainingArguments, ModelConfig, RunOptions
from lightpeft.core.distill import check_distillable
from lightpeft.core.peft_kinds import PeftSettings, get_kind
from lightpeft.core.plan import PLAN_FILE, Plan
from lightpeft.core.training import planned_steps
from lightpeft.errors import LightPeftError
from lightpeft.io import write_json
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig
from lightpeft.methods.light_peft.estimate import META_FILE, Estimate
from lightpeft.methods.light_peft.planning import initial_state, make_plan
from lightpeft.methods.light_peft.teacher import estimation_model
from lightpeft.methods.light_peft.uniform import check_uniform_peft
from lightpeft.methods.prune_peft.config import SearchConfig
from lightpeft.report import markdown_table
from lightpeft.stages.estimate import estimate
from lightpeft.stages.outputs import claimed_output_dir, is_main_process, stage_inputs, staging
from lightpeft.stages.prepare import Prepared, load_task_base, prepare
from lightpeft.stages.resume import resumable_staging, stage_settings
from lightpeft.stages.run_dir import RUN_FILE
from lightpeft.stages.search import search, write_search_dir
from lightpeft.stages.train import RunResult, TeacherFactory, train_into
from lightpeft.tracking import TRACKING_DIR

log = logging.getLogger(__name__)


def run(model_cfg: ModelConfig, data_cfg: DataConfig, peft_cfg: PeftSettings, est_cfg: EstimateConfig,
        plan_cfg: PlanConfig, args: LightPeftTrainingArguments, options: RunOptions | None = None,
        prepared: Prepared | None = None, search_cfg: SearchConfig | None = None) -> RunResult:
    """Estimate, plan, prune and train in one output directory (and the vanilla baseline beside it if asked).

    Layout: `estimate/` (`search/` with `options.method == "prune_peft"`), `plan.json`, the trained run at the top
    level, `vanilla/` (optional), `summary.md`.
    """
    options = options or RunOptions()
    check_uniform_peft(plan_cfg, peft_cfg.peft)  # before the estimation, not after it
    if args.distill_weight and options.method != "light_peft":
        raise LightPeftError(f"--distill_weight distills from Light-PEFT's estimation model; --method "
                             f"{options.method} retrains from scratch without one: drop --distill_weight")
    if options.method in ("prune_peft", "light_peft+prune_peft"):
        search_cfg = search_cfg or SearchConfig()
        inputs = stage_inputs(model_cfg, data_cfg, criteria_assignment=search_cfg.assignment_file)
        with claimed_output_dir(args.output_dir, options.overwrite_output_dir, inputs) as out:
            prepared = prepared or prepare(model_cfg, data_cfg)
            with staging(out, "run") as stage_dir:
                return _search_and_train(stage_dir, model_cfg, data_cfg, peft_cfg, search_cfg, args, options,
                                         prepared, (est_cfg, plan_cfg))
    inputs = stage_inputs(model_cfg, data_cfg)
    with claimed_output_dir(args.output_dir, options.overwrite_output_dir, inputs) as out:
        prepared = prepared or prepare(model_cfg, data_cfg)
        if args.distill_weight:  # before the estimation, not after it
            check_distillable(prepared.task.kind)
        settings = stage_settings("run", args, (model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg), inputs,
                                  compare_vanilla=options.compare_vanilla)
        with resumable_staging(out, "run", settings, options.resume) as stage_dir:
            result = _run_into(stage_dir, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args, options, prepared)
    return result


def _run_into(stage_dir, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args, options, prepared) -> RunResult:
    est, plan = _estimate_and_plan(stage_dir, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args, prepared)
    train_args = training_args(args, est_cfg, est, len(prepared.train_ds))
    result = train_into(stage_dir, model_cfg, prepared, peft_cfg, train_args, plan, initial_state(est, plan),
                        estimation_teacher(model_cfg, est, args.seed))
    light = result.summary
    light["estimate_seconds"] = est.meta["stats"]["seconds"]
    rows = [_table_row("Light-PEFT", light)]
    if options.compare_vanilla:
        vanilla_dir = stage_dir / "vanilla"
        vanilla_dir.mkdir(exist_ok=True)  # a resumed run may have begun it
        vanilla = train_into(vanilla_dir, model_cfg, prepared, peft_cfg, without_distillation(args), None,
                             None).summary
        rows.insert(0, _table_row(f"vanilla {get_kind(peft_cfg.peft).label}", vanilla))
    light["summary_table"] = summary_table(rows)
    if is_main_process():
        (stage_dir / "summary.md").write_text(light["summary_table"] + "\n")
        write_json(stage_dir / RUN_FILE, light)
    return result


def _search_and_train(stage_dir, model_cfg, data_cfg, peft_cfg, search_cfg, args, options, prepared,
                      light_cfgs) -> RunResult:
    """PrunePEFT's search then a retrain from scratch; with `light_peft+prune_peft`, Light-PEFT's estimate first
    and the search on the backbone its plan prunes (the plan's PEFT modules are replaced by the searched ones)."""
    structure, estimate_seconds = None, None
    if options.method == "light_peft+prune_peft":
        est_cfg, plan_cfg = light_cfgs
        est = estimate(model_cfg, data_cfg, peft_cfg, est_cfg, args, prepared, save=False, plan_cfg=plan_cfg)
        if is_main_process():
            est.save(stage_dir / "estimate")
        structure, estimate_seconds = make_plan(est, plan_cfg), est.meta["stats"]["seconds"]
    outcome = search(model_cfg, data_cfg, peft_cfg, search_cfg, args, prepared, save=False, structure=structure)
    if is_main_process():
        (stage_dir / "search").mkdir()
        write_search_dir(stage_dir / "search", outcome)
    result = train_into(stage_dir, model_cfg, prepared, peft_cfg, args, outcome.plan, None)  # from scratch
    summary = result.summary
    summary["search_seconds"] = outcome.record["seconds"] + (estimate_seconds or 0.0)
    summary["estimate_seconds"] = estimate_seconds
    rows = [_table_row("PrunePEFT" if structure is None else "Light-PEFT + PrunePEFT", summary, "search_seconds")]
    if options.compare_vanilla:
        vanilla_dir = stage_dir / "vanilla"
        vanilla_dir.mkdir()
        vanilla = train_into(vanilla_dir, model_cfg, prepared, peft_cfg, args, None, None).summary
        rows.insert(0, _table_row(f"vanilla {get_kind(peft_cfg.peft).label}", vanilla, "search_seconds"))
    summary["summary_table"] = summary_table(rows, "search s" if structure is None else "estimate + search s")
    if is_main_process():
        (stage_dir / "summary.md").write_text(summary["summary_table"] + "\n")
        write_json(stage_dir / RUN_FILE, summary)
    return result


def _estimate_and_plan(stage_dir: Path, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args, prepared):
    """The estimate and plan of the run: the ones a resumed run finished (in `stage_dir`), else made and saved."""
    est_dir, plan_file = stage_dir / "estimate", stage_dir / PLAN_FILE
    if (est_dir / META_FILE).is_file():  # `Estimate.save` is atomic: there means complete
        log.info("reusing the finished estimate in %s", est_dir)
        est = Estimate.load(est_dir)
    else:
        est = estimate(model_cfg, data_cfg, peft_cfg, est_cfg, args, prepared, save=False, plan_cfg=plan_cfg,
                       tracking_dir=stage_dir / TRACKING_DIR / "estimate")
        if is_main_process():
            est.save(est_dir)
    if plan_file.is_file():
        log.info("reusing the plan %s", plan_file)
        return est, Plan.load(plan_file)
    plan = make_plan(est, plan_cfg)
    if is_main_process():
        plan.save(plan_file)
    return est, plan


def estimation_teacher(model_cfg: ModelConfig, est: Estimate, seed: int) -> TeacherFactory:
    """`--distill_weight`'s teacher: the estimation model as it finished, rebuilt from a fresh base (loaded with the
    run's seed, as estimation loaded it) and the estimate (see `methods.light_peft.teacher`)."""
    return lambda prepared: estimation_model(load_task_base(model_cfg, prepared.task, seed=seed), est)


def without_distillation(args):
    """The vanilla baseline's arguments: it has no estimation model to distill from."""
    return dataclasses.replace(args, distill_weight=0.0) if args.distill_weight else args


def training_args(args, est_cfg: EstimateConfig, est, train_rows: int):
    """The training stage's arguments: the run's own, or with `--train_schedule remaining` cut to the steps that
    estimation left of a run on `train_rows` rows (the PEFT weights continue from it)."""
    if est_cfg.train_schedule == "full":
        return args
    remaining = planned_steps(args, train_rows) - est.meta["steps"]
    return dataclasses.replace(args, max_steps=max(1, remaining))


def _table_row(name: str, summary: dict, method_seconds: str = "estimate_seconds") -> list:
    counts = summary["plan_counts"]
    return [name, summary["best_metric"], summary["final_metric"], summary["foundation_params"],
            counts["foundation_pruned_fraction"], summary["trainable_params"], summary.get(method_seconds),
            summary["train_seconds_excluding_eval"], summary["peak_rss_mb"]]


def summary_table(rows: list[list], method_seconds: str = "estimate s") -> str:
    headers = ["arm", "best dev metric", "final dev metric", "foundation params", "foundation pruned",
               "trainable params", method_seconds, "train s (excl. eval)", "peak RSS MB"]
    return markdown_table(headers, rows)
