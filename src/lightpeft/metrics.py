"""GLUE-style evaluation metrics computed locally with numpy.

`evaluate.load(...)` fetches metric scripts from the hub, which fails offline, and scipy/scikit-learn are not
dependencies, so the few formulas needed are written out here (and cross-checked against sklearn/scipy in tests).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import LightPeftError

# Metric reported as `eval_<name>` and used for model selection, per metric kind.
MAIN_METRIC = {"accuracy": "accuracy", "f1": "f1", "mcc": "matthews_correlation", "pearson": "pearson"}


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of predicted class ids equal to the labels."""
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def f1_binary(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class 1 (as GLUE reports for MRPC/QQP); 0.0 when there are no positives at all."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    true_pos = np.sum((predictions == 1) & (labels == 1))
    false_pos = np.sum((predictions == 1) & (labels != 1))
    false_neg = np.sum((predictions != 1) & (labels == 1))
    denominator = 2 * true_pos + false_pos + false_neg
    return float(2 * true_pos / denominator) if denominator else 0.0


def _confusion_matrix(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    classes, codes = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    label_codes, prediction_codes = codes[: len(labels)], codes[len(labels) :]
    matrix = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(matrix, (label_codes, prediction_codes), 1)
    return matrix


def matthews_corrcoef(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation (multiclass form, as in sklearn); 0.0 when either side is constant."""
    matrix = _confusion_matrix(np.asarray(predictions).ravel(), np.asarray(labels).ravel())
    true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    correct, total = np.trace(matrix), matrix.sum()
    cov_true_pred = correct * total - true_counts @ predicted_counts
    cov_pred_pred = total**2 - predicted_counts @ predicted_counts
    cov_true_true = total**2 - true_counts @ true_counts
    if cov_pred_pred * cov_true_true == 0:
        return 0.0
    return float(cov_true_pred / np.sqrt(cov_pred_pred * cov_true_true))


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant (scipy would return nan and break model selection)."""
    x = np.asarray(predictions, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator > 0 else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks where tied values share the mean of their ranks (scipy's `rankdata(method="average")`)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts_group = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group_of_sorted = np.cumsum(starts_group) - 1
    group_starts = np.flatnonzero(starts_group)
    group_ends = np.r_[group_starts[1:], len(values)]
    group_rank = (group_starts + group_ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = group_rank[group_of_sorted]
    return ranks


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the average ranks (ties share a rank)."""
    x = np.asarray(predictions, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    return pearson(_average_ranks(x), _average_ranks(y))


def _check_kind(kind: str) -> None:
    if kind not in MAIN_METRIC:
        raise LightPeftError(f"unknown metric kind {kind!r}; use one of {', '.join(MAIN_METRIC)}")


def _class_ids(predictions: np.ndarray) -> np.ndarray:
    """Logits (N, C) -> argmax ids; (N,) is taken as ids already."""
    if predictions.ndim == 2:
        return predictions.argmax(axis=-1)
    if predictions.ndim == 1:
        return predictions.astype(np.int64)
    raise LightPeftError(
        f"classification predictions must be logits (N, C) or ids (N,), got shape {predictions.shape}"
    )


def _regression_scores(predictions: np.ndarray) -> np.ndarray:
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        return predictions[:, 0]
    if predictions.ndim == 1:
        return predictions
    raise LightPeftError(
        f"regression predictions must have shape (N,) or (N, 1), got {predictions.shape}; use num_labels=1"
    )


def compute_metrics(kind: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Metrics of one evaluation run.

    Args:
        kind: `"accuracy"` (accuracy), `"f1"` (accuracy and positive-class F1: MRPC, QQP),
            `"mcc"` (Matthews correlation and accuracy: CoLA) or `"pearson"` (regression: pearson,
            spearman and combined = their mean: STS-B).
        predictions: logits `(N, C)` (or class ids `(N,)`) for classification; scores `(N,)` or `(N, 1)` for
            regression.
        labels: `(N,)` gold class ids or scores.

    Returns:
        `dict` from metric name to float; `MAIN_METRIC[kind]` names the one to select models by.
    """
    _check_kind(kind)
    predictions, labels = np.asarray(predictions), np.asarray(labels).reshape(-1)
    if len(labels) == 0:
        raise LightPeftError("cannot compute metrics on zero examples; check --max_eval_samples and the eval split")
    if kind == "pearson":
        scores = _regression_scores(predictions)
        _check_same_length(scores, labels)
        pearson_value, spearman_value = pearson(scores, labels), spearman(scores, labels)
        return {"pearson": pearson_value, "spearman": spearman_value, "combined": (pearson_value + spearman_value) / 2}
    ids, labels = _class_ids(predictions), labels.astype(np.int64)
    _check_same_length(ids, labels)
    result = {"accuracy": accuracy(ids, labels)}
    if kind == "f1":
        result["f1"] = f1_binary(ids, labels)
    elif kind == "mcc":
        result["matthews_correlation"] = matthews_corrcoef(ids, labels)
    return result


def _check_same_length(predictions: np.ndarray, labels: np.ndarray) -> None:
    if len(predictions) != len(labels):
        raise LightPeftError(
            f"got {len(predictions)} predictions for {len(labels)} labels; "
            "evaluate predictions and labels of one split"
        )


def make_hf_compute_metrics(kind: str) -> Callable[[object], dict[str, float]]:
    """A `compute_metrics` callable for `transformers.Trainer`.

    Args:
        kind: a key of `MAIN_METRIC` (checked now, not at the first evaluation).

    Returns:
        A function of an `EvalPrediction`; when the model returns several outputs (a tuple of predictions),
        the first one (the logits) is scored.
    """
    _check_kind(kind)

    def hf_compute_metrics(eval_prediction) -> dict[str, float]:
        predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        if isinstance(labels, (tuple, list)):
            labels = labels[0]
        return compute_metrics(kind, predictions, labels)

    return hf_compute_metrics
