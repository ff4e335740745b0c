"""Plug-and-play run directories: small, rebuilt from the untouched base, several tasks from one base."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from lightpeft import LightPeftError, load_pruned, load_tasks, make_plan, train
from lightpeft.config import DataConfig, ModelConfig
from lightpeft.core.adapters import AdapterLinear, adapter_layers
from lightpeft.core.peft_kinds import PeftSettings, lora_layers, peft_units

from conftest import example_batch, save_tiny_model_dir


def test_adapter_run_is_light_peft_with_adapters(adapter_run):
    out, result = adapter_run
    plan = json.loads((out / "plan.json").read_text())
    assert plan["schema_version"] == 3 and plan["method"] == "light-peft" and list(plan["peft_configs"]) == ["adapter"]
    assert {entry["kind"] for entry in plan["peft_modules"].values()} == {"adapter"}
    assert plan["counts"]["foundation_pruned_fraction"] > 0
    estimated = json.loads((out / "estimate/estimate.json").read_text())
    assert estimated["peft"] == "adapter" and len(estimated["module_names"]) == 4  # 2 layers x (o, ffn_out)
    assert all(plan["peft_modules"][n]["role"] in ("o", "ffn_out") for n in plan["peft_modules"])
    units = peft_units(result.model)
    assert set(units) == set(plan["peft_modules"])
    summary = json.loads((out / "run.json").read_text())
    assert summary["peft"] == "adapter" and summary["trainable_params"] == sum(
        p.numel() for p in result.model.parameters() if p.requires_grad)


def test_run_dir_holds_only_task_weights(lora_run, adapter_run, base_model_dir):
    for out, _ in (lora_run, adapter_run):
        keys = load_file(out / "peft_weights.safetensors")
        assert all(k.endswith((".lora_A", ".lora_B", ".adapter_down", ".adapter_up")) or k.startswith(
            ("classifier.", "bert.pooler.", "fresh.")) for k in keys)
        run_files = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
        assert run_files < (base_model_dir / "model.safetensors").stat().st_size


@pytest.mark.parametrize("which", ["lora_run", "adapter_run"])
def test_load_pruned_gives_the_trained_logits(which, request, base_model_dir):
    out, result = request.getfixturevalue(which)
    batch = example_batch()
    expected = result.model(**batch).logits
    assert torch.allclose(load_pruned(str(base_model_dir), out)(**batch).logits, expected, atol=1e-6)
    assert torch.allclose(load_pruned(None, out)(**batch).logits, expected, atol=1e-6)  # base recorded in run.json


def test_two_tasks_from_one_base_give_each_their_own_logits(lora_run, adapter_run, base_model_dir):
    models = load_tasks(str(base_model_dir), {"two": lora_run[0], "three": adapter_run[0]})
    batch = example_batch()
    for name, (_, result) in (("two", lora_run), ("three", adapter_run)):
        assert torch.allclose(models[name](**batch).logits, result.model(**batch).logits, atol=1e-6)
    assert models["two"](**batch).logits.shape[-1] == 2 and models["three"](**batch).logits.shape[-1] == 3
    # the base was read once: tensors that pruning leaves whole are shared, not copied
    two, three = models["two"].get_base_model().bert, models["three"].bert
    assert two.embeddings.word_embeddings.weight.data_ptr() == three.embeddings.word_embeddings.weight.data_ptr()
    assert any(isinstance(m, AdapterLinear) for m in three.modules())
    assert not any(isinstance(m, AdapterLinear) for m in two.modules())
    # switching back and forth changes nothing
    again = models["two"](**batch).logits
    assert torch.allclose(again, lora_run[1].model(**batch).logits, atol=1e-6)


def test_wrong_base_is_refused(adapter_run, tmp_path):
    other = save_tiny_model_dir(tmp_path / "other", seed=7)
    with pytest.raises(LightPeftError, match="base checkpoint"):
        load_pruned(str(other), adapter_run[0])
    with pytest.raises(LightPeftError, match="base checkpoint"):
        load_tasks(str(other), {"a": adapter_run[0]})


def broken_copy(run_dir, tmp_path, name="broken"):
    broken = tmp_path / name
    shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("estimate", "vanilla"))
    return broken


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "peft_weights.safetensors").unlink(), "corrupt or missing"),
    (lambda d: (d / "peft_weights.safetensors").write_bytes((d / "peft_weights.safetensors").read_bytes()[:100]),
     "corrupt or missing"),
    (lambda d: (d / "run.json").write_text("{"), "corrupt"),
    (lambda d: (d / "run.json").write_text(json.dumps({**json.loads((d / "run.json").read_text()),
                                                       "schema_version": 1})), "schema version 1"),
    (lambda d: (d / "plan.json").write_text(json.dumps({**json.loads((d / "plan.json").read_text()),
                                                        "schema_version": 1})), "schema version 1"),
    (lambda d: (d / "run.json").unlink(), "not a finished run directory"),
])
def test_broken_run_dirs_give_one_line_errors(adapter_run, tmp_path, base_model_dir, damage, message):
    broken = broken_copy(adapter_run[0], tmp_path)
    damage(broken)
    with pytest.raises(LightPeftError, match=message) as err:
        load_pruned(str(base_model_dir), broken)
    assert "\n" not in str(err.value)


def test_recorded_base_that_moved_asks_for_one(adapter_run, tmp_path):
    broken = broken_copy(adapter_run[0], tmp_path)
    summary = json.loads((broken / "run.json").read_text())
    (broken / "run.json").write_text(json.dumps({**summary, "base_path": str(tmp_path / "gone")}))
    with pytest.raises(LightPeftError, match="--model_name_or_path"):
        load_pruned(None, broken)


def test_training_takes_the_peft_kind_from_the_plan(adapter_run, base_model_dir, tiny_csv, tmp_path):
    """An adapter plan trains adapters even though the PEFT settings say LoRA (the flag's default)."""
    out, _ = adapter_run
    plan = make_plan(out / "estimate")
    result = train(ModelConfig(str(base_model_dir)), DataConfig(task=str(tiny_csv)), PeftSettings(peft="lora"),
                   _args(tmp_path / "t"), plan=plan)
    assert result.summary["peft"] == "adapter"
    assert adapter_layers(result.model) and not lora_layers(result.model)
    assert set(adapter_layers(result.model)) == set(plan.peft_modules)


def _args(out):
    from lightpeft import LightPeftTrainingArguments

    return LightPeftTrainingArguments(output_dir=str(out), use_cpu=True, disable_tqdm=True)


def retrained_copy(run_dir, tmp_path, name):
    """A copy of `run_dir` as another run of the same plan would leave it: same names and shapes, other values, and
    a run.json whose weights fingerprint is its own."""
    from safetensors.torch import save_file

    from lightpeft.fingerprint import tensors_fingerprint

    other = broken_copy(run_dir, tmp_path, name)
    weights = {k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(other / "peft_weights.safetensors").items()}
    save_file(weights, other / "peft_weights.safetensors")
    summary = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**summary, "weights_fingerprint": tensors_fingerprint(weights)}))
    return other


