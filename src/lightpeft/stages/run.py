"""`lightpeft run`: estimate -> plan -> prune -> train in one output directory, and the vanilla baseline beside it
when asked, with a summary table of both.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lightpeft.config import DataConfig, LightPeftTrainingArguments, ModelConfig, RunOptions
from lightpeft.core.peft_kinds import PeftSettings, get_kind
from lightpeft.core.plan import PLAN_FILE, Plan
from lightpeft.core.training import planned_steps
from lightpeft.io import write_json
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig
from lightpeft.methods.light_peft.estimate import META_FILE, Estimate
from lightpeft.methods.light_peft.planning import initial_state, make_plan
from lightpeft.report import markdown_table
from lightpeft.stages.estimate import estimate
from lightpeft.stages.outputs import claimed_output_dir, is_main_process, stage_inputs
from lightpeft.stages.prepare import Prepared, prepare
from lightpeft.stages.resume import resumable_staging, stage_settings
from lightpeft.stages.run_dir import RUN_FILE
from lightpeft.stages.train import RunResult, train_into

log = logging.getLogger(__name__)


def run(model_cfg: ModelConfig, data_cfg: DataConfig, peft_cfg: PeftSettings, est_cfg: EstimateConfig,
        plan_cfg: PlanConfig, args: LightPeftTrainingArguments, options: RunOptions | None = None,
        prepared: Prepared | None = None) -> RunResult:
    """Estimate, plan, prune and train in one output directory (and the vanilla baseline beside it if asked).

    Layout: `estimate/`, `plan.json`, the trained run at the top level, `vanilla/` (optional), `summary.md`.
    """
    options = options or RunOptions()
    inputs = stage_inputs(model_cfg, data_cfg)
    with claimed_output_dir(args.output_dir, options.overwrite_output_dir, inputs) as out:
        prepared = prepared or prepare(model_cfg, data_cfg)
        settings = stage_settings("run", args, (model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg), inputs,
                                  compare_vanilla=options.compare_vanilla)
        with resumable_staging(out, "run", settings, options.resume) as stage_dir:
            result = _run_into(stage_dir, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args, options, prepared)
    return result


def _run_into(stage_dir, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args, options, prepared) -> RunResult:
    est, plan = _estimate_and_plan(stage_dir, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args, prepared)
    result = train_into(stage_dir, model_cfg, prepared, peft_cfg, training_args(args, est_cfg, est, prepared), plan,
                        initial_state(est, plan))
    light = result.summary
    light["estimate_seconds"] = est.meta["stats"]["seconds"]
    rows = [_table_row("Light-PEFT", light)]
    if options.compare_vanilla:
        vanilla_dir = stage_dir / "vanilla"
        vanilla_dir.mkdir(exist_ok=True)  # a resumed run may have begun it
        vanilla = train_into(vanilla_dir, model_cfg, prepared, peft_cfg, args, None, None).summary
        rows.insert(0, _table_row(f"vanilla {get_kind(peft_cfg.peft).label}", vanilla))
    light["summary_table"] = summary_table(rows)
    if is_main_process():
        (stage_dir / "summary.md").write_text(light["summary_table"] + "\n")
        write_json(stage_dir / RUN_FILE, light)
    return result


def _estimate_and_plan(stage_dir: Path, model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg, args, prepared):
    """The estimate and plan of the run: the ones a resumed run finished (in `stage_dir`), else made and saved."""
    est_dir, plan_file = stage_dir / "estimate", stage_dir / PLAN_FILE
    if (est_dir / META_FILE).is_file():  # `Estimate.save` is atomic: there means complete
        log.info("reusing the finished estimate in %s", est_dir)
        est = Estimate.load(est_dir)
    else:
        est = estimate(model_cfg, data_cfg, peft_cfg, est_cfg, args, prepared, save=False, plan_cfg=plan_cfg)
        if is_main_process():
            est.save(est_dir)
    if plan_file.is_file():
        log.info("reusing the plan %s", plan_file)
        return est, Plan.load(plan_file)
    plan = make_plan(est, plan_cfg)
    if is_main_process():
        plan.save(plan_file)
    return est, plan


def training_args(args, est_cfg: EstimateConfig, est, prepared: Prepared):
    """The training stage's arguments: the run's own, or with `--train_schedule remaining` cut to the steps that
    estimation left of the run (the PEFT weights continue from it)."""
    if est_cfg.train_schedule == "full":
        return args
    remaining = planned_steps(args, len(prepared.train_ds)) - est.meta["steps"]
    return dataclasses.replace(args, max_steps=max(1, remaining))


def _table_row(name: str, summary: dict) -> list:
    counts = summary["plan_counts"]
    return [name, summary["best_metric"], summary["final_metric"], summary["foundation_params"],
            counts["foundation_pruned_fraction"], summary["trainable_params"], summary.get("estimate_seconds"),
            summary["train_seconds_excluding_eval"], summary["peak_rss_mb"]]


def summary_table(rows: list[list]) -> str:
    headers = ["arm", "best dev metric", "final dev metric", "foundation params", "foundation pruned",
               "trainable params", "estimate s", "train s (excl. eval)", "peak RSS MB"]
    return markdown_table(headers, rows)
