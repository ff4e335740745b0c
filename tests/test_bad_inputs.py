"""The catalogue of bad inputs: each one ends `lightpeft.cli.main` with exit status 2 and a single `error:` line that
names the problem (no traceback), before any training, leaving no output directory behind.

A case is (id, argv, setup, expected): `setup(tmp_path, model_dir, csv, monkeypatch)` writes what the case needs (or
simulates a fault) and returns the paths it adds to the placeholders of `argv` (MODEL, CSV, OUT, PLAN and RUN, a
finished tiny run, are always there). Faults in the middle of a command (a full disk) may keep the command's
resumable staging area, and then the error line says so; nothing else may appear."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file
from transformers import TrainerCallback

from lightpeft.cli import main

TRAIN = ["train", "--model_name_or_path", "MODEL", "--task", "CSV", "--output_dir", "OUT", "--use_cpu", "true",
         "--max_seq_length", "16", "--num_train_epochs", "1", "--disable_tqdm", "true"]


def model_copy(tmp_path, model_dir, drop=()):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    for name in drop:
        (copy / name).unlink()
    return copy


def no_tokenizer_files(tmp_path, model_dir, csv, mp):
    return {"MODEL": model_copy(tmp_path, model_dir, drop=("tokenizer.json", "tokenizer_config.json", "vocab.txt"))}


def special_tokens_only(tmp_path, model_dir, csv, mp):
    from transformers import BertTokenizerFast

    # transformers v5 ignores `vocab_file=`: such a tokenizer saves only [PAD] [UNK] [CLS] [SEP] [MASK]
    copy = model_copy(tmp_path, model_dir, drop=("tokenizer.json", "tokenizer_config.json", "vocab.txt"))
    BertTokenizerFast(vocab_file=str(model_dir / "vocab.txt")).save_pretrained(copy)
    return {"MODEL": copy}


def no_config(tmp_path, model_dir, csv, mp):
    return {"MODEL": model_copy(tmp_path, model_dir, drop=("config.json",))}


def truncated_weights(tmp_path, model_dir, csv, mp):
    copy = model_copy(tmp_path, model_dir)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return {"MODEL": copy}


def no_weights(tmp_path, model_dir, csv, mp):
    return {"MODEL": model_copy(tmp_path, model_dir, drop=("model.safetensors",))}


def scores_with(bad: str, row: int):
    """A regression file (fractional scores) whose data row `row` holds `bad`."""

    def setup(tmp_path, model_dir, csv, mp):
        rows = [f"w{i % 50} w{(i * 7) % 50},{(i % 9) / 2 + 0.25}" for i in range(40)]
        rows[row - 1] = rows[row - 1].rsplit(",", 1)[0] + f",{bad}"
        path = tmp_path / "scores.csv"
        path.write_text("\n".join(["text,label", *rows]) + "\n")
        return {"CSV": path}

    return setup


def literal_nan_class(tmp_path, model_dir, csv, mp):
    lines = csv.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",nan"
    path = tmp_path / "classes.csv"
    path.write_text("\n".join(lines) + "\n")
    return {"CSV": path}


def eval_only_class(tmp_path, model_dir, csv, mp):
    lines = csv.read_text().splitlines()[:21]  # header + 20 rows of labels 0/1
    lines[3] = lines[3].rsplit(",", 1)[0] + ",2"  # eval row 3: a class no training row has
    path = tmp_path / "dev.csv"
    path.write_text("\n".join(lines) + "\n")
    return {"EVAL": path}


def config_with_unknown_key(tmp_path, model_dir, csv, mp):
    config = tmp_path / "c.yaml"
    config.write_text("head_ration: 0.5\n")
    return {"CONFIG": config}


def disk_full_at(target: str):
    """Simulate a full disk: `target` (a module's `save_file`) raises ENOSPC, as the OS reports it."""

    def setup(tmp_path, model_dir, csv, mp):
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        mp.setattr(target, full)
        return {}

    return setup


def data_file(name: str, text: str):
    def setup(tmp_path, model_dir, csv, mp):
        path = tmp_path / name
        path.write_text(text)
        return {"CSV": path}

    return setup


def plan_edited(edit):
    """The finished tiny run's plan with `edit(plan_json)` applied, as PLAN."""

    def setup(tmp_path, model_dir, csv, mp, run_dir=None):
        plan = json.loads((run_dir / "plan.json").read_text())
        path = tmp_path / "edited-plan.json"
        if edit is None:  # not JSON at all
            path.write_text("{oops")
        else:
            edit(plan)
            path.write_text(json.dumps(plan))
        return {"PLAN_IN": path}

    setup.needs_run = True
    return setup


def _set(path: tuple, value):
    def edit(plan):
        node = plan
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def estimate_without(name: str):
    def setup(tmp_path, model_dir, csv, mp, run_dir=None):
        copy = tmp_path / "estimate"
        shutil.copytree(run_dir / "estimate", copy)
        (copy / name).unlink()
        return {"EST": copy}

    setup.needs_run = True
    return setup


def run_copy(edit):
    def setup(tmp_path, model_dir, csv, mp, run_dir=None):
        copy = tmp_path / "run-copy"
        shutil.copytree(run_dir, copy)
        edit(copy)
        return {"RUN": copy}

    setup.needs_run = True
    return setup


def swap_weights(run):
    from safetensors.torch import load_file

    state = load_file(run / "peft_weights.safetensors")
    save_file({k: v + 1.0 for k, v in state.items()}, run / "peft_weights.safetensors")


class _Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt("simulated crash")


def _interrupted_train(mp, argv):
    """Run `argv` (a train command) until it crashes at step 3, after its checkpoint at step 2."""
    from lightpeft.stages import train as train_stage

    original = train_stage.make_trainer
    mp.setattr(train_stage, "make_trainer", lambda *a, callbacks=(), **kw: original(*a, callbacks=[*callbacks,
                                                                                                   _Crash()], **kw))
    assert main(argv) == 130
    mp.setattr(train_stage, "make_trainer", original)


SAVE_EVERY_2 = ["--save_strategy", "steps", "--save_steps", "2"]


def interrupted_then(change):
    """A train command crashed after a checkpoint; `change(tmp_path)` alters what the rerun meets."""

    def setup(tmp_path, model_dir, csv, mp):
        argv = [str({"MODEL": model_dir, "CSV": csv, "OUT": tmp_path / "out"}.get(a, a)) for a in TRAIN]
        _interrupted_train(mp, [*argv, *SAVE_EVERY_2])
        change(tmp_path)
        return {}

    return setup


class NotATensor:
    """Anything but tensors in a pickle: torch's safe loader (weights_only=True) refuses it."""


def pickled_optimizer(tmp_path):
    (checkpoint,) = (tmp_path / ".out.partial" / "trainer").glob("checkpoint-*")
    torch.save({"state": {}, "param_groups": [], "extra": NotATensor()}, checkpoint / "optimizer.pt")


def pickled_base_weights(tmp_path, model_dir, csv, mp):
    from safetensors.torch import load_file

    copy = model_copy(tmp_path, model_dir)
    state = load_file(copy / "model.safetensors")
    (copy / "model.safetensors").unlink()
    torch.save({**state, "extra": NotATensor()}, copy / "pytorch_model.bin")
    return {"MODEL": copy}


def output_is_a_file(tmp_path, model_dir, csv, mp):
    path = tmp_path / "out-file"
    path.write_text("not a directory")
    return {"OUT": path, "KEEP": path}


def foreign_output_dir(tmp_path, model_dir, csv, mp):
    path = tmp_path / "mine"
    path.mkdir()
    (path / "notes.txt").write_text("my files")
    return {"OUT": path, "KEEP": path}


def encoder_with_prompts(tmp_path, model_dir, csv, mp):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"say w{i}", "response": f"w{i}"}) + "\n" for i in range(20)))
    return {"CSV": path}


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
    ("negative-distill-weight", [*TRAIN, "--distill_weight", "-0.1"], None, "--distill_weight must be in [0, 1]"),
    ("distill-weight-above-1", ["run", *TRAIN[1:], "--distill_weight", "1.5"], None,
     "--distill_weight must be in [0, 1], got 1.5"),
    ("zero-distill-temperature", [*TRAIN, "--distill_temperature", "0"], None,
     "--distill_temperature must be a finite number > 0"),
    ("distill-without-estimate", [*TRAIN, "--distill_weight", "0.5"], None,
     "--distill_weight needs a teacher: the Light-PEFT estimation model; pass --plan_path with the --estimate_dir"),
    ("distill-prune-peft", ["run", *TRAIN[1:], "--method", "prune_peft", "--distill_weight", "0.5"], None,
     "--method prune_peft retrains from scratch without one: drop --distill_weight"),
    ("unknown-flag", ["train", "--output_dir", "OUT", "--bogus_flag", "1"], None, "unknown arguments"),
    ("missing-config-file", ["plan", "--config", "/no/such.yaml"], None, "does not exist"),
    ("unknown-config-key", ["plan", "--config", "CONFIG"], config_with_unknown_key, "unknown keys: head_ration"),
    ("not-an-estimate-dir", ["plan", "--estimate_dir", "/nowhere", "--plan_path", "PLAN"], None,
     "not an estimate directory"),
    ("ratio-out-of-range", ["plan", "--head_ratio", "1.5", "--estimate_dir", "x", "--plan_path", "PLAN"], None,
     "[0, 1)"),
    # data files and columns
    ("unknown-text-column", [*TRAIN, "--text_column", "review"], None, "review"),
    ("unknown-label-column", [*TRAIN, "--label_column", "stars"], None, "stars"),
    ("empty-data-file", TRAIN, data_file("empty.csv", ""), "empty.csv"),
    ("header-only-data-file", TRAIN, data_file("header.csv", "text,label\n"), "header.csv"),
    ("missing-task-file", [*TRAIN[:4], "/no/such/data.csv", *TRAIN[5:]], None, "/no/such/data.csv"),
    ("missing-validation-file", [*TRAIN, "--validation_file", "/no/such/dev.csv"], None, "does not exist"),
    ("encoder-given-prompt-response-data", TRAIN, encoder_with_prompts, "causal"),
    # plans and estimates
    ("plan-with-string-indices", [*TRAIN, "--plan_path", "PLAN_IN"], plan_edited(_set(("heads", 0), ["a", "b"])),
     "heads"),
    ("plan-with-duplicate-heads", [*TRAIN, "--plan_path", "PLAN_IN"], plan_edited(_set(("heads", 0), [0, 0, 1])),
     "heads"),
    ("plan-with-wrong-num-layers", [*TRAIN, "--plan_path", "PLAN_IN"], plan_edited(_set(("num_layers",), 7)),
     "num_layers"),
    ("plan-of-another-base", [*TRAIN, "--plan_path", "PLAN_IN"], plan_edited(_set(("base_fingerprint",), "0" * 16)),
     "this plan was made for base checkpoint 0000000000000000"),
    ("plan-not-json", [*TRAIN, "--plan_path", "PLAN_IN"], plan_edited(None), "edited-plan.json"),
    ("estimate-missing-masks", ["plan", "--estimate_dir", "EST", "--plan_path", "PLAN"],
     estimate_without("masks.safetensors"), "masks.safetensors is corrupt or missing"),
    ("estimate-missing-importance", ["plan", "--estimate_dir", "EST", "--plan_path", "PLAN"],
     estimate_without("importance.safetensors"), "importance.safetensors is corrupt or missing"),
    ("estimate-dir-without-plan", [*TRAIN, "--estimate_dir", "EST"], estimate_without("masks.png"),
     "--estimate_dir needs a --plan_path"),
    # output directories
    ("output-dir-is-a-file", TRAIN, output_is_a_file, "is a file"),
    ("output-dir-of-foreign-files", [*TRAIN, "--overwrite_output_dir", "true"], foreign_output_dir,
     "lightpeft did not write"),
    ("output-dir-is-the-base-model", [*TRAIN[:6], "MODEL", *TRAIN[7:], "--overwrite_output_dir", "true"], None,
     "this command reads"),
    # full disk, pickles, resume
    ("disk-full-during-run", ["run", *TRAIN[1:], "--estimate_steps", "2"], disk_full_at("lightpeft.stages.train.save_file"),
     "run ran out of disk space ([Errno 28] No space left on device)"),
    ("disk-full-during-estimate", ["estimate", *TRAIN[1:], "--estimate_steps", "2"],
     disk_full_at("lightpeft.methods.light_peft.estimate.save_file"), "estimate ran out of disk space"),
    ("disk-full-during-export", ["export", "--run_dir", "RUN", "--output_dir", "OUT"],
     disk_full_at("lightpeft.stages.export.save_file"), "export ran out of disk space"),
    ("pickled-base-weights", TRAIN, pickled_base_weights, "holds a pickle that torch's safe loader refuses"),
    ("pickled-checkpoint-on-resume", [*TRAIN, *SAVE_EVERY_2], interrupted_then(pickled_optimizer),
     "checkpoint-2 holds a pickle that torch's safe loader refuses"),
    ("resume-with-a-changed-setting", [*TRAIN, *SAVE_EVERY_2, "--learning_rate", "0.01"],
     interrupted_then(lambda tmp_path: None), "interrupted run with other settings (training.learning_rate"),
    ("resume-from-checkpoint-flag", [*TRAIN, "--resume_from_checkpoint", "x"], None, "--resume_from_checkpoint is "
     "not used"),
    # using runs
    ("export-without-run-dir", ["export", "--output_dir", "OUT"], None, "needs --run_dir"),
    ("export-of-a-non-run", ["export", "--run_dir", "MODEL", "--output_dir", "OUT"], None,
     "not a finished run directory"),
    ("export-of-swapped-weights", ["export", "--run_dir", "RUN", "--output_dir", "OUT"], run_copy(swap_weights),
     "weights"),
    ("predict-missing-input-file", ["predict", "--run_dir", "RUN", "--input_file", "/no/such.txt"], None,
     "does not exist"),
    ("predict-text-and-input-file", ["predict", "--run_dir", "RUN", "--text", "a", "--input_file", "x.txt"], None,
     "pass either --text"),
    ("unknown-peft-kind", [*TRAIN, "--peft", "prefix"], None, "prefix"),
    # sharded training: statistics and saved weights would come from one shard
    ("fsdp-flag", ["run", *TRAIN[1:], "--fsdp", "full_shard"], None, "FSDP (sharded training) is not supported"),
    ("deepspeed-flag", ["estimate", *TRAIN[1:], "--deepspeed", "ds.json"], None,
     "DeepSpeed (sharded training) is not supported"),
    ("fsdp-by-accelerate-config", TRAIN, lambda tmp_path, model_dir, csv, mp: mp.setenv("ACCELERATE_USE_FSDP", "true")
     or {}, "FSDP (sharded training, ACCELERATE_USE_FSDP) is not supported"),
]


@pytest.mark.parametrize("argv, setup, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line_with_status_2(argv, setup, expected, tmp_path, tiny_model_dir, tiny_csv,
                                                    lora_run, monkeypatch, capsys):
    paths = {"MODEL": tiny_model_dir, "CSV": tiny_csv, "OUT": tmp_path / "out", "PLAN": tmp_path / "p.json",
             "RUN": lora_run[0]}
    if setup is not None:
        extra = {"run_dir": lora_run[0]} if getattr(setup, "needs_run", False) else {}
        paths.update(setup(tmp_path, tiny_model_dir, tiny_csv, monkeypatch, **extra))
    before = {p.name for p in tmp_path.iterdir()}
    capsys.readouterr()
    code = main([str(paths.get(arg, arg)) for arg in argv])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err and "weights_only=False" not in err
    assert paths.get("KEEP") == paths["OUT"] or not paths["OUT"].exists()
    assert not paths["PLAN"].exists()
    new = {p.name for p in tmp_path.iterdir()} - before  # nothing half-written; a kept staging area is announced
    assert new <= {".out.partial"} and (not new or "kept in" in errors[0]), (new, err)


def test_the_catalogue_has_at_least_40_cases():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)
