"""Metrics: numpy implementations cross-checked against scikit-learn / scipy (test-only dependencies)."""

import numpy as np
import pytest

from lightpeft.errors import LightPeftError
from lightpeft.metrics import (
    MAIN_METRIC,
    accuracy,
    compute_metrics,
    f1_binary,
    make_hf_compute_metrics,
    matthews_corrcoef,
    pearson,
    spearman,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
scipy_stats = pytest.importorskip("scipy.stats")


@pytest.fixture(params=[0, 1, 2])
def rng(request):
    return np.random.default_rng(request.param)


def test_accuracy_and_f1_match_sklearn(rng):
    labels, predictions = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert accuracy(predictions, labels) == pytest.approx(sklearn_metrics.accuracy_score(labels, predictions))
    assert f1_binary(predictions, labels) == pytest.approx(sklearn_metrics.f1_score(labels, predictions))


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_mcc_matches_sklearn(rng, num_classes):
    labels = rng.integers(0, num_classes, 300)
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, num_classes, 300))
    expected = sklearn_metrics.matthews_corrcoef(labels, predictions)
    assert matthews_corrcoef(predictions, labels) == pytest.approx(expected)


def test_pearson_and_spearman_match_scipy(rng):
    labels = rng.normal(size=150)
    predictions = labels + rng.normal(scale=0.8, size=150)
    assert pearson(predictions, labels) == pytest.approx(scipy_stats.pearsonr(predictions, labels)[0])
    assert spearman(predictions, labels) == pytest.approx(scipy_stats.spearmanr(predictions, labels)[0])


def test_spearman_averages_tied_ranks(rng):
    # STS-B scores repeat a lot (0.0, 0.2, ... 5.0): ties must share the mean rank, as in scipy.
    labels = rng.integers(0, 6, 120).astype(float)
    predictions = np.round(labels + rng.normal(scale=1.0, size=120))
    assert spearman(predictions, labels) == pytest.approx(scipy_stats.spearmanr(predictions, labels)[0])


def test_degenerate_inputs_give_zero_not_nan():
    constant = np.zeros(10, dtype=int)
    labels = np.array([0, 1] * 5)
    assert matthews_corrcoef(constant, labels) == 0.0
    assert f1_binary(constant, constant) == 0.0
    assert pearson(np.ones(10), labels) == 0.0
    assert spearman(np.ones(10), labels) == 0.0


def test_compute_metrics_classification_kinds_use_argmax_of_logits():
    logits = np.array([[2.0, 0.1], [0.1, 3.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 1])
    assert compute_metrics("accuracy", logits, labels) == {"accuracy": 0.75}
    with_f1 = compute_metrics("f1", logits, labels)
    assert with_f1["accuracy"] == 0.75 and with_f1["f1"] == pytest.approx(0.8)
    with_mcc = compute_metrics("mcc", logits, labels)
    assert set(with_mcc) == {"matthews_correlation", "accuracy"}
    assert with_mcc["matthews_correlation"] == pytest.approx(sklearn_metrics.matthews_corrcoef(labels, [0, 1, 0, 1]))


def test_compute_metrics_accepts_class_ids_and_float_labels():
    # Trainer hands labels back as floats when the dataset stored them so; ids (N,) are accepted as predictions.
    assert compute_metrics("accuracy", np.array([0, 1, 1]), np.array([0.0, 1.0, 0.0])) == {"accuracy": 2 / 3}


@pytest.mark.parametrize("shape", [(50,), (50, 1)])
def test_compute_metrics_regression(rng, shape):
    labels = rng.uniform(0, 5, 50)
    predictions = (labels + rng.normal(size=50)).reshape(shape)
    result = compute_metrics("pearson", predictions, labels)
    assert set(result) == {"pearson", "spearman", "combined"}
    assert result["pearson"] == pytest.approx(scipy_stats.pearsonr(predictions.ravel(), labels)[0])
    assert result["combined"] == pytest.approx((result["pearson"] + result["spearman"]) / 2)


@pytest.mark.parametrize("kind", list(MAIN_METRIC))
def test_main_metric_is_in_every_result(kind):
    predictions = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]]) if kind != "pearson" else np.array([0.1, 0.5, 0.9])
    labels = np.array([1, 0, 0])
    assert MAIN_METRIC[kind] in compute_metrics(kind, predictions, labels)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: compute_metrics("bleu", np.zeros((2, 2)), np.zeros(2)), "use one of"),
        (lambda: compute_metrics("accuracy", np.zeros((3, 2)), np.zeros(2)), "3 predictions for 2 labels"),
        (lambda: compute_metrics("pearson", np.zeros((3, 2)), np.zeros(3)), "num_labels=1"),
        (lambda: compute_metrics("accuracy", np.zeros((3, 2, 2)), np.zeros(3)), "logits (N, C)"),
        (lambda: compute_metrics("accuracy", np.zeros((0, 2)), np.zeros(0)), "zero examples"),
        (lambda: make_hf_compute_metrics("rouge"), "use one of"),
    ],
)
def test_bad_inputs_raise_one_line_errors(call, needle):
    with pytest.raises(LightPeftError) as error:
        call()
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_hf_compute_metrics_takes_first_of_tuple_predictions():
    from transformers import EvalPrediction

    logits = np.array([[0.0, 1.0], [1.0, 0.0]])
    hidden = np.zeros((2, 4, 8))
    metric_fn = make_hf_compute_metrics("f1")
    result = metric_fn(EvalPrediction(predictions=(logits, hidden), label_ids=np.array([1, 1])))
    assert result == {"accuracy": 0.5, "f1": pytest.approx(2 / 3)}
