"""`lightpeft predict` and `lightpeft export` on the command line, and `predict_texts` in Python."""

import json

import pytest
import torch

from lightpeft import load_predictor, load_pruned, predict_texts
from lightpeft.cli import main
from lightpeft.core.models import load_tokenizer

TEXTS = ["w1 w5 w6 w7", "w8 w9 w10", "w2 w2 w11"]


def cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_predictions_are_the_model_argmax_and_softmax(adapter_run, base_model_dir):
    out, _ = adapter_run
    rows = predict_texts(load_predictor(out), TEXTS)
    model, tokenizer = load_pruned(str(base_model_dir), out), load_tokenizer(str(base_model_dir))
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt")).logits
    probs = torch.softmax(logits, -1)
    for row, p in zip(rows, probs):
        assert row["label_id"] == int(p.argmax()) and row["label"] == str(int(p.argmax()))
        assert list(row["probabilities"].values()) == pytest.approx(p.tolist(), abs=1e-6)


def test_cli_prints_a_table(lora_run, capsys):
    code, out, err = cli(["predict", "--run_dir", lora_run[0], "--text", *TEXTS], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "| text | label | p(0) | p(1) |" and len(lines) == 2 + len(TEXTS)


def test_cli_file_to_jsonl_same_for_run_and_export(lora_run, tmp_path, capsys):
    inputs = tmp_path / "in.csv"
    inputs.write_text("sentence,id\n" + "".join(f"{t},{i}\n" for i, t in enumerate(TEXTS)))
    export_dir = tmp_path / "export"
    code, out, err = cli(["export", "--run_dir", lora_run[0], "--output_dir", export_dir], capsys)
    assert code == 0 and "load_exported" in out, err
    results = {}
    for source in (lora_run[0], export_dir):
        target = tmp_path / f"{source.name}.jsonl"
        code, out, err = cli(["predict", "--run_dir", source, "--input_file", inputs, "--output_file", target],
                             capsys)
        assert code == 0, err
        results[source] = [json.loads(line) for line in target.read_text().splitlines()]
    run_rows, export_rows = results.values()
    assert [r["text"] for r in run_rows] == TEXTS
    assert [r["label"] for r in run_rows] == [r["label"] for r in export_rows]
    for a, b in zip(run_rows, export_rows):
        assert list(a["probabilities"].values()) == pytest.approx(list(b["probabilities"].values()), abs=1e-5)


def test_txt_input_one_text_per_line(adapter_run, tmp_path, capsys):
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(TEXTS) + "\n\n")
    code, out, _ = cli(["predict", "--run_dir", adapter_run[0], "--input_file", inputs], capsys)
    assert code == 0 and out.count("\n") == 2 + len(TEXTS) and "p(2)" in out


@pytest.mark.parametrize("argv, expected", [
    (["--run_dir", "RUN"], "either --text"),
    (["--run_dir", "RUN", "--text", "a", "--input_file", "BADCOLS"], "either --text"),
    (["--run_dir", "RUN", "--text", "a", "b", "--text_pair", "c"], "one value per --text"),
    (["--run_dir", "RUN", "--text", "a", "--text_pair", "c"], "single texts"),
    (["--run_dir", "MISSINGDIR", "--text", "a"], "not a finished run directory"),
    (["--run_dir", "RUN", "--input_file", "MISSINGFILE"], "does not exist"),
    (["--run_dir", "RUN", "--input_file", "BADCOLS", "--output_file", "OUT"], "no text column"),
    (["--run_dir", "RUN", "--text", "a", "--model_name_or_path", "MISSINGDIR"], "does not exist"),
    (["--run_dir", "RUN", "--text", "a", "--output_file", "EXISTING"], "already exists"),
])
def test_bad_input_is_one_line_and_writes_nothing(lora_run, tmp_path, capsys, argv, expected):
    (tmp_path / "bad.csv").write_text("words,label\na b,1\n")
    (tmp_path / "existing.jsonl").write_text("keep me\n")
    names = {"RUN": lora_run[0], "MISSINGDIR": tmp_path / "nowhere", "MISSINGFILE": tmp_path / "nowhere.csv",
             "BADCOLS": tmp_path / "bad.csv", "OUT": tmp_path / "out.jsonl", "EXISTING": tmp_path / "existing.jsonl"}
    code, _, err = cli(["predict", *(names.get(a, a) for a in argv)], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "out.jsonl").exists() and (tmp_path / "existing.jsonl").read_text() == "keep me\n"


def test_export_cli_refuses_bad_input(lora_run, tmp_path, capsys):
    code, _, err = cli(["export", "--run_dir", tmp_path / "nowhere", "--output_dir", tmp_path / "e"], capsys)
    assert code == 2 and "not a finished run directory" in err[0] and not (tmp_path / "e").exists()
    code, _, err = cli(["export", "--run_dir", lora_run[0]], capsys)
    assert code == 2 and "--output_dir" in err[0]
