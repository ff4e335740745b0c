"""The estimation stage (`lightpeft estimate`): a short joint run of gates and PEFT modules on many linears,
written as an estimate directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lightpeft.config import DataConfig, LightPeftTrainingArguments, ModelConfig, to_dict
from lightpeft.core import arch
from lightpeft.core.peft_kinds import PeftSettings
from lightpeft.core.training import planned_steps
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig
from lightpeft.methods.light_peft.estimate import Estimate, estimation_steps, run_estimation
from lightpeft.methods.light_peft.plan_search import split_for_search
from lightpeft.stages.outputs import claimed_output_dir, is_main_process, stage_inputs
from lightpeft.stages.prepare import Prepared, load_task_base, prepare
from lightpeft.stages.resume import resumable_staging, stage_settings
from lightpeft.tracking import TRACKING_DIR, tensorboard_dir

log = logging.getLogger(__name__)


def estimate(model_cfg: ModelConfig, data_cfg: DataConfig, peft_cfg: PeftSettings, est_cfg: EstimateConfig,
             args: LightPeftTrainingArguments, prepared: Prepared | None = None, save: bool = True,
             overwrite: bool = False, plan_cfg: PlanConfig | None = None,
             tracking_dir: str | Path | None = None, resume: bool = True) -> Estimate:
    """Estimation stage; writes `args.output_dir` (an estimate directory) when `save`. `plan_cfg`'s ratios define
    the keep sets that `--mask_convergence` watches. With `--report_to tensorboard`, the events (gate statistics
    included) go to `tracking_dir` (default: `tensorboard/` in the estimate directory). `resume`: see `resume` (an
    estimate is written only once complete, so an interrupted one is redone; a changed setting is refused as for
    training)."""
    if not save:
        with tensorboard_dir(tracking_dir or Path(args.output_dir) / TRACKING_DIR, args):
            return _estimate(model_cfg, data_cfg, peft_cfg, est_cfg, args, prepared, plan_cfg)
    inputs = stage_inputs(model_cfg, data_cfg)
    with claimed_output_dir(args.output_dir, overwrite, inputs) as out:
        settings = stage_settings("estimate", args, (model_cfg, data_cfg, peft_cfg, est_cfg, plan_cfg or PlanConfig()),
                                  inputs)
        with resumable_staging(out, "estimate", settings, resume) as stage_dir:
            with tensorboard_dir(tracking_dir or stage_dir / TRACKING_DIR, args):
                result = _estimate(model_cfg, data_cfg, peft_cfg, est_cfg, args, prepared, plan_cfg)
            if is_main_process():
                result.write(stage_dir)
    return result


def _estimate(model_cfg, data_cfg, peft_cfg, est_cfg, args, prepared, plan_cfg) -> Estimate:
    prepared = prepared or prepare(model_cfg, data_cfg)
    base = load_task_base(model_cfg, prepared.task, seed=args.seed)
    steps = estimation_steps(est_cfg, planned_steps(args, len(prepared.train_ds)))
    train_ds, holdout, not_scored = split_for_search(prepared.train_ds, est_cfg.plan_search_examples, args.seed,
                                                     prepared.task.kind)
    log.info("estimation: %d steps of masks + %s on %d linears%s", steps, peft_cfg.peft,
             len(arch.linear_names(base.model, peft_cfg.estimate_roles())),
             f", then candidate plans scored on {len(holdout)} held-out rows" if holdout is not None else "")
    result = run_estimation(base, prepared.tokenizer, train_ds, prepared.trainer_parts(), args, peft_cfg,
                            est_cfg, steps, plan_cfg, task_kind=prepared.task.kind, holdout=holdout,
                            metric_kind=prepared.task.metric_kind)
    if not_scored:
        result.meta["plan_candidates"] = not_scored
    result.meta["configs"] = to_dict(model_cfg, data_cfg, peft_cfg, est_cfg)
    return result
