"""Light-PEFT in your own `transformers.Trainer` script: estimation, planning and pruning in one call that stands in
for `get_peft_model`, then your Trainer trains the pruned model as it would any peft model.

    model = AutoModelForSequenceClassification.from_pretrained(BASE, num_labels=2)
  - model = get_peft_model(model, lora_config)
  + light = LightPeft(lora_config, recipe="accuracy", uniform=True)
  + model = light.prune(model, args, train_ds, data_collator=collator, processing_class=tokenizer)
  + args = light.training_args(args)            # the steps estimation left (train_schedule, below)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds, ...)
    trainer.train()
  + light.save(trainer, "exports/my-model")      # a standard checkpoint for uniform plans, with a model card

`prune` runs what `lightpeft run` runs before training, with your arguments, data and collator: the checkpoint is
loaded as the task model seeded with `args.seed`, gates and LoRA on every linear train for the estimation steps
(`EstimateConfig`: `estimate_steps`, or `estimate_fraction` of your run raised to `min_estimate_steps`), the plan
is chosen (`PlanConfig`), and a fresh copy of the checkpoint is pruned to it with the estimated LoRA and head
weights. So the same seed, data and collator give the same plan as `lightpeft run`
(`tests/integrations`). The model you pass only names the checkpoint and task (`name_or_path`, its head, labels):
it is reloaded, as `lightpeft run` reloads its base, so load it however you like (or pass the path).
Estimation puts LoRA on every linear whatever `target_modules` says: Light-PEFT chooses the modules itself, keeping
your rank, alpha and dropout. With `report_to` set, the estimation's loss and gate statistics (`gates/...`) go to
your trackers too (TensorBoard: under `output_dir/runs/lightpeft-estimate`).

Recipes: `LightPeft(lora_config, recipe="accuracy")` takes the named recipe's estimation and plan settings
(`lightpeft.methods.light_peft.recipes`), and any field of `EstimateConfig` / `PlanConfig` given as a keyword goes on
top (`LightPeft(lora_config, recipe="accuracy", uniform=True)`), as `--recipe` and flags do on the command line.
With plan search (`plan_search_examples`, `max_metric_drop`: the accuracy recipe), `prune` holds out the same rows
of `train_dataset` that `lightpeft run` holds out (at most a quarter, drawn with `args.seed`; a `datasets.Dataset`),
scores the candidate ratios on them with `metric` (default: accuracy for classification, Pearson for regression,
perplexity for causal LM) and picks the cheapest within `max_metric_drop`, so the plan is the one `lightpeft run`
chooses; `light.plan.ratios["accuracy_choice"]` records the choice. Your Trainer still trains on every row.

Training length (`train_schedule`): with `full` (the paper recipe) your Trainer runs `args` as they are. With
`remaining` (the accuracy recipe) estimation already spent part of the run, so the pruned model should train only
the steps left: build your Trainer with `args=light.training_args(args)` (a copy with `max_steps` set; your `args`
are not changed) and `prune` logs the step count. Passing `args` unchanged trains the whole schedule again.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

from lightpeft.core import heads
from lightpeft.core.models import BaseModel, load_base
from lightpeft.core.peft_kinds import PeftSettings, hf_model
from lightpeft.core.plan import Plan
from lightpeft.core.training import TrainerParts, planned_steps
from lightpeft.data.task import METRIC_KINDS_OF_TASK
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig
from lightpeft.methods.light_peft.estimate import Estimate, estimation_steps, run_estimation
from lightpeft.methods.light_peft.plan_search import split_for_search
from lightpeft.methods.light_peft.planning import make_plan, prune
from lightpeft.methods.light_peft.recipes import recipe_configs
from lightpeft.methods.light_peft.uniform import check_uniform_peft
from lightpeft.metrics import make_hf_compute_metrics, token_nll_for_metrics
from lightpeft.provenance import command_line
from lightpeft.stages.export import write_export
from lightpeft.stages.outputs import claimed_output_dir, staging
from lightpeft.stages.run import training_args
from lightpeft.tracking import tensorboard_dir

log = logging.getLogger(__name__)
METRIC_SKIP = ("runtime", "samples_per_second", "steps_per_second", "epoch")  # eval_* keys that are not scores


def peft_settings(peft_config) -> PeftSettings:
    """lightpeft's LoRA settings from a peft `LoraConfig` (rank, alpha, dropout), a `PeftSettings`, or None."""
    if peft_config is None or isinstance(peft_config, PeftSettings):
        return peft_config or PeftSettings()
    if type(peft_config).__name__ != "LoraConfig":
        raise LightPeftError(f"LightPeft takes a peft LoraConfig or a lightpeft PeftSettings, got "
                             f"{type(peft_config).__name__}; for bottleneck adapters pass PeftSettings(peft='adapter')")
    return PeftSettings(lora_r=peft_config.r, lora_alpha=float(peft_config.lora_alpha),
                        lora_dropout=peft_config.lora_dropout)


