"""`TaskData`, the one shape every task source produces, and the row helpers all sources share."""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np
import pandas as pd

from lightpeft.errors import LightPeftError

# Columns of classification / regression rows.
TEXT, TEXT_PAIR, LABEL = "text", "text_pair", "label"
# What the model side builds for each kind: a sequence classifier (C outputs, or 1 for regression), a span
# extractor with start/end logits, or a causal LM trained on the response tokens.
TASK_KINDS = ("classification", "regression", "qa", "causal_lm")
# Metric kinds (keys of `metrics.MAIN_METRIC`) that fit each task kind.
METRIC_KINDS_OF_TASK = {
    "classification": ("accuracy", "f1", "mcc", "accuracy_macro_f1"),
    "regression": ("pearson",),
    "qa": ("squad",),
    "causal_lm": ("perplexity",),
}


@dataclass
class TaskData:
    """A loaded task: raw (untokenized) train/eval rows and what the model side needs to know about them.

    Attributes:
        name: short task name (`rotten_tomatoes`, a GLUE/SuperGLUE key such as `sst2` or `copa`, a file stem, or a
            hub name).
        train: training rows. Classification/regression: columns `text`, optionally `text_pair`, and `label`.
            QA: `id`, `title`, `context`, `question`, `answers` (`{"text": [...], "answer_start": [...]}`, the
            Hugging Face `squad` layout). Causal LM: `prompt`, `response`.
        eval: evaluation rows, same columns.
        num_labels: number of classes, 1 for regression, `None` for `qa` and `causal_lm` (no classification head).
        label_names: class id -> original label string (classification), else `None`.
        metric_kind: a key of `metrics.MAIN_METRIC`.
        kind: one of `TASK_KINDS`; derived from `num_labels` when left empty (1 -> regression, else classification).
    """

    name: str
    train: datasets.Dataset
    eval: datasets.Dataset
    num_labels: int | None
    label_names: list[str] | None
    metric_kind: str
    kind: str = ""

    def __post_init__(self):
        if not self.kind:
            self.kind = "regression" if self.num_labels == 1 else "classification"
        if self.kind not in TASK_KINDS:
            raise LightPeftError(f"unknown task kind {self.kind!r}; use one of {', '.join(TASK_KINDS)}")
        if self.metric_kind not in METRIC_KINDS_OF_TASK[self.kind]:
            raise LightPeftError(
                f"metric kind {self.metric_kind!r} does not fit a {self.kind} task; use one of "
                f"{', '.join(METRIC_KINDS_OF_TASK[self.kind])}"
            )
        has_head = self.kind in ("classification", "regression")
        if has_head != (self.num_labels is not None):
            raise LightPeftError(f"a {self.kind} task needs num_labels {'set' if has_head else '= None'}")

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"

    @property
    def has_pair(self) -> bool:
        return TEXT_PAIR in self.train.column_names


def make_dataset(texts: list[str], pairs: list[str] | None, labels: list, is_regression: bool) -> datasets.Dataset:
    """Classification/regression rows: `text`, optional `text_pair`, `label` (float32 score or int64 class id)."""
    columns = {TEXT: texts}
    features = {TEXT: datasets.Value("string")}
    if pairs is not None:
        columns[TEXT_PAIR], features[TEXT_PAIR] = pairs, datasets.Value("string")
    columns[LABEL], features[LABEL] = labels, datasets.Value("float32" if is_regression else "int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def split_frame(
    frame: pd.DataFrame, fraction: float, seed: int, source, fix: str = "pass --validation_file"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded random train/eval split of one frame; both sides get at least one row (`fix`: advice if too small)."""
    if len(frame) < 2:
        raise LightPeftError(f"{source} has {len(frame)} row(s), too few to split off an eval set; add rows or {fix}")
    num_eval = min(max(1, round(fraction * len(frame))), len(frame) - 1)
    order = np.random.default_rng(seed).permutation(len(frame))
    eval_rows, train_rows = np.sort(order[:num_eval]), np.sort(order[num_eval:])
    return frame.iloc[train_rows].reset_index(drop=True), frame.iloc[eval_rows].reset_index(drop=True)


def grouped_split_indices(groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split that keeps every group (a movie, an article) on one side, so one group never leaks into eval.

    Groups are shuffled and added to eval until it holds at least `fraction` of the rows; at least one group is
    always kept for training, so a single group cannot be split.
    """
    unique_groups, group_of_row, group_sizes = np.unique(groups, return_inverse=True, return_counts=True)
    shuffled = np.random.default_rng(seed).permutation(len(unique_groups))
    rows_so_far = np.cumsum(group_sizes[shuffled])
    num_eval_groups = int(np.searchsorted(rows_so_far, fraction * len(groups))) + 1
    num_eval_groups = min(num_eval_groups, len(unique_groups) - 1)  # always keep a group for training
    is_eval_group = np.zeros(len(unique_groups), dtype=bool)
    is_eval_group[shuffled[:num_eval_groups]] = True
    is_eval_row = is_eval_group[group_of_row]
    return np.flatnonzero(~is_eval_row), np.flatnonzero(is_eval_row)


def sample_rows(dataset: datasets.Dataset, max_rows: int | None, seed: int) -> datasets.Dataset:
    """A seeded random subset of `max_rows` rows (kept in file order), or all rows."""
    if max_rows is None or max_rows >= len(dataset):
        return dataset
    rows = np.sort(np.random.default_rng(seed).choice(len(dataset), size=max_rows, replace=False))
    return dataset.select(rows.tolist())


def column_list(frame: pd.DataFrame, limit: int = 20) -> str:
    names = [str(column) for column in frame.columns]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def first_line(exc: BaseException, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else "no details"
