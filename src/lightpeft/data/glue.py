"""GLUE directories: `train.tsv` + `dev.tsv` (or `dev_matched.tsv`) in the GLUE layout, one format per task."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lightpeft.config import DataConfig
from lightpeft.data.labels import (
    EncodedLabels,
    check_finite_labels,
    check_no_empty_labels,
    encode_named_labels,
    parse_scores,
)
from lightpeft.data.readers import first_line_fields, read_tsv, require_rows
from lightpeft.data.task import TaskData, column_list, make_dataset, split_frame
from lightpeft.errors import LightPeftError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GlueFormat:
    """Where a GLUE task keeps its columns; int columns index a header-less file (CoLA)."""

    text: str | int
    pair: str | int | None
    label: str | int
    label_names: tuple[str, ...] | None  # None: regression
    metric_kind: str
    has_header: bool = True
    eval_file: str = "dev.tsv"


# Label orders follow GLUE / the HF `glue` dataset, so class ids match published checkpoints.
GLUE_FORMATS = {
    "sst2": GlueFormat("sentence", None, "label", ("0", "1"), "accuracy"),
    "cola": GlueFormat(3, None, 1, ("0", "1"), "mcc", has_header=False),
    "mrpc": GlueFormat("#1 String", "#2 String", "Quality", ("0", "1"), "f1"),
    "qqp": GlueFormat("question1", "question2", "is_duplicate", ("0", "1"), "f1"),
    "stsb": GlueFormat("sentence1", "sentence2", "score", None, "pearson"),
    "rte": GlueFormat("sentence1", "sentence2", "label", ("entailment", "not_entailment"), "accuracy"),
    "qnli": GlueFormat("question", "sentence", "label", ("entailment", "not_entailment"), "accuracy"),
    # GLUE's WNLI files hold 0/1 with 1 = entailment; HF names the classes in this order.
    "wnli": GlueFormat("sentence1", "sentence2", "label", ("not_entailment", "entailment"), "accuracy"),
    "mnli": GlueFormat(
        "sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"), "accuracy",
        eval_file="dev_matched.tsv",
    ),
}
# Header columns that identify a task when the directory name does not; the first match wins, so the more
# specific signatures come first (a WNLI file's header is identical to RTE's: name the directory WNLI).
GLUE_HEADER_SIGNATURES = (
    ("mrpc", {"Quality", "#1 String", "#2 String"}),
    ("qqp", {"question1", "question2", "is_duplicate"}),
    ("mnli", {"sentence1", "sentence2", "gold_label"}),
    ("stsb", {"sentence1", "sentence2", "score"}),
    ("qnli", {"question", "sentence", "label"}),
    ("rte", {"sentence1", "sentence2", "label"}),
    ("sst2", {"sentence", "label"}),
)


def normalized_task_name(name: str) -> str:
    """`SST-2`, `sst_2`, `STS-B` -> `sst2`, `sst2`, `stsb`."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def glue_task_of(directory: Path) -> str | None:
    """The GLUE task a directory holds, from its name or else its TSV header; `None` if neither tells."""
    key = normalized_task_name(directory.name)
    if key in GLUE_FORMATS and _has_glue_files(directory, key):
        return key
    key = _glue_task_from_header(directory)
    if key is not None:
        logger.info("directory %s recognised as GLUE %s from its header", directory, key)
    return key


