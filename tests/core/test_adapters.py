"""Bottleneck adapters: the module itself, gates around it, importance, and masked == physically pruned."""

import pytest
import torch

from lightpeft.core import arch
from lightpeft.core.adapters import AdapterLinear, BottleneckAdapter, add_adapters
from lightpeft.core.build import build_model, vanilla_plan
from lightpeft.core.peft_kinds import PeftSettings, peft_units
from lightpeft.core.peft_modules import export_state, import_state
from lightpeft.core.surgery import NoAttention, slice_peft_state
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft import masks
from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.importance import ImportanceTracker
from lightpeft.methods.light_peft.selection import choose

from conftest import tiny_batch, tiny_model
from helpers import PRUNING_CASES, adapter_config, adapters_everywhere, as_base, random_plan


# Qwen2/Qwen3/Mistral share Llama's layout, and adapters touch no head-shaped weight: Llama stands for them here
# (test_surgery runs LoRA, which does, on every family).
@pytest.fixture(params=["bert", "roberta", "opt", "gpt2", "llama"])
def family(request):
    return request.param


def test_adapter_output_is_residual_bottleneck_on_the_linear_output():
    torch.manual_seed(0)
    linear = torch.nn.Linear(6, 5)
    wrapped = AdapterLinear(linear, BottleneckAdapter(5, 3, activation="relu", dropout=0.0, scaling=0.5)).eval()
    x = torch.randn(2, 4, 6)
    h = x @ linear.weight.T + linear.bias
    down, up = wrapped.adapter.down.weight, wrapped.adapter.up.weight  # (3, 5), (5, 3)
    expected = h + 0.5 * (torch.relu(h @ down.T) @ up.T)
    assert torch.allclose(wrapped(x), expected, atol=1e-6)


def test_method_defaults_init_and_no_bias():
    torch.manual_seed(0)
    adapter = BottleneckAdapter(512, 64)  # big enough for a stable std estimate
    assert adapter.down.bias is None and adapter.up.bias is None
    for weight in (adapter.down.weight, adapter.up.weight):
        assert abs(weight.std().item() - 0.02) < 0.002 and abs(weight.mean().item()) < 0.002
    settings = PeftSettings(peft="adapter")
    assert settings.method_config() == {"r": 8, "dropout": 0.1, "init_std": 0.02, "activation": "relu",
                                        "scaling": 1.0, "placement": "houlsby"}


