"""The public stages: estimate -> make_plan -> prune -> train, and `run` chaining them.

Physical pruning is a checkpoint boundary: the training stage always builds a fresh model from the untouched base
checkpoint, prunes it, injects PEFT (LoRA or adapters) as the plan says and starts a fresh optimizer (never
resizing live weights). Loading run directories back lives in `runs`, exporting them in `export`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, set_seed
from transformers import Conv1D

from . import arch
from .config import (DataConfig, EstimateConfig, LightPeftTrainingArguments, ModelConfig, PeftSettings,
                     PlanConfig, RunOptions, to_dict)
from .budget import block_costs, lowest_peft_block, solve_budget, train_step_cost
from .data import TaskData, check_labels_fit, load_task, tokenize_task
from .data.task import LABEL
from .errors import LightPeftError
from .estimate import Estimate, estimation_steps, run_estimation
from .heads import check_kind, init_regression_bias, kind_of_model, meta_task_model
from .io import atomic_path, write_json
from .models import BaseModel, load_base, load_config, load_tokenizer
from .peft_modules import (SLICED_WITH_STRUCTURE, export_state, head_modules, hf_model, import_state,
                           inject_for_plan, unit_params)
from .plan import Plan, choose, kv_heads_of
from .report import markdown_table
from .surgery import prune_backbone, slice_peft_state
from .metrics import GREATER_IS_BETTER, MAIN_METRIC
from .training import make_trainer, measured, planned_steps, trainer_parts

log = logging.getLogger(__name__)

RUN_FILE = "run.json"  # written last: its presence marks a finished run
RUN_SCHEMA_VERSION = 2  # 2: `peft` type, `base_path`, task `has_pair` / `max_seq_length`
WEIGHTS_FILE = "peft_weights.safetensors"
FRESH_PREFIX = "fresh."  # backbone weights the checkpoint lacked (random init), kept so reloads match
PEFT_NAMES = {"lora": "LoRA", "adapter": "adapter"}


# ----------------------------------------------------------------------------------------------- planning


def make_plan(estimate: Estimate | str | Path, cfg: PlanConfig | None = None) -> Plan:
    """Choose survivors from an estimate (object or directory) at the ratios of `cfg` (paper defaults), or at
    the smallest ratios that meet the budget `cfg` names (`target_train_speedup`, `target_params_fraction`)."""
    cfg = cfg or PlanConfig()
    if not isinstance(estimate, Estimate):
        estimate = Estimate.load(estimate)
    config = _config_from_meta(estimate.meta)
    kind = estimate.meta.get("task_kind", "classification")
    budget = None
    if cfg.target_train_speedup is not None or cfg.target_params_fraction is not None:
        cfg, budget = solve_budget(lambda c: structure_plan(estimate, c), config, cfg, kind)
    plan = structure_plan(estimate, cfg)
    if budget:
        plan.ratios["budget"] = budget
    roles = {name: tuple(role) for name, role in estimate.meta["module_roles"].items()}
    plan.counts = count_plan(plan, config, estimate_modules=roles, kind=kind)
    return plan


def structure_plan(estimate: Estimate, cfg: PlanConfig) -> Plan:
    """The plan `cfg`'s ratios give on `estimate`, without parameter counts (cheap: no model is built)."""
    meta = estimate.meta
    roles = {name: tuple(role) for name, role in meta["module_roles"].items()}
    num_kv_heads = meta.get("num_kv_heads", meta["num_heads"])
    group_size = meta["num_heads"] // num_kv_heads
    heads, ffn, modules = choose(estimate.head_masks, estimate.ffn_masks, estimate.module_names,
                                 estimate.module_importance, estimate.rank_importance, cfg, roles, group_size,
                                 drop_widthless=SLICED_WITH_STRUCTURE[meta["peft"]])
    return Plan(
        base_fingerprint=estimate.fingerprint, model_type=meta["model_type"], num_layers=meta["num_layers"],
        num_heads=meta["num_heads"], head_size=meta["head_size"], ffn_size=meta["ffn_size"], heads=heads, ffn=ffn,
        peft=meta["peft"], peft_config=meta["peft_config"], peft_modules=modules, kind="light-peft",
        ratios=vars(cfg).copy(), num_kv_heads=num_kv_heads, kv_heads=kv_heads_of(heads, group_size),
    )


