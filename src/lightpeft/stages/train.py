"""The training stage (`lightpeft train`): vanilla PEFT without a plan, the pruned model with one.

Every call builds a fresh model from the untouched base checkpoint, prunes it to the plan, injects the plan's PEFT
modules and starts a fresh optimizer; it writes a run directory (see `run_dir`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pickle
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from lightpeft.config import DataConfig, LightPeftTrainingArguments, ModelConfig, to_dict
from lightpeft.core.build import build_model, fresh_backbone_state, vanilla_plan
from lightpeft.core.distill import DistillationTrainer, check_distillable, module_megabytes
from lightpeft.core.peft_kinds import PeftSettings, hf_model
from lightpeft.core.peft_modules import export_state
from lightpeft.core.plan import Plan
from lightpeft.core.training import make_trainer, measured
from lightpeft.data import TaskData
from lightpeft.errors import LightPeftError, refused_pickle
from lightpeft.fingerprint import tensors_fingerprint
from lightpeft.io import write_json
from lightpeft.metrics import GREATER_IS_BETTER, MAIN_METRIC
from lightpeft.provenance import command_line
from lightpeft.stages.outputs import Inputs, claimed_output_dir, is_main_process, stage_inputs
from lightpeft.stages.prepare import Prepared, load_task_base, prepare
from lightpeft.stages.resume import MarkCompleteCheckpoints, last_checkpoint, resumable_staging, stage_settings
from lightpeft.stages.run_dir import RUN_FILE, RUN_SCHEMA_VERSION, RUN_WEIGHTS_FILE, load_pruned, read_run
from lightpeft.tracking import TRACKING_DIR, tensorboard_dir

log = logging.getLogger(__name__)

# builds the distillation teacher from the prepared task, only when the training actually runs
TeacherFactory = Callable[[Prepared], torch.nn.Module]
NO_TEACHER = ("--distill_weight needs a teacher: the Light-PEFT estimation model; pass --plan_path with the "
              "--estimate_dir the plan was made from, or use `lightpeft run`")


@dataclass
class RunResult:
    """What a training stage leaves in memory: its summary (run.json), plan and trained peft model."""

    summary: dict
    plan: Plan
    model: torch.nn.Module


def train(model_cfg: ModelConfig, data_cfg: DataConfig, peft_cfg: PeftSettings, args: LightPeftTrainingArguments,
          plan: Plan | str | None = None, init_state: dict[str, torch.Tensor] | None = None,
          prepared: Prepared | None = None, overwrite: bool = False, output_dir: str | Path | None = None,
          inputs: Inputs | None = None, resume: bool = True, teacher: TeacherFactory | None = None) -> RunResult:
    """Training stage: the pruned model of any `plan` (whichever method made it), or vanilla PEFT without one.

    The plan says which PEFT kind sits on which module; `peft_cfg` only shapes the vanilla plan made when none is
    given. `init_state`: plan-shaped PEFT and head weights to start from (Light-PEFT: `initial_state(estimate,
    plan)`); without it they start fresh. Writes a run directory and returns the summary (also written as
    run.json), the plan and the trained model. `inputs`: other paths the caller read for this run, by flag (e.g.
    `--estimate_dir`); the output directory may not be or hold any of them, nor the base, data or plan file.
    `resume`: continue an interrupted run of the same settings from its last Trainer checkpoint (see `resume`).
    `teacher`: builds the frozen model whose outputs are soft targets with `args.distill_weight` > 0 (Light-PEFT:
    `stages.run.estimation_teacher`).
    """
    if args.distill_weight and teacher is None:
        raise LightPeftError(NO_TEACHER)
    plan_path = plan if isinstance(plan, (str, Path)) else None
    inputs = {**stage_inputs(model_cfg, data_cfg, plan_path=plan_path), **(inputs or {})}
    with claimed_output_dir(output_dir or args.output_dir, overwrite, inputs) as out:
        prepared = prepared or prepare(model_cfg, data_cfg)
        if args.distill_weight:
            check_distillable(prepared.task.kind)
        plan_print = tensors_fingerprint({}) if plan is None else _plan_fingerprint(plan)
        settings = stage_settings("train", args, (model_cfg, data_cfg, peft_cfg), inputs, plan=plan_print,
                                  init_state=tensors_fingerprint(init_state) if init_state else None)
        with resumable_staging(out, "run", settings, resume) as stage_dir:
            return train_into(stage_dir, model_cfg, prepared, peft_cfg, args, plan, init_state, teacher)


def _plan_fingerprint(plan: Plan | str | Path) -> str | None:
    if isinstance(plan, Plan):
        return hashlib.sha256(json.dumps(plan.to_json(), sort_keys=True, default=str).encode()).hexdigest()[:16]
    return None  # a plan file: its contents are among the input files


def train_into(stage_dir: Path, model_cfg, prepared: Prepared, peft_cfg, args, plan, init_state,
               teacher: TeacherFactory | None = None) -> RunResult:
    """Train into `stage_dir`; an arm a resumed run had finished there is reloaded, one it had begun continues
    from its last complete Trainer checkpoint. `teacher`: see `train` (used only when `args.distill_weight` > 0)."""
    if (stage_dir / RUN_FILE).is_file():  # written last: the arm is complete
        log.info("reusing the finished training in %s", stage_dir)
        return RunResult(read_run(stage_dir), Plan.load(stage_dir / "plan.json"), load_pruned(None, stage_dir))
    base = load_task_base(model_cfg, prepared.task, seed=args.seed)
    plan_path = plan if isinstance(plan, (str, Path)) else None
    if plan_path:
        plan = Plan.load(plan_path)
    plan = plan or vanilla_plan(base, peft_cfg)
    model = build_model(base, plan, init_state, source=f"plan file {plan_path}" if plan_path else "the plan")
    fresh_state = fresh_backbone_state(base, model)
    stage_args = _stage_args(args, stage_dir / "trainer")
    distill, distillation = _distillation(args, teacher, prepared)
    with tensorboard_dir(stage_dir / TRACKING_DIR / "train", args):  # --report_to tensorboard: kept in the run
        trainer = make_trainer(model, stage_args, prepared.train_ds, prepared.eval_ds, prepared.tokenizer,
                               prepared.trainer_parts(), callbacks=[MarkCompleteCheckpoints()], **distill)
    checkpoint = last_checkpoint(stage_dir / "trainer")
    if checkpoint:
        log.info("resuming training from %s", checkpoint)
    with measured() as stats:
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except pickle.UnpicklingError as err:  # optimizer / scheduler / RNG files are read with weights_only=True
            raise refused_pickle(f"checkpoint {checkpoint}", err, "this run did not write it: pass --resume false "
                                 "to discard the staging area and start over") from None
    in_training = [h for h in trainer.state.log_history if "eval_runtime" in h]  # evaluations inside train()
    stats.extra["eval_seconds"] = sum(h["eval_runtime"] for h in in_training)
    final = in_training[-1] if in_training else trainer.evaluate()
    summary = _summarise(plan, prepared.task, model, trainer, stats, in_training or [final], final)
    summary["base_path"] = str(Path(base.path).resolve())  # `load_pruned` / `lightpeft predict` default
    summary["tokenizer_path"] = model_cfg.tokenizer_name
    summary["command"] = command_line()  # the export's model card quotes it
    summary["task"].update(prepared.task_record())
    summary["distillation"] = distillation
    weights = {**export_state(model), **fresh_state}
    summary["weights_fingerprint"] = tensors_fingerprint(weights)  # `run_dir` refuses a swapped weights file
    if is_main_process():
        plan.save(stage_dir / "plan.json")
        save_file(weights, stage_dir / RUN_WEIGHTS_FILE)
        write_json(stage_dir / "log_history.json",
                   {"schema_version": RUN_SCHEMA_VERSION, "log_history": trainer.state.log_history})
        write_json(stage_dir / "run_config.json",
                   {"schema_version": RUN_SCHEMA_VERSION, **to_dict(model_cfg, peft_cfg, args)})
        write_json(stage_dir / RUN_FILE, summary)
    _cleanup_trainer_dir(stage_dir / "trainer")
    return RunResult(summary, plan, model.eval())


def _distillation(args, teacher: TeacherFactory | None, prepared: Prepared) -> tuple[dict, dict | None]:
    """`make_trainer`'s extra arguments for distillation, and run.json's record of it (None without). Weight 0 keeps
    the plain Trainer, so a run without distillation is exactly the run it was before the option existed."""
    if not args.distill_weight:
        return {}, None
    if teacher is None:
        raise LightPeftError(NO_TEACHER)
    model = teacher(prepared)
    record = {"weight": args.distill_weight, "temperature": args.distill_temperature,
              "teacher": "estimation model (unpruned, gates as learned, eval mode)",
              "teacher_params": sum(p.numel() for p in model.parameters()), "teacher_mb": module_megabytes(model)}
    return {"cls": DistillationTrainer, "teacher": model, "distill_weight": args.distill_weight,
            "distill_temperature": args.distill_temperature}, record


def _stage_args(args, output_dir: Path):
    return dataclasses.replace(args, output_dir=str(output_dir))


def _cleanup_trainer_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _summarise(plan: Plan, task: TaskData, model, trainer, stats, eval_history: list, final: dict) -> dict:
    key = "eval_" + MAIN_METRIC[task.metric_kind]
    scores = [h[key] for h in eval_history if key in h]
    greater_is_better = GREATER_IS_BETTER[task.metric_kind]  # perplexity: lower is better
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # the backbone's frozen weights: everything in it but the PEFT modules (the head lives outside the backbone)
    foundation = sum(p.numel() for p in hf_model(model).base_model.parameters() if not p.requires_grad)
    return {
        "schema_version": RUN_SCHEMA_VERSION,
        "method": plan.method,
        "peft": plan.peft,
        "task": {"name": task.name, "num_labels": task.num_labels, "metric_kind": task.metric_kind,
                 "regression": task.is_regression, "label_names": task.label_names, "has_pair": task.has_pair,
                 "train_rows": len(trainer.train_dataset), "eval_rows": len(trainer.eval_dataset)},
        "base_fingerprint": plan.base_fingerprint,
        "metric": MAIN_METRIC[task.metric_kind],
        "greater_is_better": greater_is_better,
        "final_metric": final.get(key),
        "best_metric": (max(scores) if greater_is_better else min(scores)) if scores else None,
        "final_eval": final,
        "foundation_params": foundation,
        "trainable_params": trainable,
        "train_seconds": stats.seconds,
        "train_seconds_excluding_eval": stats.seconds - stats.extra["eval_seconds"],
        "peak_rss_mb": stats.peak_rss_mb,
        "start_rss_mb": stats.start_rss_mb,
        "peak_is_stage_only": stats.peak_is_stage_only,
        "peak_cuda_mb": stats.peak_cuda_mb,
        "optimizer_steps": trainer.state.global_step,
        "plan_counts": plan.counts,
        "plan_ratios": plan.ratios,
        "environment": environment(),
    }


def environment() -> dict:
    import peft
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "device": "cuda:" + torch.cuda.get_device_name() if torch.cuda.is_available()
            else f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)", "machine": platform.machine()}
