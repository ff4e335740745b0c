"""The catalogue of bad inputs: each one ends `lightpeft.cli.main` with exit status 2 and a single `error:` line that
names the problem (no traceback), before any training, leaving no output directory behind.

A case is (id, argv, setup, expected): `setup(tmp_path, model_dir, csv)` writes what the case needs and returns the
paths it adds to the placeholders of `argv` (MODEL, CSV, OUT and PLAN are always there)."""

from __future__ import annotations

import shutil

import pytest

from lightpeft.cli import main

TRAIN = ["train", "--model_name_or_path", "MODEL", "--task", "CSV", "--output_dir", "OUT", "--use_cpu", "true",
         "--max_seq_length", "16", "--num_train_epochs", "1", "--disable_tqdm", "true"]


def model_copy(tmp_path, model_dir, drop=()):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    for name in drop:
        (copy / name).unlink()
    return copy


def no_tokenizer_files(tmp_path, model_dir, csv):
    return {"MODEL": model_copy(tmp_path, model_dir, drop=("tokenizer.json", "tokenizer_config.json", "vocab.txt"))}


def special_tokens_only(tmp_path, model_dir, csv):
    from transformers import BertTokenizerFast

    # transformers v5 ignores `vocab_file=`: such a tokenizer saves only [PAD] [UNK] [CLS] [SEP] [MASK]
    copy = model_copy(tmp_path, model_dir, drop=("tokenizer.json", "tokenizer_config.json", "vocab.txt"))
    BertTokenizerFast(vocab_file=str(model_dir / "vocab.txt")).save_pretrained(copy)
    return {"MODEL": copy}


def no_config(tmp_path, model_dir, csv):
    return {"MODEL": model_copy(tmp_path, model_dir, drop=("config.json",))}


def truncated_weights(tmp_path, model_dir, csv):
    copy = model_copy(tmp_path, model_dir)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return {"MODEL": copy}


def no_weights(tmp_path, model_dir, csv):
    return {"MODEL": model_copy(tmp_path, model_dir, drop=("model.safetensors",))}


def scores_with(bad: str, row: int):
    """A regression file (fractional scores) whose data row `row` holds `bad`."""

    def setup(tmp_path, model_dir, csv):
        rows = [f"w{i % 50} w{(i * 7) % 50},{(i % 9) / 2 + 0.25}" for i in range(40)]
        rows[row - 1] = rows[row - 1].rsplit(",", 1)[0] + f",{bad}"
        path = tmp_path / "scores.csv"
        path.write_text("\n".join(["text,label", *rows]) + "\n")
        return {"CSV": path}

    return setup


def literal_nan_class(tmp_path, model_dir, csv):
    lines = csv.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",nan"
    path = tmp_path / "classes.csv"
    path.write_text("\n".join(lines) + "\n")
    return {"CSV": path}


def eval_only_class(tmp_path, model_dir, csv):
    lines = csv.read_text().splitlines()[:21]  # header + 20 rows of labels 0/1
    lines[3] = lines[3].rsplit(",", 1)[0] + ",2"  # eval row 3: a class no training row has
    path = tmp_path / "dev.csv"
    path.write_text("\n".join(lines) + "\n")
    return {"EVAL": path}


def config_with_unknown_key(tmp_path, model_dir, csv):
    config = tmp_path / "c.yaml"
    config.write_text("head_ration: 0.5\n")
    return {"CONFIG": config}


CASES = [
    # model and tokenizer directories
    ("missing-model-dir", ["train", "--model_name_or_path", "/no/such/model", "--output_dir", "OUT"], None,
     "does not exist"),
    ("no-tokenizer-files", TRAIN, no_tokenizer_files, "has no tokenizer files"),
    ("tokenizer-of-special-tokens-only", TRAIN, special_tokens_only, "holds only its 5 special tokens"),
    ("no-config-json", TRAIN, no_config, "has no config.json"),
    ("truncated-safetensors", TRAIN, truncated_weights, "model.safetensors is not a readable safetensors file"),
    ("no-weight-files", TRAIN, no_weights, "cannot load weights from"),
    # labels
    ("regression-nan", TRAIN, scores_with("nan", 7), "label 'nan' in column 'label'"),
    ("regression-inf", TRAIN, scores_with("inf", 12), "(data row 12) is not a finite value"),
    ("literal-nan-class", TRAIN, literal_nan_class, "(data row 5) is not a finite value"),
    ("class-only-in-eval", [*TRAIN, "--validation_file", "EVAL"], eval_only_class,
     "dev.csv, row 3) but in no training row"),
    # training arguments
    ("zero-epochs", [*TRAIN, "--num_train_epochs", "0"], None, "--num_train_epochs must be a finite number > 0"),
    ("negative-epochs", ["run", *TRAIN[1:], "--num_train_epochs", "-1"], None, "or pass --max_steps N > 0"),
    ("negative-learning-rate", [*TRAIN, "--learning_rate", "-1"], None, "--learning_rate must be a finite number"),
    ("nan-learning-rate", [*TRAIN, "--learning_rate", "nan"], None, "got nan"),
    ("zero-batch-size", [*TRAIN, "--per_device_train_batch_size", "0"], None,
     "--per_device_train_batch_size must be a finite number > 0, got 0"),
    # flags, config files and plans
    ("unknown-flag", ["train", "--output_dir", "OUT", "--bogus_flag", "1"], None, "unknown arguments"),
    ("missing-config-file", ["plan", "--config", "/no/such.yaml"], None, "does not exist"),
    ("unknown-config-key", ["plan", "--config", "CONFIG"], config_with_unknown_key, "unknown keys: head_ration"),
    ("not-an-estimate-dir", ["plan", "--estimate_dir", "/nowhere", "--plan_path", "PLAN"], None,
     "not an estimate directory"),
    ("ratio-out-of-range", ["plan", "--head_ratio", "1.5", "--estimate_dir", "x", "--plan_path", "PLAN"], None,
     "[0, 1)"),
]


@pytest.mark.parametrize("argv, setup, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line_with_status_2(argv, setup, expected, tmp_path, tiny_model_dir, tiny_csv,
                                                    capsys):
    paths = {"MODEL": tiny_model_dir, "CSV": tiny_csv, "OUT": tmp_path / "out", "PLAN": tmp_path / "p.json"}
    paths.update(setup(tmp_path, tiny_model_dir, tiny_csv) if setup else {})
    code = main([str(paths.get(arg, arg)) for arg in argv])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err
    assert not paths["OUT"].exists() and not paths["PLAN"].exists()