def vanilla_plan(base: BaseModel, peft_cfg: PeftSettings) -> Plan:
    """Plain PEFT as a plan: nothing pruned, full-size PEFT on the vanilla targets (the paper's baseline).

    LoRA: r on `vanilla_targets` (q, v); adapters: every role of `adapter_placement`, full bottleneck.
    """
    model, config = base.model, base.model.config
    layers, heads, ffn = arch.num_layers(model), arch.num_heads(config), arch.ffn_size(config)
    kv_heads = arch.num_kv_heads(config)
    method = peft_cfg.method_config()
    modules = {n: {"layer": layer, "role": role, "units": list(range(method["r"]))}
               for n, (layer, role) in arch.linear_roles(model, peft_cfg.vanilla_roles()).items()}
    plan = Plan(
        base_fingerprint=base.fingerprint, model_type=config.model_type, num_layers=layers, num_heads=heads,
        head_size=arch.head_size(config), ffn_size=ffn, heads=[list(range(heads))] * layers,
        ffn=[list(range(ffn))] * layers, peft=peft_cfg.peft, peft_config=method, peft_modules=modules,
        kind="vanilla", num_kv_heads=kv_heads, kv_heads=[list(range(kv_heads))] * layers,
    )
    plan.counts = count_plan(plan, config, kind=kind_of_model(model))
    return plan


def _config_from_meta(meta: dict):
    config = dict(meta["config"])
    return AutoConfig.for_model(config.pop("model_type"), **config)


def count_plan(plan: Plan, config, estimate_modules: dict | None = None, kind: str = "classification") -> dict:
    """Parameter and linear-FLOP counts before/after pruning, from a weightless (meta-device) task model of `kind`
    (the class fixes the PEFT module names and what the backbone holds, e.g. BERT's QA model has no pooler)."""
    model = meta_task_model(config, kind)
    before = _structure_counts(model, plan.peft, {n: plan.units_per_module for n in (estimate_modules or {})})
    prune_backbone(model, plan)
    after = _structure_counts(model, plan.peft, {n: len(e["units"]) for n, e in plan.peft_modules.items()})
    return {
        "foundation_params_before": before["foundation"],
        "foundation_params_after": after["foundation"],
        "foundation_pruned_fraction": 1 - after["foundation"] / before["foundation"],
        "layer_linear_flops_per_token_before": before["flops"],
        "layer_linear_flops_per_token_after": after["flops"],
        "peft_params_estimate": before["peft"],
        "peft_params_after": after["peft"],
        "peft_modules_after": len(plan.peft_modules),
        "counted_train_speedup_seq128": _counted_train_speedup(plan, config, kind),
        "heads_kept": sum(map(len, plan.heads)),
        "ffn_neurons_kept": sum(map(len, plan.ffn)),
    }


def _counted_train_speedup(plan: Plan, config, kind: str) -> float:
    """Training-step FLOPs of PEFT on the unpruned model (backward to block 0) over this plan's (see budget.py)."""
    full = dataclasses.replace(plan, heads=[list(range(plan.num_heads))] * plan.num_layers,
                               ffn=[list(range(plan.ffn_size))] * plan.num_layers,
                               kv_heads=[list(range(plan.num_kv_heads or plan.num_heads))] * plan.num_layers)
    before = train_step_cost(block_costs(full, config, 128, kind), 0)
    return before / train_step_cost(block_costs(plan, config, 128, kind), lowest_peft_block(plan))


def _structure_counts(model, peft: str, units: dict[str, int]) -> dict:
    backbone = model.base_model
    layers = backbone.get_submodule(arch.get_arch(model).layers)
    linear_weights = sum(m.weight.numel() for m in layers.modules() if isinstance(m, (torch.nn.Linear, Conv1D)))
    peft_params = sum(count * unit_params(peft, model.get_submodule(name)) for name, count in units.items())
    return {"foundation": sum(p.numel() for p in backbone.parameters()), "flops": 2 * linear_weights,
            "peft": peft_params}


# ----------------------------------------------------------------------------------------------- building


def build_model(base: BaseModel, plan: Plan, peft_state: dict[str, torch.Tensor] | None = None):
    """Prune a fresh base physically to `plan`, inject its PEFT, and load `peft_state` (already plan-shaped) if given."""
    plan.check_base(base.fingerprint)
    if peft_state:
        _load_fresh_backbone_weights(base.model, peft_state)
    prune_backbone(base.model, plan)
    model = inject_for_plan(base.model, plan)
    if peft_state:
        import_state(model, {k: v for k, v in peft_state.items() if not k.startswith(FRESH_PREFIX)})
    return model