def load_glue_dir(directory: Path, task_key: str, cfg: DataConfig) -> TaskData:
    """Load the GLUE task `task_key` from `directory`; a directory with only one split gets a seeded split of it."""
    glue_format = GLUE_FORMATS[task_key]
    train_path, eval_path = directory / "train.tsv", directory / glue_format.eval_file
    train_frame = _read_glue_tsv(train_path, glue_format) if train_path.is_file() else None
    eval_frame = _read_glue_tsv(eval_path, glue_format) if eval_path.is_file() else None
    if train_frame is None and eval_frame is None:
        raise LightPeftError(
            f"GLUE directory {directory} has neither train.tsv nor {glue_format.eval_file}; point --task at a "
            "directory holding them"
        )
    train_frame, eval_frame = _fill_missing_split(train_frame, eval_frame, directory, glue_format.eval_file, cfg)
    labels = _encode_glue_labels(train_frame, eval_frame, glue_format, directory)

    def rows(frame: pd.DataFrame, split_labels: list):
        pairs = frame[glue_format.pair].tolist() if glue_format.pair is not None else None
        return make_dataset(frame[glue_format.text].tolist(), pairs, split_labels, labels.num_labels == 1)

    return TaskData(
        name=task_key,
        train=rows(train_frame, labels.train),
        eval=rows(eval_frame, labels.eval),
        num_labels=labels.num_labels,
        label_names=labels.label_names,
        metric_kind=glue_format.metric_kind,
    )


def _has_glue_files(directory: Path, key: str) -> bool:
    """A GLUE-named directory without TSVs may be something else (SuperGLUE's RTE ships JSONL)."""
    names = ("train.tsv", GLUE_FORMATS[key].eval_file)
    return any((directory / name).is_file() for name in names) or not any(directory.glob("*.jsonl"))


def _glue_task_from_header(directory: Path) -> str | None:
    for file_name in ("train.tsv", "dev.tsv", "dev_matched.tsv"):
        path = directory / file_name
        if not path.is_file():
            continue
        fields = first_line_fields(path)
        for key, signature in GLUE_HEADER_SIGNATURES:
            if signature <= set(fields):
                return key
        if len(fields) == 4 and fields[1] in ("0", "1"):  # CoLA: source, label, annotation, sentence; no header
            return "cola"
    return None


def _read_glue_tsv(path: Path, glue_format: GlueFormat) -> pd.DataFrame:
    frame = read_tsv(path, header=0 if glue_format.has_header else None)
    require_rows(frame, path)
    columns = [glue_format.text, glue_format.label] + ([glue_format.pair] if glue_format.pair is not None else [])
    for column in columns:
        if column not in frame.columns:
            raise LightPeftError(
                f"GLUE file {path} has no column {column!r} (columns: {column_list(frame)}); the directory name "
                "decides the task, so rename the directory or fix the file"
            )
    check_no_empty_labels(frame, glue_format.label, path)
    check_finite_labels(frame, glue_format.label, path)
    return frame


def _fill_missing_split(
    train_frame: pd.DataFrame | None, eval_frame: pd.DataFrame | None, directory: Path, eval_file: str,
    cfg: DataConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A directory with only one of train/dev gets a seeded split of that file (QNLI here ships only dev)."""
    if train_frame is not None and eval_frame is not None:
        return train_frame, eval_frame
    present = "train.tsv" if train_frame is not None else eval_file
    logger.warning(
        "%s has only %s: splitting it into train/eval with --validation_fraction %s and --split_seed %s",
        directory, present, cfg.validation_fraction, cfg.split_seed,
    )
    only_frame = train_frame if train_frame is not None else eval_frame
    return split_frame(only_frame, cfg.validation_fraction, cfg.split_seed, directory / present,
                       fix=f"add {eval_file if train_frame is not None else 'train.tsv'} to the directory")


def _encode_glue_labels(
    train_frame: pd.DataFrame, eval_frame: pd.DataFrame, glue_format: GlueFormat, directory: Path
) -> EncodedLabels:
    raw_train = train_frame[glue_format.label].tolist()
    raw_eval = eval_frame[glue_format.label].tolist()
    if glue_format.label_names is None:
        return EncodedLabels(parse_scores(raw_train, directory), parse_scores(raw_eval, directory), 1, None)
    # Both the label names and their ids are accepted (GLUE mixes them: RTE has names, WNLI has 0/1).
    return encode_named_labels(raw_train, raw_eval, list(glue_format.label_names), directory)
