"""The registry of PEFT kinds, and plans that put different kinds on different modules (LoRA in some places,
adapters in others, as PrunePEFT's search space needs): they train, reload and export like single-kind plans."""

import dataclasses
import json

import pytest
import torch

from lightpeft import LightPeftError, LightPeftTrainingArguments, load_exported, load_pruned, train
from lightpeft.config import DataConfig, ModelConfig
from lightpeft.core import arch
from lightpeft.core.adapters import adapter_layers
from lightpeft.core.build import vanilla_plan
from lightpeft.core.models import load_base
from lightpeft.core.peft_kinds import KINDS, PeftSettings, get_kind, lora_layers, peft_units
from lightpeft.core.plan import Plan
from lightpeft.stages.export import export_run

from conftest import example_batch, tiny_model


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_injects_units_of_the_size_it_counts(name):
    kind = get_kind(name)
    settings = PeftSettings(peft=name)
    model = tiny_model()
    targets = arch.linear_names(model, kind.vanilla_roles(settings))
    model = kind.inject(model, kind.settings(settings), targets, {targets[0]: 2})
    units = peft_units(model)
    assert sorted(units) == sorted(targets) and {u.peft for u in units.values()} == {name}
    r = kind.settings(settings)["r"]
    for target, unit in units.items():
        count = 2 if target == targets[0] else r
        assert unit.down.shape[0] == count and unit.up.shape[1] == count  # (units, in), (out, units)
        assert unit.down.numel() + unit.up.numel() == count * kind.unit_params(unit.base)
        assert unit.down.requires_grad and unit.up.requires_grad
        assert unit.weights == kind.weights


def test_unknown_kind_is_one_line_error():
    with pytest.raises(LightPeftError, match="--peft 'prefix' is not supported; use one of lora, adapter"):
        PeftSettings(peft="prefix")


@pytest.fixture(scope="module")
def mixed_plan(base_model_dir) -> Plan:
    """LoRA on q and v of layer 1, an adapter after the FFN of layer 0, nothing pruned."""
    base = load_base(str(base_model_dir), num_labels=2)
    lora, adapter = (vanilla_plan(base, PeftSettings(peft=kind)) for kind in ("lora", "adapter"))
    modules = {n: e for n, e in lora.peft_modules.items() if e["layer"] == 1}
    modules.update({n: e for n, e in adapter.peft_modules.items() if e["layer"] == 0 and e["role"] == "ffn_out"})
    return dataclasses.replace(lora, peft_modules=modules, method="hand-made",
                               peft_configs={**lora.peft_configs, **adapter.peft_configs})


@pytest.fixture(scope="module")
def mixed_run(mixed_plan, base_model_dir, tiny_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed") / "run"
    args = LightPeftTrainingArguments(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=8,
                                      learning_rate=5e-3, disable_tqdm=True, seed=0, use_cpu=True)
    result = train(ModelConfig(str(base_model_dir)), DataConfig(task=str(tiny_csv), max_seq_length=16),
                   PeftSettings(), args, plan=mixed_plan)
    return out, result


def test_a_mixed_plan_trains_each_kind_where_the_plan_says(mixed_plan, mixed_run):
    out, result = mixed_run
    lora_names = {n for n, e in mixed_plan.peft_modules.items() if e["kind"] == "lora"}
    assert set(lora_layers(result.model)) == lora_names and len(lora_names) == 2
    assert set(adapter_layers(result.model.get_base_model())) == set(mixed_plan.peft_modules) - lora_names
    trainable = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("adapter.down" in n for n in trainable)
    assert any("classifier" in n for n in trainable)
    assert not any("attention.self.query.base_layer" in n for n in trainable)  # the backbone stays frozen
    assert result.summary["peft"] == "lora+adapter" and result.summary["method"] == "hand-made"
    plan = json.loads((out / "plan.json").read_text())
    assert {e["kind"] for e in plan["peft_modules"].values()} == {"lora", "adapter"}


def test_a_mixed_run_reloads_and_exports_with_the_trained_logits(mixed_run, base_model_dir, tmp_path):
    out, result = mixed_run
    batch = example_batch()
    expected = result.model(**batch).logits
    assert torch.allclose(load_pruned(str(base_model_dir), out)(**batch).logits, expected, atol=1e-6)
    exported = load_exported(export_run(out, tmp_path / "export"))
    assert adapter_layers(exported) and not lora_layers(exported)  # LoRA merged, the adapter kept
    assert torch.allclose(exported(**batch).logits, expected, atol=1e-5)
    assert not (tmp_path / "export" / "peft").exists()  # no plain peft adapter for a plan with adapters in it


def test_a_schema_2_plan_reads_as_the_same_plan(mixed_plan, tmp_path):
    single = mixed_plan.only_kinds(["lora"])
    old = single.to_json()
    old.update(schema_version=2, peft="lora", peft_config=old.pop("peft_configs")["lora"], kind=old.pop("method"))
    for entry in old["peft_modules"].values():
        del entry["kind"]
    (tmp_path / "plan.json").write_text(json.dumps(old))
    assert Plan.load(tmp_path / "plan.json") == single


def test_a_plan_naming_an_unknown_kind_is_refused(mixed_plan, tmp_path):
    data = mixed_plan.to_json()
    next(iter(data["peft_modules"].values()))["kind"] = "prefix"
    (tmp_path / "plan.json").write_text(json.dumps(data))
    with pytest.raises(LightPeftError, match="kind 'prefix', which is unknown; re-run `lightpeft plan`"):
        Plan.load(tmp_path / "plan.json")