def prune(base: BaseModel, plan: Plan, estimate: Estimate | None = None):
    """A fresh pruned model for `plan`; with `estimate`, its PEFT modules and head continue from estimation."""
    if estimate is not None:
        _check_estimate_fits(estimate, plan)
    state = slice_peft_state(estimate.peft_state, plan) if estimate is not None else None
    return build_model(base, plan, state)


def _head_prefixes(model) -> tuple[str, ...]:
    """`classifier.`, `score.`, ...: the state-dict prefixes of the model's task heads."""
    return tuple(n + "." for n in head_modules(model))


def _fresh_backbone_state(base: BaseModel, model) -> dict[str, torch.Tensor]:
    heads = _head_prefixes(model)
    state = base.model.state_dict()
    return {FRESH_PREFIX + k: state[k].detach().cpu().clone() for k in base.fresh_keys
            if k in state and not k.startswith(heads)}


def _check_estimate_fits(estimate: Estimate, plan: Plan) -> None:
    if estimate.fingerprint != plan.base_fingerprint:
        raise LightPeftError("the estimate and the plan come from different base checkpoints; pass the estimate "
                             "the plan was made from")
    peft = estimate.meta["peft"]
    unknown = set(plan.peft_modules) - set(estimate.module_names)
    if peft != plan.peft or unknown:
        raise LightPeftError(f"the plan ({plan.peft}) was not made from this estimate ({peft}, "
                             f"{len(unknown)} plan modules unknown to it); pass the estimate the plan was made from")


@torch.no_grad()
def _load_fresh_backbone_weights(model, state: dict[str, torch.Tensor]) -> None:
    """Put the run's copies of weights the checkpoint lacked into `model`, as new tensors (never in place: sibling
    task models built by `runs.load_tasks` share the base's tensors)."""
    for key, tensor in state.items():
        if not key.startswith(FRESH_PREFIX):
            continue
        owner_path, _, attr = key[len(FRESH_PREFIX):].rpartition(".")
        try:
            owner = model.get_submodule(owner_path) if owner_path else model
        except AttributeError:
            continue  # not part of this model (the caller checks the base fingerprint)
        if attr in owner._parameters:
            owner._parameters[attr] = torch.nn.Parameter(tensor.clone(), requires_grad=False)
        elif attr in owner._buffers:
            owner._buffers[attr] = tensor.clone()