def test_a_weights_file_swapped_with_another_runs_is_refused(lora_run, tmp_path, base_model_dir):
    from lightpeft import export_run

    summary = json.loads((lora_run[0] / "run.json").read_text())
    assert len(summary["weights_fingerprint"]) == 16
    mine, other = broken_copy(lora_run[0], tmp_path, "mine"), retrained_copy(lora_run[0], tmp_path, "other")
    load_pruned(str(base_model_dir), mine)  # untouched: loads
    load_pruned(str(base_model_dir), other)
    shutil.copy(other / "peft_weights.safetensors", mine / "peft_weights.safetensors")
    for load in (lambda: load_pruned(str(base_model_dir), mine), lambda: load_tasks(str(base_model_dir), {"a": mine}),
                 lambda: export_run(mine, tmp_path / "export", base=str(base_model_dir))):
        with pytest.raises(LightPeftError, match="is not the weights file this run wrote") as err:
            load()
        assert "\n" not in str(err.value)
    assert not (tmp_path / "export").exists()


def test_a_run_from_before_weights_fingerprints_still_loads(lora_run, tmp_path, base_model_dir):
    old = broken_copy(lora_run[0], tmp_path, "old")
    summary = json.loads((old / "run.json").read_text())
    del summary["weights_fingerprint"]
    (old / "run.json").write_text(json.dumps(summary))
    batch = example_batch()
    assert torch.allclose(load_pruned(str(base_model_dir), old)(**batch).logits,
                          lora_run[1].model(**batch).logits, atol=1e-6)
