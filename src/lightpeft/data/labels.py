"""Label encoding: raw label values of a file -> class ids (or regression scores) shared by train and eval."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lightpeft.errors import LightPeftError

# Values that read as booleans get fixed ids (False = 0, True = 1) even if only one of them occurs.
BOOLEAN_LABEL_NAMES = ["False", "True"]


@dataclass
class EncodedLabels:
    """Encoded labels of the train and eval rows, and what they mean (`label_names` is `None` for regression)."""

    train: list
    eval: list
    num_labels: int
    label_names: list[str] | None


def encode_labels(train: pd.Series, eval_: pd.Series, class_names: list[str] | None = None,
                  eval_source: object = "eval split") -> EncodedLabels:
    """Encode train and eval labels together, so both splits share one id mapping.

    Rules: booleans -> False=0/True=1; integers already in 0..C-1 stay as they are; other integers and strings map
    their sorted unique values to 0..K-1; numbers with a fractional part make a regression task. `class_names`
    (a hub `ClassLabel`) means the values are ids already. A class found only in the eval split is a LightPeftError
    (its head output would get no training example); `eval_source` names the eval data in it.
    """
    values = pd.concat([train, eval_], ignore_index=True)
    if class_names is not None:
        ids, names = values.astype("int64").tolist(), list(class_names)
    else:
        ids, names = _label_ids_and_names(values)
    num_train = len(train)
    if names is not None and class_names is None:
        _check_eval_classes_trained(ids[:num_train], ids[num_train:], names, eval_source)
    if names is None:
        return EncodedLabels(ids[:num_train], ids[num_train:], num_labels=1, label_names=None)
    return EncodedLabels(ids[:num_train], ids[num_train:], num_labels=len(names), label_names=names)


def encode_named_labels(raw_train: list, raw_eval: list, names: list[str], source: Path) -> EncodedLabels:
    """Labels of a task with a fixed class order: each value is a class name, or its id as int or digit string.

    Booleans are read by name (`False`, `True`), so `[False, True]`-named tasks (BoolQ, WiC) take JSON booleans.
    """
    id_of = {**{str(i): i for i in range(len(names))}, **{name: i for i, name in enumerate(names)}}

    def key(value) -> str:
        return str(value).strip()

    unknown = sorted({key(value) for value in raw_train + raw_eval if key(value) not in id_of})
    if unknown:
        raise LightPeftError(
            f"labels in {source} include {', '.join(map(repr, unknown[:5]))}, expected one of {', '.join(names)}; "
            "the directory name decides the task, so rename the directory or fix the files"
        )
    return EncodedLabels([id_of[key(v)] for v in raw_train], [id_of[key(v)] for v in raw_eval], len(names), names)


def parse_scores(values: list, source: Path) -> list[float]:
    """Regression targets as floats; a value that is not a number is an error naming it."""
    scores = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if not np.isfinite(scores.to_numpy(dtype=np.float64)).all():
        first = int(np.flatnonzero(~np.isfinite(scores.to_numpy(dtype=np.float64)))[0])
        raise LightPeftError(f"regression scores in {source} must be finite numbers, found {values[first]!r} (row "
                             f"{first + 1}); fix the file")
    return scores.astype(float).tolist()


NON_FINITE_NAMES = {f"{sign}{name}" for sign in ("", "+", "-") for name in ("nan", "inf", "infinity")}


def check_finite_labels(frame: pd.DataFrame, column, path: Path) -> None:
    """A `nan` / `inf` label (text or number) is an error naming its row: it would become a class of its own, or
    turn a regression file into classification over every distinct score."""
    for row, value in enumerate(frame[column].tolist(), start=1):  # 1-based, not counting the header
        if (isinstance(value, float) and not math.isfinite(value)) or str(value).strip().lower() in NON_FINITE_NAMES:
            raise LightPeftError(f"label {value!r} in column {column!r} of {path} (data row {row}) is not a finite "
                                 "value; fix or drop that row")


def check_no_empty_labels(frame: pd.DataFrame, column, path: Path) -> None:
    values = frame[column]
    empty = values.isna() | values.map(lambda value: isinstance(value, str) and not value.strip())
    num_empty = int(empty.sum())
    if num_empty:
        first = int(np.flatnonzero(empty.to_numpy())[0]) + 1  # 1-based, not counting the header
        raise LightPeftError(
            f"{num_empty} of {len(frame)} rows in {path} have an empty label in column {column!r} (first at data row "
            f"{first}); drop or fill those rows"
        )


def _check_eval_classes_trained(train_ids: list, eval_ids: list, names: list[str], source) -> None:
    trained = set(train_ids)
    for row, label in enumerate(eval_ids, start=1):
        if label not in trained:
            raise LightPeftError(
                f"label {names[label]!r} occurs in the eval data ({source}, row {row}) but in no training row, "
                "so its head output would never be trained; add training rows with it, drop those rows, or pick "
                "another --split_seed / --validation_file"
            )


def _label_ids_and_names(values: pd.Series) -> tuple[list, list[str] | None]:
    as_text = [str(value).strip() for value in values.tolist()]
    if set(as_text) <= set(BOOLEAN_LABEL_NAMES):
        return [BOOLEAN_LABEL_NAMES.index(value) for value in as_text], list(BOOLEAN_LABEL_NAMES)
    numbers = pd.to_numeric(pd.Series(as_text, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    if np.isfinite(numbers).all():
        if not np.all(numbers == np.round(numbers)):
            return numbers.tolist(), None  # regression
        return _integer_label_ids(numbers.astype(np.int64))
    return _sorted_value_ids(as_text)


def _integer_label_ids(numbers: np.ndarray) -> tuple[list[int], list[str]]:
    unique = np.unique(numbers)
    # Ids that already look like class ids (start at 0, or a lone 1 of a binary task) keep their meaning.
    if unique.min() >= 0 and (unique.min() == 0 or unique.max() == 1):
        num_labels = max(2, int(unique.max()) + 1)
        return numbers.tolist(), [str(i) for i in range(num_labels)]
    return _sorted_value_ids(numbers.tolist())


def _sorted_value_ids(values: list) -> tuple[list[int], list[str]]:
    unique = sorted(set(values))
    id_of = {value: i for i, value in enumerate(unique)}
    names = [str(value) for value in unique]
    if len(names) == 1:  # one class is fine, but a 1-output head would mean regression: keep a second slot
        names.append(f"not_{names[0]}")
    return [id_of[value] for value in values], names
