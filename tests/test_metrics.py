"""Metrics: numpy implementations cross-checked against scikit-learn / scipy (test-only dependencies)."""

import numpy as np
import pytest

from lightpeft.errors import LightPeftError
from lightpeft.metrics import (
    GREATER_IS_BETTER,
    MAIN_METRIC,
    accuracy,
    compute_metrics,
    f1_binary,
    f1_macro,
    make_hf_compute_metrics,
    matthews_corrcoef,
    normalize_answer,
    pearson,
    spearman,
    squad_exact_match,
    squad_f1,
    token_nll_for_metrics,
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


EXAMPLE_INPUTS = {
    "pearson": (np.array([0.1, 0.5, 0.9]), np.array([1.0, 0.0, 0.0])),
    "squad": (["red fox", "", "a dog"], [["the red fox"], [], ["cat"]]),
    "perplexity": (np.full((3, 4), 0.5), np.array([[-100, 1, 2, -100]] * 3)),
}
CLASSIFICATION_INPUTS = (np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]]), np.array([1, 0, 0]))


@pytest.mark.parametrize("kind", list(MAIN_METRIC))
def test_main_metric_is_in_every_result(kind):
    predictions, labels = EXAMPLE_INPUTS.get(kind, CLASSIFICATION_INPUTS)
    assert MAIN_METRIC[kind] in compute_metrics(kind, predictions, labels)
    assert GREATER_IS_BETTER[kind] == (kind != "perplexity")


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_macro_f1_matches_sklearn(rng, num_classes):
    labels = rng.integers(0, num_classes, 200)
    predictions = np.where(rng.random(200) < 0.5, labels, rng.integers(0, num_classes, 200))
    expected = sklearn_metrics.f1_score(labels, predictions, average="macro")
    assert f1_macro(predictions, labels) == pytest.approx(expected)


def test_macro_f1_counts_a_class_only_predicted():
    # class 2 never in labels but predicted once: sklearn (labels=None) averages over the union {0, 1, 2}
    labels, predictions = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    assert f1_macro(predictions, labels) == pytest.approx(sklearn_metrics.f1_score(labels, predictions,
                                                                                    average="macro"))
    result = compute_metrics("accuracy_macro_f1", predictions, labels)
    assert result == {"accuracy": 0.75, "macro_f1": pytest.approx((2 / 3 + 1 + 0) / 3)}


# ----------------------------------------------------------------------------------------------------------------
# SQuAD: values computed by hand


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The  Luzhniki Stadium, in Moscow!", "luzhniki stadium in moscow"),
        ("An apple a day", "apple day"),
        ("theatre then", "theatre then"),  # articles only as whole words
        ("0.02% or higher", "002 or higher"),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_squad_exact_match_and_f1_by_hand():
    # prediction tokens {luzhniki, stadium}; gold {luzhniki, stadium, in, moscow}: P = 1, R = 1/2, F1 = 2/3
    assert squad_f1("Luzhniki Stadium", ["the Luzhniki Stadium in Moscow"]) == pytest.approx(2 / 3)
    assert squad_exact_match("Luzhniki Stadium", ["the Luzhniki Stadium in Moscow"]) == 0.0
    # the best gold answer counts: exact after normalisation against the second one
    assert squad_exact_match("Gringotts Wizarding Bank.", ["Gringotts", "the Gringotts Wizarding Bank"]) == 1.0
    # repeated tokens count with multiplicity: pred "21 21 to", gold "from 19 to 21": common {21, to} = 2,
    # P = 2/3, R = 2/4, F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = 4/7
    assert squad_f1("21 21 to", ["from 19 to 21"]) == pytest.approx(4 / 7)
    assert squad_f1("caffeine", ["Edward Barq"]) == 0.0
    # unanswerable (no gold): only the empty answer is right
    assert (squad_exact_match("", []), squad_f1("", []), squad_f1("x", [])) == (1.0, 1.0, 0.0)
    # an answer that normalises to nothing against a real answer
    assert squad_f1("the", ["Moscow"]) == 0.0


def test_compute_metrics_squad_averages_over_questions():
    predictions = ["Luzhniki Stadium", "July 8, 2014", "nothing"]
    gold = [["the Luzhniki Stadium in Moscow"], ["July 8, 2014"], ["Edward Barq"]]
    result = compute_metrics("squad", predictions, gold)
    assert result == {"exact_match": pytest.approx(1 / 3), "f1": pytest.approx((2 / 3 + 1 + 0) / 3)}


# ----------------------------------------------------------------------------------------------------------------
# Perplexity


def test_token_nll_matches_cross_entropy():
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=generator)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, 2, 6, 0]])
    nll = token_nll_for_metrics(logits, labels)
    assert nll.shape == (2, 5) and (nll[labels == -100] == 0).all() and (nll[:, 0] == 0).all()
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1))
    result = compute_metrics("perplexity", nll.numpy(), labels.numpy())
    assert result["nll"] == pytest.approx(expected.item(), rel=1e-6)
    assert result["perplexity"] == pytest.approx(np.exp(expected.item()), rel=1e-6)


def test_perplexity_through_hf_compute_metrics():
    from transformers import EvalPrediction

    nll = np.array([[0.0, 1.0, 3.0], [0.0, 2.0, -100.0]])  # -100: Trainer's padding where labels are -100 too
    labels = np.array([[-100, 5, 6], [-100, 7, -100]])
    result = make_hf_compute_metrics("perplexity")(EvalPrediction(predictions=nll, label_ids=labels))
    assert result == {"perplexity": pytest.approx(np.exp(2.0)), "nll": pytest.approx(2.0)}


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: compute_metrics("bleu", np.zeros((2, 2)), np.zeros(2)), "use one of"),
        (lambda: compute_metrics("accuracy", np.zeros((3, 2)), np.zeros(2)), "3 predictions for 2 labels"),
        (lambda: compute_metrics("pearson", np.zeros((3, 2)), np.zeros(3)), "num_labels=1"),
        (lambda: compute_metrics("accuracy", np.zeros((3, 2, 2)), np.zeros(3)), "logits (N, C)"),
        (lambda: compute_metrics("accuracy", np.zeros((0, 2)), np.zeros(0)), "zero examples"),
        (lambda: make_hf_compute_metrics("rouge"), "use one of"),
        (lambda: make_hf_compute_metrics("squad"), "make_qa_compute_metrics"),
        (lambda: compute_metrics("squad", ["a", "b"], [["a"]]), "2 predictions for 1 labels"),
        (lambda: compute_metrics("perplexity", np.zeros((2, 3)), np.zeros((2, 4))), "token_nll_for_metrics"),
        (lambda: compute_metrics("perplexity", np.zeros((2, 3)), np.full((2, 3), -100)), "no response tokens"),
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
