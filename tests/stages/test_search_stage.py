"""`lightpeft search` end to end on a tiny checkpoint: the search directory, its warm-up assignment reused by a
second search, a mixed LoRA + adapter plan that `lightpeft train --plan_path` retrains, saves and reloads with the
same logits, `lightpeft run --method prune_peft`, and bad input (one error line, nothing written)."""

import json

import pytest
import torch

from lightpeft import load_pruned
from lightpeft.cli import main
from lightpeft.core.plan import Plan

from conftest import example_batch

COMMON = ["--use_cpu", "true", "--max_seq_length", "16", "--disable_tqdm", "true", "--per_device_train_batch_size",
          "8", "--learning_rate", "5e-3", "--seed", "0"]


def search_argv(model_dir, csv, out, *more):
    return ["search", "--model_name_or_path", str(model_dir), "--task", str(csv), "--output_dir", str(out), *COMMON,
            "--round_steps", "2", *more]


@pytest.fixture(scope="module")
def searched(base_model_dir, tiny_csv, tmp_path_factory):
    """A warm-up search (tiny: 16 rows, one turn per criterion), stopped after one round: a mixed plan."""
    out = tmp_path_factory.mktemp("search") / "s"
    code = main(search_argv(base_model_dir, tiny_csv, out, "--budget_params", "2600", "--max_rounds", "1",
                            "--warmup_samples", "16", "--warmup_turns", "1", "--warmup_prune", "1",
                            "--warmup_epochs", "1"))
    assert code == 0
    return out


def test_the_search_directory_holds_plan_rounds_assignment_and_picture(searched):
    names = {p.name for p in searched.iterdir()}
    assert {"plan.json", "search.json", "assignment.json", "warmup.json", "survivors.png", "summary.md",
            "rounds", ".lightpeft"} <= names
    record = json.loads((searched / "search.json").read_text())
    (round_1,) = [json.loads(p.read_text()) for p in sorted((searched / "rounds").iterdir())]
    assert len(round_1["removed"]) == 1 and record["kept_modules"] == [m for m in record["supernet_modules"]
                                                                       if m not in round_1["removed"]]
    assert set(round_1["p"]) == set(record["supernet_modules"])
    warmup = json.loads((searched / "warmup.json").read_text())
    assert set(warmup["counts"]) == {"weight", "zeros", "threshold", "activation", "sensitivity", "gradient"}
    assignment = json.loads((searched / "assignment.json").read_text())
    assert assignment["source"] == "warmup" and set(assignment["partitions"]) == set(record["assignment"])
    plan = Plan.load(searched / "plan.json")
    assert plan.method == "prune-peft" and plan.kinds == ["lora", "adapter"]


def test_a_second_search_reuses_the_assignment_and_skips_the_warm_up(searched, base_model_dir, tiny_csv, tmp_path):
    out = tmp_path / "again"
    code = main(search_argv(base_model_dir, tiny_csv, out, "--budget_params", "2600", "--criteria_assignment",
                            str(searched / "assignment.json")))
    assert code == 0 and not (out / "warmup.json").exists()
    first, second = (json.loads((d / "search.json").read_text())["assignment"] for d in (searched, out))
    assert first == second


def test_the_searched_mixed_plan_retrains_saves_and_reloads_with_the_same_logits(searched, base_model_dir, tiny_csv,
                                                                                 tmp_path):
    from lightpeft import DataConfig, LightPeftTrainingArguments, ModelConfig, PeftSettings
    from lightpeft.stages.train import train

    run_dir = tmp_path / "run"
    args = LightPeftTrainingArguments(output_dir=str(run_dir), num_train_epochs=1, per_device_train_batch_size=8,
                                      learning_rate=5e-3, disable_tqdm=True, seed=0, use_cpu=True)
    result = train(ModelConfig(str(base_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                   PeftSettings(), args, plan=str(searched / "plan.json"))
    assert result.summary["method"] == "prune-peft" and result.summary["peft"] == "lora+adapter"
    plan = Plan.load(searched / "plan.json")
    # + the classifier and BERT's pooler (hidden 32), which train as the head
    assert result.summary["trainable_params"] - plan.counts["peft_params_after"] == 32 * 2 + 2 + 32 * 32 + 32
    reloaded = load_pruned(str(base_model_dir), run_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**example_batch()).logits, result.model(**example_batch()).logits)


def test_run_with_prune_peft_searches_then_retrains(base_model_dir, tiny_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--method", "prune_peft", "--model_name_or_path", str(base_model_dir), "--task",
                 str(tiny_csv), "--output_dir", str(out), *COMMON, "--num_train_epochs", "1", "--round_steps", "2",
                 "--criteria_assignment", "paper", "--budget_fraction", "0.5"])
    assert code == 0
    assert (out / "search" / "plan.json").exists() and (out / "plan.json").exists()
    summary = json.loads((out / "run.json").read_text())
    assert summary["method"] == "prune-peft" and summary["search_seconds"] > 0
    assert "PrunePEFT" in capsys.readouterr().out


