"""SuperGLUE directories: the real BoolQ / CB / COPA / WiC files, the reference input formats, detection, errors."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from lightpeft.data import SUPERGLUE_FORMATS
from lightpeft.metrics import MAIN_METRIC

from helpers import SHARED_DATA, load, load_error


def shared(task_dir: str) -> Path:
    path = SHARED_DATA / task_dir
    if not path.is_dir():
        pytest.skip(f"shared SuperGLUE data not found at {path} (set LIGHTPEFT_SHARED_DATA)")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def counts(labels) -> dict:
    values, numbers = np.unique(labels, return_counts=True)
    return dict(zip(values.tolist(), numbers.tolist(), strict=True))


# ----------------------------------------------------------------------------------------------------------------
# Real directories (shared/data)


@pytest.mark.parametrize(
    "task_dir, name, num_train, num_eval, label_names, metric_kind, has_pair",
    [
        ("CB", "cb", 250, 56, ["entailment", "contradiction", "neutral"], "accuracy_macro_f1", True),
        ("COPA", "copa", 400, 100, ["choice1", "choice2"], "accuracy", True),
        ("WiC", "wic", 5428, 638, ["False", "True"], "accuracy", False),
    ],
)
def test_real_superglue_dirs(task_dir, name, num_train, num_eval, label_names, metric_kind, has_pair):
    task = load(shared(task_dir))
    assert (task.name, task.kind, len(task.train), len(task.eval)) == (name, "classification", num_train, num_eval)
    assert (task.label_names, task.num_labels, task.metric_kind) == (label_names, len(label_names), metric_kind)
    assert task.has_pair == has_pair and task.metric_kind in MAIN_METRIC


def test_real_label_distributions_match_the_readme():
    cb = load(shared("CB"))
    assert counts(cb.train["label"]) == {0: 115, 1: 119, 2: 16}  # entailment / contradiction / neutral
    assert counts(cb.eval["label"]) == {0: 23, 1: 28, 2: 5}
    assert counts(load(shared("COPA")).eval["label"]) == {0: 55, 1: 45}
    assert counts(load(shared("WiC")).eval["label"]) == {0: 319, 1: 319}


def test_real_boolq_val_only_is_split_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="lightpeft.data"):
        boolq = load(shared("BoolQ"), validation_fraction=0.1, split_seed=3)
    assert "has only val.jsonl" in caplog.text
    assert (boolq.name, len(boolq.train), len(boolq.eval)) == ("boolq", 2943, 327)
    assert counts([*boolq.train["label"], *boolq.eval["label"]]) == {0: 1237, 1: 2033}  # False / True
    assert load(shared("BoolQ"), validation_fraction=0.1, split_seed=3).eval["text"] == list(boolq.eval["text"])
    assert load(shared("BoolQ"), validation_fraction=0.1, split_seed=4).eval["text"] != list(boolq.eval["text"])


def test_real_boolq_is_question_then_passage():
    first = json.loads((shared("BoolQ") / "val.jsonl").read_text().splitlines()[0])
    boolq = load(shared("BoolQ"), validation_fraction=0.5)
    rows = {row["text"]: row for row in [*boolq.train, *boolq.eval]}
    row = rows[first["question"]]
    assert row["text_pair"] == first["passage"] and row["label"] == int(first["label"])


def test_real_copa_pair_text():
    # val idx 0: "The man turned on the faucet." effect -> choice2 "Water flowed from the spout."
    copa = load(shared("COPA"))
    assert copa.eval[0] == {
        "text": "The man turned on the faucet. so",
        "text_pair": "choice1: The toilet filled with water. choice2: Water flowed from the spout.",
        "label": 1,
    }
    causes = [row for row in copa.train if row["text"].endswith(" because")]
    effects = [row for row in copa.train if row["text"].endswith(" so")]
    assert len(causes) + len(effects) == 400 and causes and effects


def test_real_wic_single_text_prompt():
    wic = load(shared("WiC"))
    assert wic.eval[0] == {
        "text": "An emerging professional class. Apologizing for losing your temper, even though you were badly "
                "provoked, showed real class. Does class have the same meaning in both sentences?",
        "label": 0,
    }


def test_real_cb_premise_hypothesis():
    cb = load(shared("CB"))
    assert cb.eval[0]["text_pair"] == "Valence was helping" and cb.eval[0]["label"] == 1  # contradiction


# ----------------------------------------------------------------------------------------------------------------
# Synthetic directories: RTE JSONL, detection by keys, errors

RTE_ROWS = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": label, "idx": i}
            for i, label in enumerate(["entailment", "not_entailment", "entailment"])]


def test_superglue_rte_jsonl_dir(tmp_path):
    write_jsonl(tmp_path / "RTE" / "train.jsonl", RTE_ROWS)
    write_jsonl(tmp_path / "RTE" / "val.jsonl", RTE_ROWS[:2])
    task = load(tmp_path / "RTE")
    assert (task.name, task.label_names, task.metric_kind) == ("rte", ["entailment", "not_entailment"], "accuracy")
    assert task.train["label"] == [0, 1, 0] and task.eval["text"] == ["p0", "p1"]


@pytest.mark.parametrize(
    "records, expected",
    [
        (RTE_ROWS, "rte"),
        ([{"premise": "p", "hypothesis": "h", "label": "neutral"}] * 2, "cb"),
        ([{"question": "q", "passage": "p", "label": True}] * 2, "boolq"),
        ([{"word": "w", "sentence1": "a", "sentence2": "b", "label": False}] * 2, "wic"),
        ([{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 0}] * 2, "copa"),
    ],
)
def test_task_detected_from_keys_when_dir_name_is_unknown(tmp_path, records, expected):
    write_jsonl(tmp_path / "my_task" / "train.jsonl", records)
    write_jsonl(tmp_path / "my_task" / "dev.jsonl", records)
    assert load(tmp_path / "my_task").name == expected


def test_json_booleans_and_int_labels(tmp_path):
    write_jsonl(tmp_path / "BoolQ" / "train.jsonl", [{"question": "q", "passage": "p", "label": v}
                                                      for v in (True, False, True)])
    write_jsonl(tmp_path / "BoolQ" / "val.jsonl", [{"question": "q", "passage": "p", "label": False}])
    task = load(tmp_path / "BoolQ")
    assert task.train["label"] == [1, 0, 1] and task.eval["label"] == [0]


@pytest.mark.parametrize("name", ["MultiRC", "ReCoRD", "WSC"])
def test_unsupported_superglue_tasks_say_so(tmp_path, name):
    write_jsonl(tmp_path / name / "train.jsonl", [{"text": "t", "label": 0}])
    message = load_error(tmp_path / name)
    assert "not supported" in message and "copa" in message


def test_unknown_jsonl_dir_is_rejected(tmp_path):
    write_jsonl(tmp_path / "stuff" / "train.jsonl", [{"body": "t", "label": 0}])
    message = load_error(tmp_path / "stuff")
    assert "not a recognised SuperGLUE task" in message and "--validation_file" in message


def test_missing_key_and_unknown_label_are_reported(tmp_path):
    write_jsonl(tmp_path / "CB" / "train.jsonl", [{"premise": "p", "label": "neutral"}])
    write_jsonl(tmp_path / "CB" / "val.jsonl", [{"premise": "p", "hypothesis": "h", "label": "neutral"}])
    assert "train record 1" in load_error(tmp_path / "CB") and "hypothesis" in load_error(tmp_path / "CB")
    write_jsonl(tmp_path / "CB" / "train.jsonl", [{"premise": "p", "hypothesis": "h", "label": "maybe"}])
    assert "'maybe'" in load_error(tmp_path / "CB")


def test_copa_rejects_unknown_question(tmp_path):
    records = [{"premise": "p", "choice1": "a", "choice2": "b", "question": "reason", "label": 0}]
    write_jsonl(tmp_path / "COPA" / "train.jsonl", records)
    write_jsonl(tmp_path / "COPA" / "val.jsonl", records)
    assert "'cause' or 'effect'" in load_error(tmp_path / "COPA")


def test_single_record_cannot_be_split(tmp_path):
    write_jsonl(tmp_path / "CB" / "train.jsonl", [{"premise": "p", "hypothesis": "h", "label": "neutral"}])
    message = load_error(tmp_path / "CB")
    assert "too few to split" in message and "add val.jsonl" in message


def test_superglue_dir_rejects_file_only_options(tmp_path):
    write_jsonl(tmp_path / "CB" / "train.jsonl", RTE_ROWS)
    assert "--label_column" in load_error(tmp_path / "CB", label_column="x")


def test_every_superglue_metric_kind_is_known():
    assert {task_format.metric_kind for task_format in SUPERGLUE_FORMATS.values()} <= set(MAIN_METRIC)