class LightPeft:
    """Light-PEFT for an existing Trainer script: `prune` instead of `get_peft_model`, `save` after training.

    Settings: `recipe` (`paper` or `accuracy`; default: `PlanConfig`'s default recipe) with `settings` (any field of
    `EstimateConfig` / `PlanConfig`) on top, or ready `estimate` / `plan` configs (not both ways at once).
    After `prune`: `estimate` (the `Estimate`), `plan` (the `Plan`, the same as `lightpeft run`'s for the same
    seed, data and collator) and `training_args(args)` (the arguments your Trainer should train with).
    """

    def __init__(self, peft_config=None, estimate: EstimateConfig | None = None, plan: PlanConfig | None = None,
                 recipe: str | None = None, **settings):
        self.settings = peft_settings(peft_config)
        if estimate is None and plan is None:
            estimate, plan = recipe_configs(recipe or PlanConfig().recipe, **settings)
        elif recipe is not None or settings:
            raise LightPeftError("give LightPeft a recipe (with settings on top, e.g. recipe='accuracy', "
                                 "uniform=True) or EstimateConfig / PlanConfig objects, not both")
        self.estimate_config = estimate or EstimateConfig()
        self.plan_config = plan or PlanConfig()
        check_uniform_peft(self.plan_config, self.settings.peft)
        self.estimate: Estimate | None = None
        self.plan: Plan | None = None
        self.base_path: str | None = None
        self.task_kind = "classification"
        self.train_rows = 0
        self.train_steps: int | None = None  # what the user's Trainer should run under train_schedule="remaining"

    def prune(self, model, args: TrainingArguments, train_dataset, data_collator=None, processing_class=None,
              num_labels: int | None = None, task_kind: str | None = None, metric: str | None = None
              ) -> torch.nn.Module:
        """Estimate on `train_dataset` with `args`, plan, and return the pruned model with its PEFT modules, ready
        for your Trainer (with `light.training_args(args)`). `model`: a task model from `from_pretrained` (or its
        path, with `num_labels` and `task_kind`: classification, regression, qa, causal_lm). `metric`: what
        candidate plans are scored by under plan search (a `lightpeft.metrics.MAIN_METRIC` kind; default by task:
        accuracy, pearson, perplexity)."""
        path, kind, labels = self._describe(model, num_labels, task_kind)
        metric = _metric_kind(metric, kind)
        collator = data_collator or DataCollatorWithPadding(processing_class)
        steps = estimation_steps(self.estimate_config, planned_steps(args, len(train_dataset)))
        examples = self.estimate_config.plan_search_examples
        if examples and not hasattr(train_dataset, "shuffle"):
            raise LightPeftError("plan search holds out rows of a datasets.Dataset: pass train_dataset as one "
                                 "(Dataset.from_list(rows)) or set plan_search_examples=0")
        estimation_rows, holdout, not_scored = split_for_search(train_dataset, examples, args.seed, kind)
        log.info("Light-PEFT estimation: %d steps on %s%s", steps, path,
                 f", then candidate plans scored on {len(holdout)} held-out rows" if holdout is not None else "")
        # the parts `lightpeft run` gives its estimation: the task's metric (for the held-out rows), your collator
        parts = TrainerParts(collator, make_hf_compute_metrics(metric) if kind != "qa" else None,
                             token_nll_for_metrics if kind == "causal_lm" else None)
        with tensorboard_dir(Path(args.output_dir) / "runs" / "lightpeft-estimate", args):
            self.estimate = run_estimation(self._load(path, kind, labels, args.seed), processing_class,
                                           estimation_rows, parts, args, self.settings, self.estimate_config, steps,
                                           self.plan_config, task_kind=kind, holdout=holdout, metric_kind=metric)
        if not_scored:
            self.estimate.meta["plan_candidates"] = not_scored
        self.plan = make_plan(self.estimate, self.plan_config)
        self.base_path, self.task_kind, self.train_rows = path, kind, len(train_dataset)
        counts = self.plan.counts
        log.info("Light-PEFT plan: %s of %s foundation parameters kept, %d PEFT modules%s",
                 f"{counts['foundation_params_after']:,}", f"{counts['foundation_params_before']:,}",
                 len(self.plan.peft_modules), _choice_note(self.plan))
        if self.estimate_config.train_schedule == "remaining":
            self.train_steps = self.training_args(args).max_steps
            log.info("Light-PEFT train_schedule 'remaining': estimation took %d of the run's %d steps; train the "
                     "pruned model for the %d left: Trainer(..., args=light.training_args(args))",
                     self.estimate.meta["steps"], planned_steps(args, len(train_dataset)), self.train_steps)
        return prune(self._load(path, kind, labels, args.seed), self.plan, self.estimate)

    def training_args(self, args: TrainingArguments) -> TrainingArguments:
        """The arguments your Trainer should train the pruned model with, as `lightpeft run` trains it: `args`
        itself for `train_schedule="full"`, else a copy cut to the steps estimation left (`max_steps`)."""
        if self.estimate is None:
            raise LightPeftError("call LightPeft.prune(...) before training_args(...): estimation sets the steps")
        return training_args(args, self.estimate_config, self.estimate, self.train_rows)

    def save(self, trainer_or_model, output_dir: str | Path, task_name: str | None = None,
             overwrite: bool = False) -> Path:
        """Export the trained pruned model as `lightpeft export` does (a standard checkpoint for uniform LoRA plans;
        README.md model card with the last evaluation's metric). The model itself is left as it is (a copy merges)."""
        if self.plan is None:
            raise LightPeftError("call LightPeft.prune(...) before save(...): there is no plan yet")
        model = getattr(trainer_or_model, "model", trainer_or_model)
        trainer = trainer_or_model if model is not trainer_or_model else None
        if trainer is not None and self.train_steps and trainer.state.global_step != self.train_steps:
            log.warning("your Trainer ran %d steps; with train_schedule 'remaining' `lightpeft run` trains the %d "
                        "that estimation left (build the Trainer with args=light.training_args(args))",
                        trainer.state.global_step, self.train_steps)
        tokenizer = getattr(trainer, "processing_class", None)
        config = hf_model(model).config
        names = [config.id2label[i] for i in sorted(config.id2label)] if self.task_kind == "classification" else None
        summary = {"task": {"name": task_name or Path(output_dir).name, "kind": self.task_kind,
                            "label_names": names},
                   "command": command_line(), "plan_counts": self.plan.counts, **_last_eval(trainer)}
        with claimed_output_dir(output_dir, overwrite) as out:
            with staging(out, "export") as tmp:
                write_export(tmp, copy.deepcopy(model).eval(), self.plan, tokenizer, summary, self.base_path)
        return out

    def _describe(self, model, num_labels, task_kind) -> tuple[str, str, int | None]:
        if isinstance(model, (str, Path)):
            return str(model), task_kind or "classification", num_labels
        model = hf_model(model)
        if hasattr(model, "peft_config") or hasattr(model, "base_model_torch_dtype"):
            raise LightPeftError("pass the model before get_peft_model: LightPeft.prune puts the PEFT modules in")
        kind = task_kind or heads.kind_of_model(model)
        if kind == "classification" and model.config.problem_type == "regression":
            kind = "regression"
        path = model.name_or_path
        if not path or not Path(path).exists():
            raise LightPeftError(f"the model's name_or_path {path!r} is not a local checkpoint directory; pass the "
                                 "model loaded with from_pretrained(DIR), or DIR itself")
        return path, kind, num_labels or model.config.num_labels

    @staticmethod
    def _load(path: str, kind: str, num_labels: int | None, seed: int) -> BaseModel:
        set_seed(seed)  # as `lightpeft run`: the fresh head and LoRA weights follow the seed
        return load_base(path, num_labels, regression=kind == "regression", kind=kind)


