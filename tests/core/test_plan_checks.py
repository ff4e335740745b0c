"""A plan is checked against its base's structure where it meets the model: one line per corruption, never a
traceback from deep inside pruning."""

from __future__ import annotations

import copy

import pytest

from lightpeft.core.build import build_model
from lightpeft.core.plan import Plan
from lightpeft.core.plan_checks import check_plan
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import PlanConfig

from conftest import tiny_model
from helpers import as_base, random_plan


def first_module(plan: Plan) -> str:
    return next(iter(plan.peft_modules))


def _set(path, value):
    def corrupt(plan: Plan):
        owner = plan
        *parents, last = path
        for key in parents:
            owner = owner[key] if isinstance(owner, (dict, list)) else getattr(owner, key)
        if isinstance(owner, (dict, list)):
            owner[last] = value(owner[last]) if callable(value) else value
        else:
            setattr(owner, last, value(getattr(owner, last)) if callable(value) else value)
    return corrupt


def _module(field, value):
    def corrupt(plan: Plan):
        plan.peft_modules[first_module(plan)][field] = value
    return corrupt


def _rename_module(new_name):
    def corrupt(plan: Plan):
        name = first_module(plan)
        plan.peft_modules[new_name(name)] = plan.peft_modules.pop(name)
    return corrupt


# (case, corruption, what the one-line message must say); run on a tiny BERT and a tiny Llama (6 query heads over
# 2 key/value heads)
CASES = [
    ("duplicate head index", _set(("heads", 0), [0, 0, 1]), "heads[0] holds index 0 twice"),
    ("head index out of range", _set(("heads", 1), [0, 99]), "heads[1] holds index 99, outside [0, "),
    ("negative head index", _set(("heads", 0), [-1, 0]), "heads[0] holds index -1, outside [0, "),
    ("head index of the wrong type", _set(("heads", 0), ["0", 1]), "heads[0] holds '0', not an integer index"),
    ("bool head index", _set(("heads", 0), [True]), "heads[0] holds True, not an integer index"),
    ("heads is a string", _set(("heads",), "0,1,2"), "has heads '0,1,2', expected one list per layer"),
    ("one layer's heads is a string", _set(("heads", 1), "0,1"), "heads[1] is '0,1', not a list of indices"),
    ("unsorted FFN neurons", _set(("ffn", 1), [3, 1, 2]), "ffn[1] is [3, 1, 2], not sorted"),
    ("FFN neuron out of range", _set(("ffn", 0), [0, 37]), "ffn[0] holds index 37, outside [0, 37)"),
    ("wrong num_layers", _set(("num_layers",), 3), "has num_layers 3, but the base model has 2"),
    ("heads for too few layers", _set(("heads",), lambda heads: heads[:1]), "has 1 lists of heads, expected one list per layer (2)"),
    ("wrong num_heads", _set(("num_heads",), 8), "has num_heads 8, but the base model has"),
    ("wrong ffn_size", _set(("ffn_size",), "37"), "has ffn_size '37', but the base model has 37"),
    ("unknown module name", _rename_module(lambda name: name.replace(".0.", ".7.")), "which is not a linear of"),
    ("module on the wrong layer", _module("layer", 1), "but in the base model it is layer 0"),
    ("module with the wrong role", _module("role", "ffn_out"), "role 'ffn_out', but in the base model"),
    ("module layer is a bool", _module("layer", False), "at layer False"),
    ("units out of range", _module("units", [0, 4]), "units holds index 4, outside [0, 4)"),
    ("empty units", _module("units", []), "units is empty"),
    ("unsorted units", _module("units", [2, 0]), "units is [2, 0], not sorted"),
    ("units is a string", _module("units", "0-3"), "units is '0-3', not a list of indices"),
    ("module entry is not an object", lambda plan: plan.peft_modules.update({first_module(plan): 3}),
     "is unknown"),
    ("ratios is a list", _set(("ratios",), [0.5]), "has ratios of type list, expected an object"),
    ("peft_modules is a list", _set(("peft_modules",), []), "has peft_modules of type list, expected an object"),
    ("r is not a positive int", lambda plan: plan.peft_configs["lora"].update(r=0), "r=0, expected a positive"),
]


def valid_plan(family: str) -> tuple:
    model = tiny_model(family)
    return model, random_plan(model, PlanConfig(head_ratio=0, ffn_ratio=0, module_ratio=0, rank_ratio=0))


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_a_valid_plan_passes_and_builds(family):
    model, plan = valid_plan(family)
    check_plan(plan, model)
    build_model(as_base(model), plan)


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("case,corrupt,message", CASES, ids=[c[0] for c in CASES])
def test_a_corrupted_plan_is_refused_in_one_line(family, case, corrupt, message):
    model, plan = valid_plan(family)
    bad = copy.deepcopy(plan)
    corrupt(bad)
    with pytest.raises(LightPeftError) as excinfo:
        build_model(as_base(model), bad, source="plan file p.json")
    text = str(excinfo.value)
    assert "\n" not in text and text.startswith("plan file p.json ")
    assert message in text and text.endswith("`lightpeft plan`"), text
    assert "grouped-query" not in text and "num_key_value_groups" not in text


KV_CASES = {
    "bert": [("kv_heads differ from heads", [[0, 1], [0, 1, 2, 3]], [[0, 1, 2, 3], [0, 1, 2, 3]],
              "without grouped-query attention they must be the same")],
    "llama": [("kv_heads miss a kept group", [[0, 1, 2, 3, 4, 5], [0, 1, 2]], [[0, 1], [1]],
               "its query heads [0, 1, 2] belong to key/value heads [0]"),
              ("kv head out of range", [[0, 1, 2, 3, 4, 5], [0, 1, 2]], [[0, 1], [2]], "kv_heads[1] holds index 2"),
              ("fractional groups", [[0, 1, 2, 3, 4, 5], [0, 1, 3]], [[0, 1], [0, 1]], "num_key_value_groups"),
              ("wrong num_kv_heads", None, None, "has num_kv_heads 3, but the base model has 2")],
}


@pytest.mark.parametrize("family,case,heads,kv_heads,message",
                         [(f, *c) for f, cases in KV_CASES.items() for c in cases],
                         ids=[f"{f}-{c[0]}" for f, cases in KV_CASES.items() for c in cases])
def test_kv_heads_must_match_the_kept_query_heads(family, case, heads, kv_heads, message):
    model, plan = valid_plan(family)
    if heads is None:
        plan.num_kv_heads = 3
    else:
        plan.heads, plan.kv_heads = heads, kv_heads
    with pytest.raises(LightPeftError) as excinfo:
        check_plan(plan, model)
    assert "\n" not in str(excinfo.value) and message in str(excinfo.value), str(excinfo.value)


def test_a_plan_from_json_with_a_wrong_type_is_refused_on_load(tmp_path):
    model, plan = valid_plan("bert")
    data = plan.to_json()
    data["peft_modules"] = ["not", "an", "object"]
    with pytest.raises(LightPeftError, match="has peft_modules of type list"):
        Plan.from_json(data, source="plan file p.json")
