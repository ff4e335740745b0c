"""Export: a compact self-contained model (LoRA merged, adapters kept) and a vanilla peft adapter for LoRA runs."""

import json
import shutil

import pytest
import torch
from peft import PeftModel

from lightpeft import LightPeftError, export_run, load_exported, load_pruned_base
from lightpeft.core import arch
from lightpeft.core.adapters import AdapterLinear
from lightpeft.core.peft_kinds import lora_layers

from conftest import decoder_batch, example_batch, save_tiny_model_dir


@pytest.fixture(scope="module")
def lora_export(lora_run, tmp_path_factory):
    return export_run(lora_run[0], tmp_path_factory.mktemp("exports") / "lora")


@pytest.fixture(scope="module")
def adapter_export(adapter_run, tmp_path_factory):
    return export_run(adapter_run[0], tmp_path_factory.mktemp("exports") / "adapter")


def test_export_holds_a_compact_model_and_its_description(lora_export, lora_run, base_model_dir):
    for name in ["config.json", "model.safetensors", "plan.json", "export.json", "tokenizer_config.json",
                 "peft/adapter_config.json", "peft/adapter_model.safetensors", "peft/base_weights.safetensors"]:
        assert (lora_export / name).is_file(), name
    meta = json.loads((lora_export / "export.json").read_text())
    assert meta["schema_version"] == 1 and meta["merged"] and meta["peft"] == "lora"
    assert meta["base_fingerprint"] == json.loads((lora_run[0] / "plan.json").read_text())["base_fingerprint"]
    config = json.loads((lora_export / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"}
    counts = json.loads((lora_export / "plan.json").read_text())["counts"]
    assert counts["foundation_params_after"] < counts["foundation_params_before"]  # pruned: smaller than the base
    assert (lora_export / "model.safetensors").stat().st_size < (base_model_dir / "model.safetensors").stat().st_size


def test_merged_export_gives_the_logits_of_the_unmerged_run(lora_export, lora_run):
    batch = example_batch()
    model = load_exported(lora_export)
    assert not lora_layers(model) and not any(p.requires_grad for p in model.parameters())
    assert torch.allclose(model(**batch).logits, lora_run[1].model(**batch).logits, atol=1e-5)


def test_plain_peft_loads_the_exported_adapter_on_the_pruned_base(lora_export, lora_run):
    config = json.loads((lora_export / "peft/adapter_config.json").read_text())
    plan = json.loads((lora_export / "plan.json").read_text())
    assert sorted(config["target_modules"]) == sorted(plan["peft_modules"])
    assert config["rank_pattern"], "the light-peft plan pruned ranks: per-module ranks must be explicit"
    r, alpha = plan["peft_configs"]["lora"]["r"], plan["peft_configs"]["lora"]["alpha"]
    for key, rank in config["rank_pattern"].items():
        assert config["alpha_pattern"][key] / rank == pytest.approx(alpha / r)  # the method's scaling is kept
    assert "classifier" in config["modules_to_save"]

    model = PeftModel.from_pretrained(load_pruned_base(lora_export), lora_export / "peft").eval()
    batch = example_batch()
    assert torch.allclose(model(**batch).logits, lora_run[1].model(**batch).logits, atol=1e-6)


def test_adapter_export_keeps_adapters_and_logits(adapter_export, adapter_run):
    meta = json.loads((adapter_export / "export.json").read_text())
    assert not meta["merged"] and meta["peft_dir"] is None and not (adapter_export / "peft").exists()
    model = load_exported(adapter_export)
    assert any(isinstance(m, AdapterLinear) for m in model.modules())
    batch = example_batch()
    assert torch.allclose(model(**batch).logits, adapter_run[1].model(**batch).logits, atol=1e-6)
    with pytest.raises(LightPeftError, match="no vanilla peft adapter"):
        load_pruned_base(adapter_export)


@pytest.mark.parametrize("family, peft", [("llama", "lora"), ("gpt2", "lora"), ("gpt2", "adapter")])
def test_decoder_exports_give_the_run_logits(family, peft, family_runs, tmp_path):
    """Decoders rebuild from plan.json on the meta device: GQA k/v rows (Llama), Conv1D and fused c_attn (GPT-2)."""
    _, run_dir, result = family_runs(family, peft)
    export_dir = export_run(run_dir, tmp_path / "export")
    model, batch = load_exported(export_dir), decoder_batch()
    expected = result.model(**batch).logits
    assert torch.allclose(model(**batch).logits, expected, atol=1e-5)
    plan, block = result.plan, arch.layer_modules(model)[1]
    if family == "llama":  # whole KV groups went: k rows of the kept KV heads only
        assert len(plan.kv_heads[1]) < plan.num_kv_heads
        assert block.self_attn.k_proj.weight.shape[0] == len(plan.kv_heads[1]) * plan.head_size
    else:
        assert block.attn.c_attn.weight.shape[1] == 3 * len(plan.heads[1]) * plan.head_size  # Conv1D: (in, out)
    if peft == "lora":
        config = json.loads((export_dir / "peft/adapter_config.json").read_text())
        assert config["fan_in_fan_out"] == (family == "gpt2")  # GPT-2's Conv1D stores weights (in, out)
        vanilla = PeftModel.from_pretrained(load_pruned_base(export_dir), export_dir / "peft").eval()
        assert torch.allclose(vanilla(**batch).logits, expected, atol=1e-6)


def test_wrong_base_or_broken_run_writes_nothing(lora_run, tmp_path):
    other = save_tiny_model_dir(tmp_path / "other", seed=7, headless=True)
    with pytest.raises(LightPeftError, match="base checkpoint"):
        export_run(lora_run[0], tmp_path / "e1", base=str(other))
    broken = tmp_path / "broken"
    shutil.copytree(lora_run[0], broken, ignore=shutil.ignore_patterns("estimate"))
    (broken / "peft_weights.safetensors").unlink()
    with pytest.raises(LightPeftError, match="corrupt or missing"):
        export_run(broken, tmp_path / "e2")
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"other", "broken"}  # no staging leftovers


def test_existing_output_dir_is_kept(lora_export, lora_run):
    before = (lora_export / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(LightPeftError, match="overwrite_output_dir"):
        export_run(lora_run[0], lora_export)
    assert (lora_export / "model.safetensors").stat().st_mtime_ns == before


def damaged_copy(export_dir, tmp_path, damage):
    copy = tmp_path / "damaged"
    shutil.copytree(export_dir, copy)
    damage(copy)
    return copy


def _rewrite_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "export.json").unlink(), "not an export directory"),
    (lambda d: (d / "export.json").write_text("[1,"), "corrupt"),
    (lambda d: _rewrite_json(d / "export.json", schema_version=0), "schema version 0"),
    (lambda d: _rewrite_json(d / "plan.json", schema_version=1), "schema version 1"),
    (lambda d: _rewrite_json(d / "export.json", base_fingerprint="0" * 16), "base checkpoint"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:1000]),
     "corrupt or missing"),
    (lambda d: (d / "config.json").unlink(), "config.json is missing or corrupt"),
    (lambda d: _rewrite_json(d / "export.json", weights_fingerprint="0" * 16), "weights fingerprint"),
])
def test_damaged_exports_give_one_line_errors(lora_export, tmp_path, damage, message):
    with pytest.raises(LightPeftError, match=message) as err:
        load_exported(damaged_copy(lora_export, tmp_path, damage))
    assert "\n" not in str(err.value)


def test_weights_of_another_plan_are_refused(lora_export, adapter_export, tmp_path):
    swapped = damaged_copy(lora_export, tmp_path, lambda d: shutil.copy(adapter_export / "model.safetensors",
                                                                         d / "model.safetensors"))
    with pytest.raises(LightPeftError, match="does not belong to this plan|lacks"):
        load_exported(swapped)