def another_models_assignment(tmp_path):
    path = tmp_path / "assignment.json"
    path.write_text(json.dumps({"schema_version": 1, "base_fingerprint": "0123456789abcdef", "num_layers": 2,
                                "partitions": {}}))
    return path


@pytest.mark.parametrize("more, expected", [
    (["--budget_params", "100000000"], "is not below the supernet's"),
    (["--budget_params", "10"], "is below the smallest candidate module"),
    (["--criteria", "magnitude"], "unknown criterion 'magnitude'"),
    (["--combine", "sum"], "--combine must be one of"),
    (["--depth_blocks", "2"], "--depth_blocks must be one of 4, 1"),
    (["--depth_blocks", "1", "--criteria_assignment", "paper"], "paper is a table for 4 depth blocks"),
    (["--budget_params", "100", "--budget_fraction", "0.5"], "give one budget"),
    (["--criteria_assignment", "ASSIGNMENT"], "was made for another base model"),
])
def test_bad_search_input_is_one_error_line_and_writes_nothing(more, expected, base_model_dir, tiny_csv, tmp_path,
                                                               capsys):
    out = tmp_path / "out"
    more = [str(another_models_assignment(tmp_path)) if m == "ASSIGNMENT" else m for m in more]
    code = main(search_argv(base_model_dir, tiny_csv, out, *more))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) in ([], ["assignment.json"])


def test_a_four_block_assignment_is_refused_by_a_one_block_search(searched, base_model_dir, tiny_csv, tmp_path,
                                                                   capsys):
    out = tmp_path / "one-block"
    code = main(search_argv(base_model_dir, tiny_csv, out, "--budget_params", "2600", "--depth_blocks", "1",
                            "--criteria_assignment", str(searched / "assignment.json")))
    err = capsys.readouterr().err
    assert code == 2 and "was made with 4 depth blocks, this search uses 1" in err and not out.exists()


def test_light_peft_then_prune_peft_searches_on_the_pruned_backbone(base_model_dir, tiny_csv, tmp_path):
    out = tmp_path / "both"
    code = main(["run", "--method", "light_peft+prune_peft", "--model_name_or_path", str(base_model_dir), "--task",
                 str(tiny_csv), "--output_dir", str(out), *COMMON, "--num_train_epochs", "1", "--round_steps", "2",
                 "--estimate_steps", "3", "--head_ratio", "0.5", "--criteria_assignment", "paper",
                 "--budget_fraction", "0.5"])
    assert code == 0
    plan, searched = Plan.load(out / "plan.json"), Plan.load(out / "search" / "plan.json")
    assert plan.method == "light-peft+prune-peft" and plan.to_json() == searched.to_json()
    assert [len(h) for h in plan.heads] == [2, 2] and plan.counts["foundation_pruned_fraction"] > 0
    assert (out / "estimate" / "estimate.json").exists()
    record = json.loads((out / "search" / "search.json").read_text())
    assert plan.counts["peft_params_after"] == record["final_params"] <= record["budget_params"]
    summary = json.loads((out / "run.json").read_text())
    assert summary["trainable_params"] == record["final_params"] + 32 * 2 + 2 + 32 * 32 + 32  # + classifier, pooler