def _metric_kind(metric: str | None, kind: str) -> str:
    """The metric kind candidate plans are scored by: `metric`, or the task kind's first (as the task loaders)."""
    kinds = METRIC_KINDS_OF_TASK[kind]
    if metric is None:
        return kinds[0]
    if metric not in kinds:
        raise LightPeftError(f"metric={metric!r} does not fit a {kind} model; use one of {', '.join(kinds)}")
    return metric


def _choice_note(plan: Plan) -> str:
    choice = plan.ratios.get("accuracy_choice")
    if not choice:
        return ""
    if "skipped" in choice:
        return f" (fixed ratios: {choice['skipped']})"
    if choice.get("uninformative"):
        return " (nothing pruned in the backbone: the estimation model does not beat a constant predictor yet)"
    return f" (ratios chosen on held-out rows: heads {choice['head_ratio']}, FFN {choice['ffn_ratio']})"


def _last_eval(trainer) -> dict:
    """The metric of the trainer's last evaluation, for the model card."""
    history = trainer.state.log_history if trainer is not None else []
    evals = [h for h in history if any(k.startswith("eval_") for k in h)]
    if not evals:
        return {}
    scores = [k for k in evals[-1] if k.startswith("eval_") and not k.endswith(METRIC_SKIP) and k != "eval_loss"]
    key = scores[0] if scores else "eval_loss"
    return {"metric": key.removeprefix("eval_"), "final_metric": evals[-1][key],
            "best_metric": None}
