"""Evaluation metrics computed locally with numpy: GLUE/SuperGLUE classification and regression, SQuAD exact match
and F1, and causal-LM perplexity.

`evaluate.load(...)` fetches metric scripts from the hub, which fails offline, and scipy/scikit-learn are not
dependencies, so the few formulas needed are written out here (and cross-checked against sklearn/scipy in tests).
"""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Callable

import numpy as np
import torch

from lightpeft.errors import LightPeftError

# Metric reported as `eval_<name>` and used for model selection, per metric kind.
MAIN_METRIC = {
    "accuracy": "accuracy",
    "f1": "f1",  # + accuracy (MRPC, QQP)
    "mcc": "matthews_correlation",  # + accuracy (CoLA)
    "accuracy_macro_f1": "accuracy",  # + macro F1 (CB, as SuperGLUE reports it; the paper selects by accuracy)
    "pearson": "pearson",  # + spearman, combined (STS-B)
    "squad": "f1",  # + exact_match (extractive QA)
    "perplexity": "perplexity",  # + nll (causal LM)
}
PUNCTUATION = frozenset(string.punctuation)
# Direction of each main metric, for `metric_for_best_model` / `greater_is_better`.
GREATER_IS_BETTER = {kind: kind != "perplexity" for kind in MAIN_METRIC}


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


