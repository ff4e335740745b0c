"""Trainer wiring: the estimation trainer (L1 on gates, importance after backward), plain PEFT training, and the
per-task-kind parts a Trainer needs (collator, metrics)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from transformers import Trainer, TrainingArguments

from lightpeft import memory
from lightpeft.config import SHARDING_REFUSED
from lightpeft.core import heads
from lightpeft.core.peft_kinds import hf_model
from lightpeft.data import make_collator, make_qa_compute_metrics
from lightpeft.errors import LightPeftError
from lightpeft.metrics import make_hf_compute_metrics, token_nll_for_metrics

PAD_MULTIPLE = 16


def planned_steps(args: TrainingArguments, num_examples: int) -> int:
    """Optimizer steps a training run with `args` takes on `num_examples` rows."""
    if args.max_steps and args.max_steps > 0:
        return args.max_steps
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    return math.ceil(num_examples / per_step) * math.ceil(args.num_train_epochs) if num_examples else 0


@dataclass
class TrainerParts:
    """What a Trainer needs to know about the task: how to batch its features and how to score an evaluation."""

    collator: Callable
    compute_metrics: Callable | None = None
    preprocess_logits_for_metrics: Callable | None = None


def trainer_parts(task, tokenizer, eval_features=None, max_answer_length: int = 30) -> TrainerParts:
    """The collator and metrics for `task`'s kind (`eval_features`: the tokenized eval split, needed for QA).

    QA: logits of every window -> answer texts -> SQuAD EM / F1 (`make_qa_compute_metrics`). Causal LM: per-token
    NLL instead of (B, T, vocab) logits is kept during evaluation, then perplexity.
    """
    collator = make_collator(task, tokenizer, pad_to_multiple_of=PAD_MULTIPLE)
    if task.kind == "qa":
        metrics = make_qa_compute_metrics(task.eval, eval_features, max_answer_length=max_answer_length) \
            if eval_features is not None else None
        return TrainerParts(collator, metrics)
    if task.kind == "causal_lm":
        return TrainerParts(collator, make_hf_compute_metrics(task.metric_kind), token_nll_for_metrics)
    return TrainerParts(collator, make_hf_compute_metrics(task.metric_kind))


def loss_scaled_for_ga(trainer: Trainer, num_items_in_batch) -> bool:
    """Whether `Trainer.training_step` takes the loss as already scaled for accumulation (its own rule, 5.24)."""
    declared = getattr(trainer, "loss_is_scaled_for_ga", None)  # an attribute of recent transformers only
    if declared is not None:
        return declared
    by_item_count = trainer.model_accepts_loss_kwargs and num_items_in_batch is not None
    return by_item_count or trainer.compute_loss_func is not None


def use_mean_loss_scaling(trainer: Trainer) -> None:
    """Make a step's task gradient the mean over its micro-batches and processes, as the reference's loss / steps.

    Every task model's forward takes `**kwargs`, so `Trainer` assumes its loss is a sum divided by the step's item
    count (`num_items_in_batch`, counted over all micro-batches and processes): it skips the division by the
    accumulation steps and multiplies by the process count. Only the causal-LM loss (ForCausalLMLoss) is that; the
    classification, regression and QA heads return per-micro-batch means, which would then be summed over
    accumulation steps and processes (transformers#47688), shrinking lambda relative to the task loss and making
    clipping bite harder. For them, take the Trainer's plain-mean path (loss / accumulation steps).
    """
    if heads.kind_of_model(hf_model(trainer.model)) != "causal_lm":
        trainer.model_accepts_loss_kwargs = False


def refuse_sharding(trainer: Trainer, what: str) -> None:
    """FSDP and DeepSpeed shard parameters and gradients: refuse them before a step, instead of statistics and saved
    weights computed from one shard."""
    how = "FSDP" if trainer.is_fsdp_enabled else "DeepSpeed" if trainer.is_deepspeed_enabled else None
    if how:
        raise LightPeftError(f"{what}: " + SHARDING_REFUSED.format(how=how))


def make_trainer(model, args, train_ds, eval_ds, tokenizer, parts: TrainerParts, cls=Trainer, **extra) -> Trainer:
    trainer = cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        # few distinct shapes: CPU kernels pay a large one-off cost per new sequence length
        data_collator=parts.collator,
        processing_class=tokenizer,
        compute_metrics=parts.compute_metrics,
        preprocess_logits_for_metrics=parts.preprocess_logits_for_metrics,
        **extra,
    )
    use_mean_loss_scaling(trainer)
    refuse_sharding(trainer, "estimation" if hasattr(trainer, "gates") else "training")
    return trainer


@dataclass
class StageStats:
    """Wall time and peak memory of one stage: peak RSS of the process during the stage (OS; the process-lifetime
    peak where the OS cannot reset it, see `peak_is_stage_only`), RSS when the stage began, CUDA allocator peak."""

    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    start_rss_mb: float = 0.0
    peak_is_stage_only: bool = False
    peak_cuda_mb: float | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@contextmanager
def measured():
    """Time a block and read the peak memory of that block alone (freed memory is released first)."""
    stats = StageStats()
    memory.release()
    stats.start_rss_mb = memory.rss_mb()
    stats.peak_is_stage_only = memory.reset_peak()
    start = time.perf_counter()
    yield stats
    stats.seconds = time.perf_counter() - start
    stats.peak_rss_mb = memory.peak_rss_mb()
    stats.peak_cuda_mb = memory.peak_cuda_mb()