# ----------------------------------------------------------------------------------------------- output dirs


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def check_output_dir(path: str | Path | None, overwrite: bool) -> Path:
    if not path:
        raise LightPeftError("no output directory given; pass --output_dir DIR")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LightPeftError(f"--output_dir {path} is a file; pass a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        what = "a finished run" if (path / RUN_FILE).exists() or (path / "estimate.json").exists() else "files"
        raise LightPeftError(f"--output_dir {path} already holds {what}; pass --overwrite_output_dir or another dir")
    return path


@contextlib.contextmanager
def staging(path: Path):
    """Where a stage writes: a temp dir that replaces `path` on success (main process); scratch elsewhere."""
    if is_main_process():
        with atomic_path(path) as tmp:
            tmp.mkdir()
            yield tmp
    else:
        with tempfile.TemporaryDirectory(prefix="lightpeft-rank-") as tmp:
            yield Path(tmp)


# ----------------------------------------------------------------------------------------------- stages


@dataclass
class RunResult:
    """What a training stage leaves in memory: its summary (run.json), plan and trained peft model."""

    summary: dict
    plan: Plan
    model: torch.nn.Module


@dataclass
class Prepared:
    """Task data and tokenizer, loaded once and shared by the stages of a run."""

    task: TaskData
    tokenizer: object
    train_ds: object
    eval_ds: object  # QA: one row per context window, with `example_id` / `offset_mapping` for postprocessing
    max_seq_length: int | None = None
    data_cfg: DataConfig | None = None

    def trainer_parts(self):
        """Collator and metrics of this task (QA scores the eval windows against `task.eval`)."""
        max_answer_length = self.data_cfg.max_answer_length if self.data_cfg else DataConfig.max_answer_length
        return trainer_parts(self.task, self.tokenizer, self.eval_ds, max_answer_length)

    def task_record(self) -> dict:
        """How the data was shaped, for run.json: predict and reload follow it."""
        cfg = self.data_cfg or DataConfig(max_seq_length=self.max_seq_length or DataConfig.max_seq_length)
        record = {"kind": self.task.kind, "max_seq_length": self.max_seq_length}
        if self.task.kind == "qa":
            record.update(doc_stride=cfg.doc_stride, max_answer_length=cfg.max_answer_length)
        if self.task.kind == "causal_lm":
            record["use_chat_template"] = cfg.use_chat_template
        return record


def prepare(model_cfg: ModelConfig, data_cfg: DataConfig) -> Prepared:
    tokenizer = load_tokenizer(model_cfg.model_name_or_path, model_cfg.tokenizer_name)
    task = load_task(data_cfg)
    _check_kind_early(model_cfg, task)
    train_ds, eval_ds = tokenize_task(task, tokenizer, data_cfg.max_seq_length, doc_stride=data_cfg.doc_stride,
                                      use_chat_template=data_cfg.use_chat_template)
    return Prepared(task, tokenizer, train_ds, eval_ds, data_cfg.max_seq_length, data_cfg)


def _check_kind_early(model_cfg: ModelConfig, task: TaskData) -> None:
    """An encoder given prompt/response data fails here, before tokenization or any weights."""
    _, config = load_config(model_cfg.model_name_or_path)
    check_kind(config, task.kind)


def load_task_base(model_cfg: ModelConfig, task: TaskData, seed: int | None = None) -> BaseModel:
    """The base checkpoint as the task model for `task.kind` (see `heads`); a checkpoint that already has a trained
    classification head must match a classification task's labels. `seed` seeds every RNG first, so a fresh head
    (and the PEFT modules injected next) start from the run's `--seed`: the Trainer seeds only once it is built,
    after the model, so without this they came from torch's per-process random seed and `--seed` did not repeat a
    run."""
    if seed is not None:
        set_seed(seed)
    _, config = load_config(model_cfg.model_name_or_path)
    if task.kind in ("classification", "regression"):
        has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        check_labels_fit(task, config.num_labels if has_head else None)
    base = load_base(model_cfg.model_name_or_path, task.num_labels, regression=task.is_regression, kind=task.kind)
    heads = _head_prefixes(base.model)
    fresh_head = any(key.startswith(heads) for key in base.fresh_keys)
    if task.is_regression and fresh_head and len(task.train):  # a checkpoint's trained head keeps its bias
        init_regression_bias(base.model, float(np.mean(task.train[LABEL])))
    return base


def estimate(model_cfg: ModelConfig, data_cfg: DataConfig, peft_cfg: PeftSettings, est_cfg: EstimateConfig,
             args: LightPeftTrainingArguments, prepared: Prepared | None = None, save: bool = True,
             overwrite: bool = False, plan_cfg: PlanConfig | None = None) -> Estimate:
    """Estimation stage; writes `args.output_dir` (an estimate directory) when `save`. `plan_cfg`'s ratios define
    the keep sets that `--mask_convergence` watches."""
    out = check_output_dir(args.output_dir, overwrite) if save else None
    prepared = prepared or prepare(model_cfg, data_cfg)
    base = load_task_base(model_cfg, prepared.task, seed=args.seed)
    steps = estimation_steps(est_cfg, planned_steps(args, len(prepared.train_ds)))
    log.info("estimation: %d steps of masks + %s on %d linears", steps, peft_cfg.peft,
             len(arch.linear_names(base.model, peft_cfg.estimate_roles())))
    result = run_estimation(base, prepared.tokenizer, prepared.train_ds, prepared.trainer_parts(), args, peft_cfg,
                            est_cfg, steps, plan_cfg, task_kind=prepared.task.kind)
    result.meta["configs"] = to_dict(model_cfg, data_cfg, peft_cfg, est_cfg)
    if save and is_main_process():
        result.save(out)
    return result


def train(model_cfg: ModelConfig, data_cfg: DataConfig, peft_cfg: PeftSettings, args: LightPeftTrainingArguments,
          plan: Plan | str | None = None, estimate: Estimate | str | None = None,
          prepared: Prepared | None = None, overwrite: bool = False, output_dir: str | Path | None = None
          ) -> RunResult:
    """Training stage: vanilla PEFT without a plan, the pruned model with one. Writes a run directory.

    With `estimate`, PEFT modules and head continue from estimation (the method); without, they start fresh.
    A plan fixes the PEFT type: `peft_cfg.peft` must agree with it.
    Returns the summary (also written as run.json), the plan and the trained model.
    """
    out = check_output_dir(output_dir or args.output_dir, overwrite)
    prepared = prepared or prepare(model_cfg, data_cfg)
    with staging(out) as stage_dir:
        return _train_into(stage_dir, model_cfg, prepared, peft_cfg, args, plan, estimate)


def _train_into(stage_dir: Path, model_cfg, prepared: Prepared, peft_cfg, args, plan, estimate) -> RunResult:
    base = load_task_base(model_cfg, prepared.task, seed=args.seed)
    if isinstance(plan, (str, Path)):
        plan = Plan.load(plan)
    if isinstance(estimate, (str, Path)):
        estimate = Estimate.load(estimate)
    plan = plan or vanilla_plan(base, peft_cfg)
    if plan.peft != peft_cfg.peft:
        raise LightPeftError(f"the plan is for --peft {plan.peft} but --peft {peft_cfg.peft} was given; pass "
                             f"--peft {plan.peft}")
    model = prune(base, plan, estimate)
    fresh_state = _fresh_backbone_state(base, model)
    stage_args = _stage_args(args, stage_dir / "trainer")
    trainer = make_trainer(model, stage_args, prepared.train_ds, prepared.eval_ds, prepared.tokenizer,
                           prepared.trainer_parts())
    with measured() as stats:
        trainer.train()
    in_training = [h for h in trainer.state.log_history if "eval_runtime" in h]  # evaluations inside train()
    stats.extra["eval_seconds"] = sum(h["eval_runtime"] for h in in_training)
    final = in_training[-1] if in_training else trainer.evaluate()
    summary = _summarise(plan, prepared.task, model, trainer, stats, in_training or [final], final)
    summary["base_path"] = str(Path(base.path).resolve())  # `load_pruned` / `lightpeft predict` default
    summary["tokenizer_path"] = model_cfg.tokenizer_name
    summary["task"].update(prepared.task_record())
    if is_main_process():
        plan.save(stage_dir / "plan.json")
        save_file({**export_state(model), **fresh_state}, stage_dir / WEIGHTS_FILE)
        write_json(stage_dir / "log_history.json",
                   {"schema_version": RUN_SCHEMA_VERSION, "log_history": trainer.state.log_history})
        write_json(stage_dir / "run_config.json",
                   {"schema_version": RUN_SCHEMA_VERSION, **to_dict(model_cfg, peft_cfg, args)})
        write_json(stage_dir / RUN_FILE, summary)
    _cleanup_trainer_dir(stage_dir / "trainer")
    return RunResult(summary, plan, model.eval())


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
        "kind": plan.kind,
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


# ----------------------------------------------------------------------------------------------- run


def run(model_cfg: ModelConfig, data_cfg: DataConfig, peft_cfg: PeftSettings, est_cfg: EstimateConfig,
        plan_cfg: PlanConfig, args: LightPeftTrainingArguments, options: RunOptions | None = None,
        prepared: Prepared | None = None) -> RunResult:
    """Estimate, plan, prune and train in one output directory (and the vanilla baseline beside it if asked).

    Layout: `estimate/`, `plan.json`, the trained run at the top level, `vanilla/` (optional), `summary.md`.
    """
    options = options or RunOptions()
    out = check_output_dir(args.output_dir, options.overwrite_output_dir)
    prepared = prepared or prepare(model_cfg, data_cfg)
    with staging(out) as stage_dir:
        est = estimate(model_cfg, data_cfg, peft_cfg, est_cfg, args, prepared, save=False, plan_cfg=plan_cfg)
        if is_main_process():
            est.save(stage_dir / "estimate")
        plan = make_plan(est, plan_cfg)
        result = _train_into(stage_dir, model_cfg, prepared, peft_cfg, args, plan, est)
        light = result.summary
        light["estimate_seconds"] = est.meta["stats"]["seconds"]
        rows = [_table_row("Light-PEFT", light)]
        if options.compare_vanilla:
            vanilla_dir = stage_dir / "vanilla"
            vanilla_dir.mkdir()
            vanilla = _train_into(vanilla_dir, model_cfg, prepared, peft_cfg, args, None, None).summary
            rows.insert(0, _table_row(f"vanilla {PEFT_NAMES[peft_cfg.peft]}", vanilla))
        light["summary_table"] = summary_table(rows)
        if is_main_process():
            (stage_dir / "summary.md").write_text(light["summary_table"] + "\n")
            write_json(stage_dir / RUN_FILE, light)
    return result


def _table_row(name: str, summary: dict) -> list:
    counts = summary["plan_counts"]
    return [name, summary["best_metric"], summary["final_metric"], summary["foundation_params"],
            counts["foundation_pruned_fraction"], summary["trainable_params"], summary.get("estimate_seconds"),
            summary["train_seconds_excluding_eval"], summary["peak_rss_mb"]]


def summary_table(rows: list[list]) -> str:
    headers = ["arm", "best dev metric", "final dev metric", "foundation params", "foundation pruned",
               "trainable params", "estimate s", "train s (excl. eval)", "peak RSS MB"]
    return markdown_table(headers, rows)
