"""Uniform plans export as standard checkpoints: plain transformers, in a process that never imports lightpeft,
loads them with the run's logits; other exports say which loader they need."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from lightpeft import (
    DataConfig,
    EstimateConfig,
    LightPeftTrainingArguments,
    ModelConfig,
    PeftSettings,
    PlanConfig,
    export_run,
    load_exported,
    run,
)

from conftest import decoder_batch, example_batch, save_tiny_model_dir, write_tiny_csv

# runs in a fresh interpreter: only transformers, and a check that lightpeft never came in
PLAIN_LOAD = textwrap.dedent("""
    import sys
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification
    export_dir, expected_file = sys.argv[1], sys.argv[2]
    expected = load_file(expected_file)
    model = AutoModelForSequenceClassification.from_pretrained(export_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"]).logits
    assert "lightpeft" not in sys.modules, "the plain load imported lightpeft"
    err = (logits - expected["logits"]).abs().max().item()
    assert err < 1e-5, f"logits differ by {err}"
    print("plain-load-ok", model.config.num_attention_heads, model.config.intermediate_size)
""")


@pytest.fixture(scope="module")
def uniform_runs(tmp_path_factory):
    data = write_tiny_csv(tmp_path_factory.mktemp("uniform-data") / "tiny.csv", rows=40)
    runs = {}

    def get(family: str):
        if family not in runs:
            root = tmp_path_factory.mktemp(f"{family}-uniform")
            model_dir = save_tiny_model_dir(root / "base", family)
            args = LightPeftTrainingArguments(output_dir=str(root / "run"), num_train_epochs=1, learning_rate=5e-3,
                                              per_device_train_batch_size=12, disable_tqdm=True, seed=0, use_cpu=True)
            result = run(ModelConfig(str(model_dir)), DataConfig(task=str(data), max_seq_length=16),
                         PeftSettings(), EstimateConfig(estimate_steps=2),
                         PlanConfig(head_ratio=0.5, uniform=True), args)
            runs[family] = (root / "run", result, export_run(root / "run", root / "export"))
        return runs[family]

    return get


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_uniform_export_loads_with_plain_transformers_and_gives_the_run_logits(family, uniform_runs, tmp_path):
    run_dir, result, export_dir = uniform_runs(family)
    plan = result.plan
    config = json.loads((export_dir / "config.json").read_text())
    meta = json.loads((export_dir / "export.json").read_text())
    assert meta["format"] == "transformers" and meta["not_standard_because"] is None
    assert meta["loader"] == "transformers.AutoModelForSequenceClassification.from_pretrained"
    width = len(plan.ffn[0])
    assert config["intermediate_size"] == width < plan.ffn_size
    if family == "llama":  # head_dim in the config: whole KV groups went
        assert config["num_attention_heads"] == len(plan.heads[0]) == 3 and config["num_key_value_heads"] == 1
        assert config["head_dim"] == plan.head_size
    else:  # BERT: head size = hidden / heads, so every head stays
        assert config["num_attention_heads"] == plan.num_heads == len(plan.heads[0])
    batch = decoder_batch() if family == "llama" else example_batch()
    with torch.no_grad():
        expected = result.model(**batch).logits
    save_file({**batch, "logits": expected.contiguous()}, tmp_path / "expected.safetensors")
    done = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(export_dir), str(tmp_path / "expected.safetensors")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "plain-load-ok" in done.stdout, done.stderr[-2000:]
    assert torch.allclose(load_exported(export_dir)(**batch).logits, expected, atol=1e-5)  # lightpeft's loader too


def test_model_cards_name_base_counts_task_metric_command_and_loader(uniform_runs):
    _, result, export_dir = uniform_runs("llama")
    card = (export_dir / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    for text in ("base_model: base", "| attention heads per layer | 3 of 6 |", "| key/value heads per layer | 1 of 2 |",
                 f"| FFN width per layer | {len(result.plan.ffn[0])} of 37 |", "dev accuracy", "tiny", "final ",
                 "AutoModelForSequenceClassification.from_pretrained", "## How it was made"):
        assert text in card, text
    assert result.summary["command"] in card


def test_non_uniform_exports_keep_the_lightpeft_format_and_say_so(family_runs, tmp_path):
    _, run_dir, result = family_runs("llama")  # the default plan, shared with test_export
    export_dir = export_run(run_dir, tmp_path / "export")
    assert len({len(f) for f in result.plan.ffn}) > 1  # the default plan: FFN widths differ by layer
    meta = json.loads((export_dir / "export.json").read_text())
    assert meta["format"] == "lightpeft" and meta["loader"] == "lightpeft.load_exported"
    assert "different numbers" in meta["not_standard_because"]
    card = (export_dir / "README.md").read_text()
    assert "library_name: lightpeft" in card and "lightpeft.load_exported" in card and "differs by layer" in card
    assert json.loads((export_dir / "config.json").read_text())["intermediate_size"] == 37  # the base's, as before
