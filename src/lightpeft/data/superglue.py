"""SuperGLUE directories: `train.jsonl` + `val.jsonl` (or `dev.jsonl`) of BoolQ, CB, COPA, WiC and RTE.

Inputs follow the paper's reference code (P-tuning v2 `tasks/superglue/dataset.py`), so every task is a sequence
classification of one text or a text pair:

| task  | text                                                     | text_pair                            | labels |
|-------|----------------------------------------------------------|--------------------------------------|--------|
| BoolQ | question                                                 | passage                              | False, True |
| CB    | premise                                                  | hypothesis                           | entailment, contradiction, neutral |
| RTE   | premise                                                  | hypothesis                           | entailment, not_entailment |
| WiC   | "{sentence1} {sentence2} Does {word} have the same meaning in both sentences?" | (none)  | False, True |
| COPA  | "{premise} because" (question = cause) / "{premise} so" (effect) | "choice1: {choice1} choice2: {choice2}" | choice1, choice2 |

COPA: the reference scores the two pairs (premise + connector, choice_i) with a multiple-choice head. Here both
choices go into one input and a 2-class head says which one follows (T5's SuperGLUE input does the same), so COPA
runs through the same sequence-classification pipeline; its accuracy is the usual COPA accuracy (one prediction
per question), but it is not the same model as the reference's multiple-choice formulation.
Label orders are those of the Hugging Face `super_glue` dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lightpeft.config import DataConfig
from lightpeft.data.glue import normalized_task_name
from lightpeft.data.labels import encode_named_labels
from lightpeft.data.readers import read_json_records
from lightpeft.data.task import TaskData, make_dataset, split_frame
from lightpeft.errors import LightPeftError

logger = logging.getLogger(__name__)

COPA_CONNECTORS = {"cause": "because", "effect": "so"}


def _question_passage(record: dict) -> tuple[str, str]:
    return record["question"], record["passage"]


def _premise_hypothesis(record: dict) -> tuple[str, str]:
    return record["premise"], record["hypothesis"]


def _wic_text(record: dict) -> tuple[str, None]:
    word, first, second = record["word"], record["sentence1"], record["sentence2"]
    return f"{first} {second} Does {word} have the same meaning in both sentences?", None


def _copa_texts(record: dict) -> tuple[str, str]:
    connector = COPA_CONNECTORS.get(record["question"])
    if connector is None:
        raise LightPeftError(
            f"COPA record {record.get('idx', '?')} has question {record['question']!r}; expected 'cause' or 'effect'"
        )
    return f"{record['premise']} {connector}", f"choice1: {record['choice1']} choice2: {record['choice2']}"


@dataclass(frozen=True)
class SuperGlueFormat:
    """The JSON keys a task needs, how a record becomes (text, text_pair), its class names and metric kind."""

    keys: frozenset[str]
    to_texts: Callable[[dict], tuple[str, str | None]]
    label_names: tuple[str, ...]
    metric_kind: str


SUPERGLUE_FORMATS = {
    "boolq": SuperGlueFormat(frozenset({"question", "passage"}), _question_passage, ("False", "True"), "accuracy"),
    "cb": SuperGlueFormat(frozenset({"premise", "hypothesis"}), _premise_hypothesis,
                          ("entailment", "contradiction", "neutral"), "accuracy_macro_f1"),
    "rte": SuperGlueFormat(frozenset({"premise", "hypothesis"}), _premise_hypothesis,
                           ("entailment", "not_entailment"), "accuracy"),
    "wic": SuperGlueFormat(frozenset({"word", "sentence1", "sentence2"}), _wic_text, ("False", "True"), "accuracy"),
    "copa": SuperGlueFormat(frozenset({"premise", "choice1", "choice2", "question"}), _copa_texts,
                            ("choice1", "choice2"), "accuracy"),
}
UNSUPPORTED_SUPERGLUE = ("multirc", "record", "wsc", "axb", "axg")
TRAIN_FILE, EVAL_FILES = "train.jsonl", ("val.jsonl", "dev.jsonl")


def is_superglue_dir(directory: Path) -> bool:
    return (directory / TRAIN_FILE).is_file() or any((directory / name).is_file() for name in EVAL_FILES)


def load_superglue_dir(directory: Path, cfg: DataConfig) -> TaskData:
    """Load a SuperGLUE task directory; a directory with only one split (BoolQ here: val) gets a seeded split."""
    train_path = directory / TRAIN_FILE
    eval_path = next((directory / name for name in EVAL_FILES if (directory / name).is_file()), None)
    train_records = _read_records(train_path) if train_path.is_file() else None
    eval_records = _read_records(eval_path) if eval_path is not None else None
    key = _superglue_task_of(directory, (train_records or []) + (eval_records or []))
    task_format = SUPERGLUE_FORMATS[key]
    if train_records is None or eval_records is None:
        train_records, eval_records = _split_records(train_records or eval_records, train_path if
                                                     train_records else eval_path, cfg)
    for split_name, records in (("train", train_records), ("eval", eval_records)):
        _check_records(records, task_format, directory, split_name)
    labels = encode_named_labels([r["label"] for r in train_records], [r["label"] for r in eval_records],
                                 list(task_format.label_names), directory)

    def rows(records: list[dict], split_labels: list[int]):
        texts = [task_format.to_texts(record) for record in records]
        pairs = [pair for _, pair in texts] if texts[0][1] is not None else None
        return make_dataset([text for text, _ in texts], pairs, split_labels, is_regression=False)

    return TaskData(
        name=key,
        train=rows(train_records, labels.train),
        eval=rows(eval_records, labels.eval),
        num_labels=labels.num_labels,
        label_names=labels.label_names,
        metric_kind=task_format.metric_kind,
    )


def _split_records(records: list[dict], present: Path, cfg: DataConfig) -> tuple[list[dict], list[dict]]:
    logger.warning("%s has only %s: splitting it into train/eval with --validation_fraction %s and --split_seed %s",
                   present.parent, present.name, cfg.validation_fraction, cfg.split_seed)
    frame = pd.DataFrame({"record": records})  # the split helper works on frames; each cell holds one record
    train_frame, eval_frame = split_frame(frame, cfg.validation_fraction, cfg.split_seed, present,
                                          fix=f"add {EVAL_FILES[0]} beside {TRAIN_FILE}")
    return train_frame["record"].tolist(), eval_frame["record"].tolist()


def _read_records(path: Path) -> list[dict]:
    records = read_json_records(path)
    if not records:
        raise LightPeftError(f"data file {path} has no rows; pass a file with at least one example")
    return records


def _superglue_task_of(directory: Path, records: list[dict]) -> str:
    """The task from the directory name, or else from the keys (and for premise/hypothesis, the labels) of the rows."""
    key = normalized_task_name(directory.name)
    if key in UNSUPPORTED_SUPERGLUE:
        raise LightPeftError(
            f"SuperGLUE task {key!r} ({directory}) is not supported; supported: {', '.join(SUPERGLUE_FORMATS)}"
        )
    if key in SUPERGLUE_FORMATS:
        return key
    present = set(records[0])
    matches = [name for name, task_format in SUPERGLUE_FORMATS.items() if task_format.keys <= present]
    if matches == ["cb", "rte"]:  # same keys: RTE's labels are entailment / not_entailment only
        matches = ["rte"] if any(str(r.get("label")) == "not_entailment" for r in records) else ["cb"]
    if len(matches) == 1:
        logger.info("directory %s recognised as SuperGLUE %s from its keys", directory, matches[0])
        return matches[0]
    raise LightPeftError(
        f"directory {directory} holds JSONL files that are not a recognised SuperGLUE task (keys: "
        f"{', '.join(sorted(present))}); name it after the task ({', '.join(SUPERGLUE_FORMATS)}) or pass one "
        "file as --task (and the other as --validation_file) to load it as a generic text/label file"
    )


def _check_records(records: list[dict], task_format: SuperGlueFormat, directory: Path, split_name: str) -> None:
    needed = task_format.keys | {"label"}
    for number, record in enumerate(records, start=1):
        missing = sorted(needed - set(record))
        if missing:
            raise LightPeftError(
                f"{split_name} record {number} in {directory} lacks {', '.join(missing)} (it has "
                f"{', '.join(sorted(record))}); the directory name decides the task, so rename it or fix the files"
            )
        not_text = sorted(key for key in task_format.keys if not isinstance(record[key], str))
        if not_text:
            raise LightPeftError(f"{split_name} record {number} in {directory} has no text in {', '.join(not_text)}; "
                                 "fix or drop that record")
