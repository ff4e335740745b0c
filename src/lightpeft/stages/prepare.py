"""What every stage of a run shares: the tokenizer, the task data tokenized once, and the base checkpoint loaded as
the task's model class (seeded, so the fresh head and PEFT modules follow `--seed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import set_seed

from lightpeft.config import DataConfig, ModelConfig
from lightpeft.core.heads import check_kind, head_prefixes, init_regression_bias
from lightpeft.core.models import BaseModel, load_base, load_config, load_tokenizer
from lightpeft.core.training import trainer_parts
from lightpeft.data import TaskData, check_labels_fit, load_task, tokenize_task
from lightpeft.data.task import LABEL


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
    heads = head_prefixes(base.model)
    fresh_head = any(key.startswith(heads) for key in base.fresh_keys)
    if task.is_regression and fresh_head and len(task.train):  # a checkpoint's trained head keeps its bias
        init_regression_bias(base.model, float(np.mean(task.train[LABEL])))
    return base