def f1_macro(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean over classes of per-class F1, over the classes present in labels or predictions (sklearn's
    `f1_score(average="macro")`); a class with no true and no predicted positives does not occur, so never counts."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    scores = []
    for cls in np.union1d(labels, predictions):
        true_pos = np.sum((predictions == cls) & (labels == cls))
        wrong = np.sum((predictions == cls) != (labels == cls))  # false positives + false negatives
        scores.append(2 * true_pos / (2 * true_pos + wrong))
    return float(np.mean(scores))


# ----------------------------------------------------------------------------------------------------------------
# SQuAD (the official v1.1/v2.0 evaluation's normalisation and token F1)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, the articles a/an/the, and extra whitespace."""
    text = "".join(char for char in text.lower() if char not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_exact_match(prediction: str, gold_answers: list[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer (no answers: gold is the empty string)."""
    return float(any(normalize_answer(prediction) == normalize_answer(gold) for gold in gold_answers or [""]))


def squad_f1(prediction: str, gold_answers: list[str]) -> float:
    """Best token-overlap F1 against the gold answers; an empty side scores 1.0 only against another empty side."""
    return max(_token_f1(prediction, gold) for gold in gold_answers or [""])


def _token_f1(prediction: str, gold: str) -> float:
    predicted_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted_tokens or not gold_tokens:
        return float(predicted_tokens == gold_tokens)
    common = sum((collections.Counter(predicted_tokens) & collections.Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: list[str], gold_answers: list[list[str]]) -> dict[str, float]:
    """Mean exact match and F1 over questions, as fractions (the official script prints them x100)."""
    _check_same_length(predictions, gold_answers)
    return {
        "exact_match": float(np.mean([squad_exact_match(p, g) for p, g in zip(predictions, gold_answers)])),
        "f1": float(np.mean([squad_f1(p, g) for p, g in zip(predictions, gold_answers)])),
    }


# ----------------------------------------------------------------------------------------------------------------
# Causal LM


def token_nll_for_metrics(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood `(B, T)`, aligned with `labels` (position t scores labels[t] from the
    logits at t-1, as the model's loss does); position 0 and ignored labels get 0.

    Pass as `Trainer(preprocess_logits_for_metrics=...)` so evaluation keeps `(B, T)` numbers instead of
    `(B, T, vocab)` logits; `compute_metrics("perplexity", nll, labels)` then averages over the scored tokens.
    """
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    shifted_labels = labels[:, 1:]  # (B, T-1): the token each position predicts
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    scored = shifted_labels != -100
    picked = log_probs.gather(-1, shifted_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    nll = torch.where(scored, -picked, torch.zeros_like(picked))
    return torch.cat([torch.zeros_like(nll[:, :1]), nll], dim=1)  # (B, T)


def perplexity_from_loss(mean_nll: float) -> float:
    """exp(mean token NLL); `inf` instead of an overflow."""
    return math.exp(mean_nll) if mean_nll < 700 else math.inf


def lm_metrics(token_nll: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Token-weighted mean NLL of the scored tokens (labels != -100, position 0 excluded) and its perplexity."""
    token_nll, labels = np.asarray(token_nll, dtype=np.float64), np.asarray(labels)
    if token_nll.shape != labels.shape or token_nll.ndim != 2:
        raise LightPeftError(f"perplexity needs per-token NLL and labels of one shape (N, T), got {token_nll.shape} "
                             f"and {labels.shape}; pass preprocess_logits_for_metrics=token_nll_for_metrics")
    scored = labels[:, 1:] != -100
    if not scored.any():
        raise LightPeftError("no response tokens to score; check that the eval records have responses")
    mean_nll = float(token_nll[:, 1:][scored].mean())
    return {"perplexity": perplexity_from_loss(mean_nll), "nll": mean_nll}


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


def compute_metrics(kind: str, predictions, labels) -> dict[str, float]:
    """Metrics of one evaluation run.

    Args:
        kind: a key of `MAIN_METRIC`:
            - `"accuracy"`; `"f1"` (accuracy and positive-class F1: MRPC, QQP); `"mcc"` (Matthews correlation and
              accuracy: CoLA); `"accuracy_macro_f1"` (accuracy and macro F1: CB);
            - `"pearson"` (regression: pearson, spearman and combined = their mean: STS-B);
            - `"squad"` (exact_match and f1 of answer texts, as fractions);
            - `"perplexity"` (perplexity and nll, from per-token NLL: see `token_nll_for_metrics`).
        predictions: classification: logits `(N, C)` or class ids `(N,)`; regression: scores `(N,)` or `(N, 1)`;
            squad: `N` answer strings; perplexity: per-token NLL `(N, T)`.
        labels: gold class ids or scores `(N,)`; squad: `N` lists of gold answer strings (empty: unanswerable);
            perplexity: token labels `(N, T)` with -100 where no loss is taken.

    Returns:
        `dict` from metric name to float; `MAIN_METRIC[kind]` names the one to select models by
        (`GREATER_IS_BETTER[kind]` its direction).
    """
    _check_kind(kind)
    if len(labels) == 0:
        raise LightPeftError("cannot compute metrics on zero examples; check --max_eval_samples and the eval split")
    if kind == "squad":
        return squad_metrics(list(predictions), [list(gold) for gold in labels])
    if kind == "perplexity":
        return lm_metrics(predictions, labels)
    predictions, labels = np.asarray(predictions), np.asarray(labels).reshape(-1)
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
    elif kind == "accuracy_macro_f1":
        result["macro_f1"] = f1_macro(ids, labels)
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
        kind: a key of `MAIN_METRIC` (checked now, not at the first evaluation). Not `"squad"`: QA predictions
            must be turned into answer texts first, which `lightpeft.data.make_qa_compute_metrics` does. For
            `"perplexity"`, give the Trainer `preprocess_logits_for_metrics=token_nll_for_metrics`.

    Returns:
        A function of an `EvalPrediction`; when the model returns several outputs (a tuple of predictions),
        the first one (the logits) is scored.
    """
    _check_kind(kind)
    if kind == "squad":
        raise LightPeftError("SQuAD metrics need the eval examples and features; use "
                             "lightpeft.data.make_qa_compute_metrics(examples, features)")

    def hf_compute_metrics(eval_prediction) -> dict[str, float]:
        predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        if isinstance(labels, (tuple, list)):
            labels = labels[0]
        return compute_metrics(kind, predictions, labels)

    return hf_compute_metrics