@pytest.mark.parametrize("placement, roles", [("houlsby", ["o", "ffn_out"]), ("pfeiffer", ["ffn_out"])])
def test_placement_and_what_trains(placement, roles):
    model = tiny_model()
    targets = arch.linear_names(model, PeftSettings(peft="adapter", adapter_placement=placement).vanilla_roles())
    assert targets == arch.linear_names(model, roles)
    add_adapters(model, targets, 4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # the head: the classifier and BERT's pooler, which only the classifier reads (core/heads.py)
    assert trainable == {f"{t}.adapter.{part}.weight" for t in targets for part in ("down", "up")} | {
        "classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}


def test_all_ones_gates_leave_logits_unchanged(family):
    model = adapters_everywhere(tiny_model(family))
    batch = tiny_batch()
    before = model(**batch).logits
    handle = masks.attach_gates(model)
    assert torch.allclose(model(**batch).logits, before, atol=1e-6)
    handle.gates.head.data[0, 1] = 0.0  # and the gates do act (on the adapter-wrapped output projection's input)
    assert (model(**batch).logits - before).abs().max() > 1e-5


def masked_twin(family, plan, size=4, placement="houlsby"):
    """Unpruned model + adapters everywhere, gates at 0/1 and pruned adapters / units zeroed."""
    model = adapters_everywhere(tiny_model(family), size=size, placement=placement)
    handle = masks.attach_gates(model)
    masks.set_binary(handle.gates, plan.heads, plan.ffn)
    state = export_state(model)
    with torch.no_grad():
        for name, unit in peft_units(model).items():
            keep = torch.zeros(size, dtype=torch.bool)
            if name in plan.peft_modules:
                keep[plan.kept_units(name)] = True
            unit.down[~keep] = 0.0  # rows of W_down, columns of W_up belong to units
            unit.up[:, ~keep] = 0.0
    return model, state


CASES = {**PRUNING_CASES, "pfeiffer": dict(cfg=PlanConfig(module_ratio=0.3), placement="pfeiffer")}


@pytest.mark.parametrize("case", CASES)
def test_masked_equals_physically_pruned(family, case):
    kwargs = dict(CASES[case])
    placement = kwargs.pop("placement", "houlsby")
    plan = random_plan(tiny_model(family), peft="adapter", placement=placement, **kwargs)
    masked, estimated_state = masked_twin(family, plan, placement=placement)
    batch = tiny_batch()
    expected = masked(**batch).logits
    pruned = build_model(as_base(tiny_model(family)), plan, slice_peft_state(estimated_state, plan)).eval()
    assert torch.allclose(pruned(**batch).logits, expected, atol=1e-5)
    units = peft_units(pruned)
    assert set(units) == set(plan.peft_modules)
    assert all(unit.down.shape[0] == len(plan.kept_units(n)) for n, unit in units.items())


def test_adapter_on_a_layer_without_heads_stays_and_sees_the_bias():
    model = tiny_model()
    cfg = PlanConfig(head_ratio=0.5, head_scope="global", module_ratio=0, rank_ratio=0)
    plan = random_plan(model, cfg, peft="adapter", kill_heads_layer=0)
    o_name = arch.linear_names(model, ["o"])[0]
    assert plan.heads[0] == [] and o_name in plan.peft_modules  # LoRA would drop it; the adapter still works
    pruned = build_model(as_base(tiny_model()), plan)
    block = pruned.bert.encoder.layer[0]
    assert isinstance(block.attention.self, NoAttention) and isinstance(block.attention.output.dense, AdapterLinear)
    assert block.attention.output.dense.in_features == 0


def test_module_with_no_unit_left_is_removed():
    model = tiny_model()
    roles = arch.linear_roles(model, ["o", "ffn_out"])
    names = list(roles)
    unit_scores = torch.ones(len(names), 4)
    unit_scores[1] = -1.0  # every unit of module 1 is the lowest: global unit pruning takes them all
    _, _, modules = choose(torch.ones(2, 4), torch.ones(2, 37), names, torch.ones(len(names)), unit_scores,
                           PlanConfig(head_ratio=0, ffn_ratio=0, module_ratio=0, rank_ratio=0.25), roles,
                           drop_widthless=False)
    assert names[1] not in modules and len(modules) == len(names) - 1


def test_vanilla_adapter_plan_is_every_placement_role_at_full_size():
    model = tiny_model()
    plan = vanilla_plan(as_base(model), PeftSettings(peft="adapter", adapter_size=6))
    assert plan.peft == "adapter" and list(plan.peft_modules) == arch.linear_names(model, ["o", "ffn_out"])
    assert all(entry["units"] == list(range(6)) for entry in plan.peft_modules.values())
    assert plan.counts["peft_params_after"] == 4 * 6 * 2 * 32  # 4 adapters, 6 units, hidden -> unit -> hidden
    assert plan.counts["foundation_params_after"] == plan.counts["foundation_params_before"]


def test_module_ratio_and_unit_taylor_scores_match_hand_computation():
    model = tiny_model()
    name = arch.linear_names(model, ["ffn_out"])[0]
    add_adapters(model, [name], 3, dropout=0.0)
    wrapped = model.get_submodule(name)
    with torch.no_grad():
        wrapped.adapter.up.weight.normal_()
    tracker = ImportanceTracker(model, total_steps=1, window=1.0)
    seen = {}
    wrapped.base_layer.register_forward_hook(lambda m, args, out: seen.setdefault("h", out.detach()))
    batch = tiny_batch()
    model.train()
    model(**batch, labels=torch.tensor([0, 1, 2])).loss.backward()
    tracker.end_step()

    h = seen["h"]  # (B, T, hidden): the adapter input, the frozen layer's biased output
    down, up = wrapped.adapter.down.weight, wrapped.adapter.up.weight
    delta = torch.relu(h @ down.T) @ up.T
    ratio = delta.norm(dim=-1) / h.norm(dim=-1)  # (B, T)
    expected_module = ratio[batch["attention_mask"].bool()].mean()
    expected_units = (down * down.grad).mean(1).abs() + (up * up.grad).mean(0).abs()

    names, module, units = tracker.results()
    assert names == [name]
    assert torch.isclose(module[0], expected_module.float(), rtol=1e-4)
    assert torch.allclose(units[0], expected_units.float(), rtol=1e-4)


def test_state_round_trip_and_wrong_shapes_are_refused():
    source = adapters_everywhere(tiny_model(), seed=1)
    state = export_state(source)
    assert all(k.endswith((".adapter_down", ".adapter_up")) or k.startswith(("classifier.", "bert.pooler."))
               for k in state)
    target = add_adapters(tiny_model(), arch.linear_names(tiny_model(), ["o", "ffn_out"]), 4)
    import_state(target, state)
    batch = tiny_batch()
    assert torch.allclose(target.eval()(**batch).logits, source(**batch).logits, atol=1e-6)
    bad = {**state, next(iter(state)): torch.zeros(3, 3)}
    with pytest.raises(LightPeftError, match="does not belong to this plan"):
        import_state(target, bad)


@pytest.mark.parametrize("field, value", [("peft", "prefix"), ("adapter_placement", "everywhere"),
                                          ("adapter_activation", "nope"), ("adapter_size", 0),
                                          ("adapter_dropout", 1.0)])
def test_bad_adapter_settings_are_one_line_errors(field, value):
    with pytest.raises(LightPeftError) as err:
        PeftSettings(**{field: value})
    assert "\n" not in str(err.value)


def test_default_config_of_tests_matches_method_config():
    assert set(adapter_config()) == set(PeftSettings(peft="adapter").method_config())
