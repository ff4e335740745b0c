"""A plan checked against the base model it is about to prune: its structure, its kept indices and its PEFT modules.

`Plan.from_json` only checks that a file is a plan; `check_plan` checks that it fits this model (every place a plan
meets a model goes through it, before anything is sliced). Each failure is one `LightPeftError` line naming the
field, layer or module and the bad value.
"""

from __future__ import annotations

from collections import Counter

from torch import nn

from lightpeft.core import arch
from lightpeft.core.peft_kinds import PEFT_ROLES
from lightpeft.core.plan import Plan
from lightpeft.core.surgery import check_groups
from lightpeft.errors import LightPeftError

FIX = "re-create it with `lightpeft plan`"


def check_plan(plan: Plan, model: nn.Module, source: str = "the plan") -> None:
    """Refuse a plan that does not describe `model` (an unpruned HF task model of the plan's base)."""
    def fail(what: str):
        raise LightPeftError(f"{source} {what}; {FIX}")

    for name in ("ratios", "counts", "peft_modules", "peft_configs"):
        if not isinstance(getattr(plan, name), dict):
            fail(f"has {name} of type {type(getattr(plan, name)).__name__}, expected an object")
    plan.check_kinds(source)
    config = model.config
    expected = {"model_type": config.model_type, "num_layers": arch.num_layers(model),
                "num_heads": arch.num_heads(config), "head_size": arch.head_size(config),
                "ffn_size": arch.ffn_size(config)}
    for name, want in expected.items():
        value = getattr(plan, name)
        if (name == "model_type" and value != want) or (name != "model_type" and (not _is_int(value) or value != want)):
            fail(f"has {name} {value!r}, but the base model has {want!r}")
    kv_count = arch.num_kv_heads(config)
    if plan.num_kv_heads is not None and not _is_int(plan.num_kv_heads) or plan.kv_head_count != kv_count:
        fail(f"has num_kv_heads {plan.num_kv_heads!r}, but the base model has {kv_count}")
    _check_indices(plan, fail)
    _check_modules(plan, model, fail)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _index_problem(value, size: int) -> str | None:
    """Why `value` is not a sorted list of unique ints in [0, size), or None."""
    if not isinstance(value, list):
        return f"is {value!r}, not a list of indices"
    bad = next((v for v in value if not _is_int(v)), None)
    if bad is not None or any(not _is_int(v) for v in value):
        return f"holds {bad!r}, not an integer index"
    out = next((v for v in value if not 0 <= v < size), None)
    if out is not None:
        return f"holds index {out}, outside [0, {size})"
    duplicate = next((v for v, n in Counter(value).items() if n > 1), None)
    if duplicate is not None:
        return f"holds index {duplicate} twice"
    if value != sorted(value):
        return f"is {value}, not sorted"
    return None


def _check_indices(plan: Plan, fail) -> None:
    kv_count, layers = plan.kv_head_count, plan.num_layers
    group = plan.num_heads // kv_count if plan.num_heads % kv_count == 0 else 0
    if not group:
        fail(f"has {plan.num_heads} query heads, which do not split into {kv_count} key/value groups")
    fields = [("heads", plan.heads, plan.num_heads), ("ffn", plan.ffn, plan.ffn_size)]
    if plan.kv_heads != []:
        fields.append(("kv_heads", plan.kv_heads, kv_count))
    for name, per_layer, size in fields:
        if not isinstance(per_layer, list) or len(per_layer) != layers:
            shown = f"{len(per_layer)} lists of {name}" if isinstance(per_layer, list) else f"{name} {per_layer!r}"
            fail(f"has {shown}, expected one list per layer ({layers})")
        for layer, value in enumerate(per_layer):
            problem = _index_problem(value, size)
            if problem:
                fail(f"{name}[{layer}] {problem}")
    for layer, heads in enumerate(plan.heads):
        kv_heads = plan.kept_kv_heads(layer)
        serving = sorted({h // group for h in heads})
        if kv_heads != serving:
            if group == 1:
                fail(f"keeps key/value heads {kv_heads} but query heads {heads} in layer {layer}; without "
                     "grouped-query attention they must be the same")
            fail(f"keeps key/value heads {kv_heads} in layer {layer}, but its query heads {heads} belong to "
                 f"key/value heads {serving}")
        check_groups(layer, heads, kv_heads, group)


def _check_modules(plan: Plan, model: nn.Module, fail) -> None:
    linears = arch.linear_roles(model, PEFT_ROLES)
    for kind, settings in plan.peft_configs.items():
        r = settings.get("r") if isinstance(settings, dict) else None
        if not _is_int(r) or r < 1:
            fail(f"gives PEFT kind {kind} r={r!r}, expected a positive integer")
    for name, entry in plan.peft_modules.items():
        if not isinstance(entry, dict) or not {"layer", "role", "kind", "units"} <= set(entry):
            fail(f"has PEFT module {name} as {entry!r}, expected layer, role, kind and units")
        if name not in linears:
            fail(f"has PEFT module {name}, which is not a linear of the base model")
        layer, role = linears[name]
        if entry["layer"] != layer or entry["role"] != role or not _is_int(entry["layer"]):
            fail(f"puts PEFT module {name} at layer {entry['layer']!r}, role {entry['role']!r}, but in the base "
                 f"model it is layer {layer}, role {role}")
        units, r = entry["units"], plan.peft_configs[entry["kind"]]["r"]
        problem = "is empty" if units == [] else _index_problem(units, r)
        if problem:
            fail(f"has PEFT module {name} whose units {problem}")
