"""Contracts with transformers / peft / accelerate internals that lightpeft relies on.

Each test pins one behaviour of the installed libraries that pruning, gating, importance or training depends on,
so that an upstream change fails here with a message naming the internal, instead of silently computing something
else. The README's "Upstream internals we depend on" table lists them. Every test uses tiny models (well under 2 s).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import sys

import pytest
import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    Cache,
    Conv1D,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from lightpeft import LightPeftError
from lightpeft.cli import COMMANDS, flag_names
from lightpeft.core import arch, heads
from lightpeft.core.peft_kinds import PEFT_ADAPTER_NAME, lora_layers, peft_units, wrap_with_lora
from lightpeft.core.peft_modules import trained_heads
from lightpeft.core.surgery import (
    HEAD_ATTRIBUTES,
    NoAttention,
    _slice,
    check_head_attributes,
    prune_backbone,
    prune_heads,
)
from lightpeft.methods.light_peft import masks
from lightpeft.methods.light_peft.config import PlanConfig
from lightpeft.methods.light_peft.importance import ImportanceTracker

from conftest import DECODERS, FAMILIES, tiny_batch, tiny_config, tiny_model
from helpers import random_plan

ALL_FAMILIES = [*FAMILIES, "xlm-roberta"]
DECODER_FAMILIES = list(DECODERS)
# config fields that pruning makes stale: a forward that reads them after pruning would use the unpruned counts
PRUNED_CONFIG_KEYS = {"num_attention_heads", "num_key_value_heads", "n_head", "intermediate_size", "ffn_dim",
                      "n_inner"}
# names under which a decoder layer may hand the KV cache to its attention module (transformers >= 5.24: `cache`)
CACHE_KEYWORDS = ("cache", "past_key_values", "layer_past")


def _block(model, layer: int = 0):
    return arch.layer_modules(model)[layer]


def _attention(model, layer: int = 0) -> nn.Module:
    return _block(model, layer).get_submodule(arch.get_arch(model).attention)


def _methods_source(cls) -> str:
    """Source of every method a class defines itself except __init__ (which assigns, not reads, its attributes)."""
    parts = []
    for name, member in vars(cls).items():
        function = inspect.unwrap(member) if inspect.isfunction(member) else None
        if function is not None and name != "__init__":
            parts.append(inspect.getsource(function))
    return "\n".join(parts)


def _attention_function_sources(attention: nn.Module) -> str:
    """The attention kernels a module calls with itself as `module`: its file's eager function and sdpa's."""
    functions = [getattr(sys.modules[type(attention).__module__], "eager_attention_forward", None),
                 ALL_ATTENTION_FUNCTIONS["sdpa"]]
    return "\n".join(inspect.getsource(f) for f in functions if f is not None)


def _reads(attention: nn.Module) -> tuple[set[str], set[str]]:
    """(attributes of the module its forward and attention kernels read, config fields they read)."""
    own, kernels = _methods_source(type(attention)), _attention_function_sources(attention)
    attributes = set(re.findall(r"\bself\.(\w+)", own)) | set(re.findall(r"\bmodule\.(\w+)", kernels))
    config = set(re.findall(r"\bconfig\.(\w+)", own + kernels))
    return attributes, config


def _int_attributes(module: nn.Module) -> dict[str, int]:
    return {name: value for name, value in vars(module).items() if type(value) is int}


def _per_layer_ok(name: str, value: int, head_size: int) -> bool:
    """Integers pruning rightly leaves alone: the per-head size and the block index."""
    return name == "layer_idx" or value == head_size


# ------------------------------------------------------------------------------------------ attention bookkeeping


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_attention_forward_reads_only_head_counts_that_pruning_updates(family):
    """Every integer the attention forward (or the eager / sdpa kernel) reads from the module is either updated by
    pruning (surgery.HEAD_ATTRIBUTES), the per-head size or the block index; no pruned config field is read."""
    model = tiny_model(family)
    attention = _attention(model)
    head_size = arch.head_size(model.config)
    attributes, config_fields = _reads(attention)
    ints = _int_attributes(attention)
    stale = sorted(name for name in attributes & set(ints)
                   if name not in HEAD_ATTRIBUTES and not _per_layer_ok(name, ints[name], head_size))
    assert not stale, (f"{type(attention).__name__}'s forward reads {stale}, which pruning does not update; add them "
                       "to surgery.HEAD_ATTRIBUTES if they hold a head count")
    assert not config_fields & PRUNED_CONFIG_KEYS, (
        f"{type(attention).__name__}'s forward reads config.{sorted(config_fields & PRUNED_CONFIG_KEYS)}, which keeps "
        "the unpruned counts (pruning changes modules, not the shared config)")


def _output_changes(model, batch, module: nn.Module, name: str, value) -> bool:
    """Does setting `module.name = value` change the logits (or break the forward)?"""
    reference = model(**batch).logits
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        changed = not torch.allclose(model(**batch).logits, reference)
    except Exception:  # a count that no longer fits the weights: the forward read it
        changed = True
    finally:
        setattr(module, name, original)
    return changed


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_head_count_attributes_the_forward_uses_are_the_ones_pruning_updates(family):
    """Behaviour, not source: perturb each integer attribute of an attention module; those the forward uses (the
    output changes or the forward fails) must all be in HEAD_ATTRIBUTES, and agree with what the source reads."""
    model = tiny_model(family)
    attention = _attention(model)
    head_size = arch.head_size(model.config)
    batch = tiny_batch()  # padded: an attention mask goes to the kernel, so GQA repeats k/v by num_key_value_groups
    used = set()
    with torch.no_grad():
        for name, value in _int_attributes(attention).items():
            if _per_layer_ok(name, value, head_size):
                continue
            if any(_output_changes(model, batch, attention, name, trial) for trial in (value + 1, 1) if trial != value):
                used.add(name)
    assert used <= set(HEAD_ATTRIBUTES), (f"{type(attention).__name__} computes with {sorted(used - set(HEAD_ATTRIBUTES))}"
                                          ", which pruning does not update (surgery.HEAD_ATTRIBUTES)")
    attributes, _ = _reads(attention)
    assert used == attributes & set(HEAD_ATTRIBUTES) & set(_int_attributes(attention)), (
        f"{type(attention).__name__}: the head counts its forward uses ({sorted(used)}) differ from those its source "
        f"reads; the source scan of the test above no longer sees the whole forward")


def test_an_attention_module_with_an_unknown_head_count_is_refused():
    """The runtime guard: a renamed head count (OPT's num_heads -> head_count, GPT-2's split_size -> qkv_split) would
    be left at the unpruned value, so pruning refuses the module instead of computing garbage. (`n_heads` is not an
    unknown name: DistilBERT's, pruning updates it.)"""
    for family, old, new in [("opt", "num_heads", "head_count"), ("gpt2", "split_size", "qkv_split")]:
        model = tiny_model(family)
        plan = random_plan(model, PlanConfig(head_ratio=0.5))
        for block in arch.layer_modules(model):
            attention = block.get_submodule(arch.get_arch(model).attention)
            setattr(attention, new, getattr(attention, old))
            delattr(attention, old)
        with pytest.raises(LightPeftError, match=rf"{type(attention).__name__} keeps {new}="):
            prune_backbone(model, plan)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_supported_attention_modules_pass_the_head_count_guard(family):
    model = tiny_model(family)
    check_head_attributes(_attention(model), arch.head_size(model.config))


@pytest.mark.parametrize("family", ["bert", "opt", "gpt2", "llama"])
def test_masked_equals_pruned_with_eager_attention(family):
    """Pruning assumes nothing of the attention kernel: eager attention (the default elsewhere is sdpa) gives the
    masked model's output too, GQA with fewer query heads per group (num_key_value_groups changes) included."""
    cfg = PlanConfig(head_ratio=0.5, gqa_policy="per_group")
    plan = random_plan(tiny_model(family, attn_implementation="eager"), cfg)
    masked = tiny_model(family, attn_implementation="eager")
    assert masked.config._attn_implementation == "eager"
    masks.set_binary(masks.attach_gates(masked, requires_grad=False).gates, plan.heads, plan.ffn)
    pruned = prune_backbone(tiny_model(family, attn_implementation="eager"), plan)
    batch = tiny_batch()
    with torch.no_grad():
        assert torch.allclose(pruned(**batch).logits, masked(**batch).logits, atol=1e-5)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_structure_table_agrees_with_the_modules(family):
    """arch's counts from the config (head size, KV heads, FFN width incl. GPT-2's n_inner=None) match the linears."""
    model = tiny_model(family)
    config, spec, block = model.config, arch.get_arch(model), _block(model)
    d, heads_, kv = arch.head_size(config), arch.num_heads(config), arch.num_kv_heads(config)
    q_out = arch.features(block.get_submodule(spec.q))[1]
    assert q_out == (3 * heads_ * d if spec.fused_qkv else heads_ * d)
    if not spec.fused_qkv:
        assert arch.features(block.get_submodule(spec.k))[1] == kv * d
    assert arch.features(block.get_submodule(spec.o))[0] == heads_ * d
    assert all(arch.features(block.get_submodule(p))[1] == arch.ffn_size(config) for p in spec.ffn_in)
    assert arch.features(block.get_submodule(spec.ffn_out))[0] == arch.ffn_size(config)
    if family == "gpt2":
        assert arch.ffn_size(tiny_config("gpt2", n_inner=None)) == 4 * config.hidden_size


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_ffn_forward_reads_no_width_that_pruning_leaves_stale(family):
    """The FFN's owner (MLP module, or OPT's decoder layer) computes its width from the linears, not an attribute."""
    model = tiny_model(family)
    spec, block = arch.get_arch(model), _block(model)
    owner_path = spec.ffn_out.rpartition(".")[0]
    owner = block.get_submodule(owner_path) if owner_path else block
    source = _methods_source(type(owner))
    ints = _int_attributes(owner)
    width = arch.ffn_size(model.config)
    stale = sorted(n for n in set(re.findall(r"\bself\.(\w+)", source)) & set(ints) if ints[n] == width)
    assert not stale, f"{type(owner).__name__}'s forward reads the FFN width from {stale}, which pruning leaves stale"
    fields = set(re.findall(r"\bconfig\.(\w+)", source)) & PRUNED_CONFIG_KEYS
    assert not fields, f"{type(owner).__name__}'s forward reads config.{sorted(fields)}, which pruning leaves stale"


# ------------------------------------------------------------------------------------------ KV cache (decoders)


def causal_lm(family: str):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(family)).eval()


PROMPT = torch.tensor([[5, 9, 17, 33, 8, 41, 12]])


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_decoder_attention_files_its_keys_under_its_layer_idx(family):
    """NoAttention takes over `layer_idx` (surgery._no_attention) to keep the cache's layer slots right: each
    attention module holds its block index as `layer_idx`, and that is the cache slot its forward updates."""
    model = causal_lm(family)
    for index in range(arch.num_layers(model)):
        assert _attention(model, index).layer_idx == index
    with torch.no_grad():
        assert model(input_ids=PROMPT, use_cache=True).past_key_values.get_seq_length(1) == PROMPT.shape[1]
        _attention(model, 1).layer_idx = 0  # both layers now write slot 0: slot 1 stays empty
        try:
            misfiled = model(input_ids=PROMPT, use_cache=True).past_key_values.get_seq_length(1) == 0
        except RuntimeError:  # a sliding-window slot (Mistral) written twice no longer fits the mask
            misfiled = True
    assert misfiled, f"{type(_attention(model)).__name__} does not file its keys under its layer_idx"


class _Recorder(nn.Module):
    """Passes everything to the wrapped attention module and records the keyword arguments it got."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[dict] = []

    def forward(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("family", ["opt", "gpt2", "llama"])
def test_decoder_layer_hands_the_cache_to_its_attention_by_keyword(family):
    """The KV cache reaches the attention module as a keyword (`cache` since transformers 5.24, `past_key_values`
    before), which is what NoAttention must read to keep the cache's length right after a layer loses every head."""
    model = causal_lm(family)
    spec = arch.get_arch(model)
    block = _block(model)
    recorder = _Recorder(block.get_submodule(spec.attention))
    owner, _, name = spec.attention.rpartition(".")
    setattr(block.get_submodule(owner) if owner else block, name, recorder)
    with torch.no_grad():
        model(input_ids=PROMPT, use_cache=True)
    kwargs = recorder.calls[0]
    found = [k for k in CACHE_KEYWORDS if isinstance(kwargs.get(k), Cache)]
    assert found, (f"{type(block).__name__} passed no Cache to its attention under {CACHE_KEYWORDS} (got keywords "
                   f"{sorted(kwargs)}); NoAttention must read the new name")


@pytest.mark.parametrize("family", ["opt", "gpt2", "llama"])
def test_no_attention_receives_the_cache_the_decoder_layer_passes(family):
    """A layer pruned to no heads still records its (empty) keys: the decoder layer's cache keyword is one that
    NoAttention reads. (Needs NoAttention to accept transformers 5.24's `cache` keyword.)"""
    model = causal_lm(family)
    config = model.config
    prune_heads(_block(model), arch.get_arch(model), [], [], arch.head_size(config), arch.num_heads(config))
    assert isinstance(_attention(model), NoAttention)
    with torch.no_grad():
        cache = model(input_ids=PROMPT, use_cache=True).past_key_values
    assert cache.get_seq_length(0) == PROMPT.shape[1], (
        "NoAttention did not update the cache of its layer: it does not read the keyword the decoder layer passes "
        "the cache under (see test_decoder_layer_hands_the_cache_to_its_attention_by_keyword)")


# ------------------------------------------------------------------------------------------ GPT-2's Conv1D


def test_sliced_conv1d_with_updated_nf_nx_computes_the_sliced_matmul():
    """Conv1D stores its weight (in=nx, out=nf) and its forward shapes the output with `nf`: surgery slices the weight
    and updates nf / nx, and the result is the sliced matmul (an input side sliced to nothing becomes its bias)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5)
    for side, index in [("out", torch.tensor([0, 2, 5])), ("in", torch.tensor([1, 4])), ("in", torch.tensor([], dtype=torch.long))]:
        parent = nn.Module()
        parent.c = Conv1D(6, 5)
        nn.init.normal_(parent.c.weight)
        nn.init.normal_(parent.c.bias)
        weight, bias = parent.c.weight.detach().clone(), parent.c.bias.detach().clone()
        assert arch.features(parent.c) == (5, 6) == tuple(weight.shape)
        _slice(parent, "c", index, side)
        if side == "out":
            expected = x @ weight[:, index] + bias[index]
        else:
            expected = x[..., index] @ weight[index] + bias
        assert torch.allclose(parent.c(x[..., index] if side == "in" else x), expected, atol=1e-6), (side, index)
    conv = Conv1D(6, 5)
    conv.nf = 4  # the forward really reads nf: a stale value breaks it
    with pytest.raises(RuntimeError):
        conv(x)


# ------------------------------------------------------------------------------------------ gate hooks


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_every_gate_hook_changes_the_output_with_default_settings(family):
    """Gates are forward pre-hooks on the output projections; with the default attention implementation and no hub
    kernels, zeroing one layer's head gates or FFN gates changes the logits (a bypassed hook would not)."""
    model = tiny_model(family)
    assert not getattr(model, "use_kernels", False)
    batch = tiny_batch()
    gates = masks.attach_gates(model, requires_grad=False).gates
    with torch.no_grad():
        reference = model(**batch).logits
        for layer in range(arch.num_layers(model)):
            for row in (gates.head, gates.ffn):
                row[layer] = 0.0
                assert not torch.allclose(model(**batch).logits, reference, atol=1e-6), (layer, tuple(row.shape))
                row[layer] = 1.0


def _bypass(block: nn.Module, path: str) -> None:
    """Stand-in for a fused kernel: the block computes the same thing, but no longer calls the hooked module."""
    hooked = block.get_submodule(path)
    clone = copy.deepcopy(hooked)
    for module in clone.modules():  # a copy without any hook (ours sit on the module and, for PEFT, its parts)
        module._forward_pre_hooks.clear()
        module._forward_hooks.clear()
    owner, _, name = path.rpartition(".")
    setattr(block.get_submodule(owner) if owner else block, name, clone)


@pytest.mark.parametrize("family", ["bert", "opt", "gpt2", "llama"])
@pytest.mark.parametrize("role", ["o", "ffn_out"])
def test_a_bypassed_gate_hook_is_an_error(family, role):
    model = tiny_model(family)
    masks.attach_gates(model)
    spec = arch.get_arch(model)
    _bypass(_block(model, 1), getattr(spec, role))
    with pytest.raises(LightPeftError, match=rf"block 1 ran without calling {re.escape(getattr(spec, role))}"):
        model(**tiny_batch())


def test_a_bypassed_peft_module_is_an_importance_error():
    model = tiny_model("bert")
    names = arch.linear_names(model, ["q"])
    peft_model = wrap_with_lora(model, names, r=2, alpha=4.0, dropout=0.0)
    tracker = ImportanceTracker(peft_model, total_steps=1, window=1.0)
    block = _block(peft_model.get_base_model(), 1)
    _bypass(block, arch.get_arch(model).q)  # layer 1's LoRA query: hooks on its base layer and branch never run
    peft_model.train()
    peft_model(**tiny_batch(), labels=torch.tensor([0, 1, 2])).loss.backward()
    tracker.end_step()
    with pytest.raises(LightPeftError, match=rf"1 PEFT modules \(first: {re.escape(names[1])}\) never ran"):
        tracker.results()


# ------------------------------------------------------------------------------------------ peft


@pytest.mark.parametrize("family", ["bert", "gpt2"])  # nn.Linear, and GPT-2's Conv1D (fan_in_fan_out)
def test_lora_layer_is_base_plus_scaled_branch(family):
    """What importance and surgery read of peft's LoraLayer: the output is base_layer(x) + scaling * lora_B(lora_A(x))
    (lora_B's own output is unscaled), scaling == alpha / r, A is (r, in) and B is (out, r) of the wrapped linear."""
    model = tiny_model(family)
    name = arch.linear_names(model, ["q"])[0]
    peft_model = wrap_with_lora(model, [name], r=4, alpha=8.0, dropout=0.0)
    layer = lora_layers(peft_model)[name]
    nn.init.normal_(layer.lora_B[PEFT_ADAPTER_NAME].weight)
    unit = peft_units(peft_model)[name]
    assert layer.r[PEFT_ADAPTER_NAME] == 4 and layer.lora_alpha[PEFT_ADAPTER_NAME] == 8.0 and unit.scaling == layer.scaling[PEFT_ADAPTER_NAME] == 2.0
    fan_in, fan_out = arch.features(layer.base_layer)
    assert unit.down.shape == (4, fan_in) and unit.up.shape == (fan_out, 4)
    seen = {}
    unit.branch.register_forward_hook(lambda m, a, out: seen.setdefault("branch", out))
    x = torch.randn(2, 3, fan_in)
    with torch.no_grad():
        out = layer(x)
        base = layer.base_layer(x)
        assert torch.allclose(out, base + unit.scaling * (x @ unit.down.T @ unit.up.T), atol=1e-5)
        assert torch.allclose(out, base + unit.scaling * seen["branch"], atol=1e-5)


def test_rank_and_alpha_patterns_are_honoured_per_module():
    """Pruned ranks go to peft as rank_pattern / alpha_pattern keyed by full module names; peft must apply them to
    exactly those modules, keeping the scaling at alpha / r of the original rank."""
    model = tiny_model("bert")
    names = arch.linear_names(model, ["q", "v"])
    peft_model = wrap_with_lora(model, names, r=4, alpha=8.0, dropout=0.0, ranks={names[2]: 2, names[3]: 4})
    layers = lora_layers(peft_model)
    assert set(layers) == set(names)
    for name, layer in layers.items():
        rank = 2 if name == names[2] else 4
        assert layer.r[PEFT_ADAPTER_NAME] == rank and layer.lora_A[PEFT_ADAPTER_NAME].weight.shape[0] == rank, name
        assert layer.scaling[PEFT_ADAPTER_NAME] == pytest.approx(2.0), name


@pytest.mark.parametrize("family, task_class", [("bert", AutoModelForSequenceClassification),
                                                ("llama", AutoModelForSequenceClassification),
                                                ("bert", AutoModelForQuestionAnswering),
                                                ("gpt2", AutoModelForCausalLM)])
def test_peft_wraps_exactly_the_targets_and_trains_our_task_head(family, task_class):
    """peft's wrappers are what lightpeft looks for: LoraLayer on exactly the targets, ModulesToSaveWrapper on the
    task heads lightpeft names (heads.HEAD_NAMES), whose `modules_to_save[adapter]` copy is the one that runs."""
    torch.manual_seed(0)
    model = task_class.from_config(tiny_config(family, num_labels=2)).eval()  # QA: start and end
    expected_heads = set(heads.head_modules(model))
    targets = arch.linear_names(model, ["q", "ffn_out"])
    peft_model = wrap_with_lora(model, targets, r=2, alpha=4.0, dropout=0.0).eval()
    assert set(lora_layers(peft_model)) == set(targets)
    trained = trained_heads(peft_model)
    assert set(trained) == expected_heads
    batch = tiny_batch()
    with torch.no_grad():
        reference = peft_model(**batch)[0]
        for head in trained.values():
            assert all(p.requires_grad for p in head.parameters())
            for p in head.parameters():
                p.mul_(0.5).add_(0.1)
        if trained:
            assert not torch.allclose(peft_model(**batch)[0], reference)


@pytest.mark.parametrize("task_class", [AutoModelForSequenceClassification, AutoModelForQuestionAnswering,
                                        AutoModelForCausalLM])
def test_peft_passes_the_attention_mask_to_the_hf_model_by_keyword(task_class):
    """ImportanceTracker reads `attention_mask` from the keywords of the HF model's call (to average over real
    tokens); every peft task type that lightpeft uses must pass it that way."""
    torch.manual_seed(0)
    family = "llama" if task_class is AutoModelForCausalLM else "bert"
    model = task_class.from_config(tiny_config(family, num_labels=2)).eval()
    peft_model = wrap_with_lora(model, arch.linear_names(model, ["q"]), r=2, alpha=4.0, dropout=0.0)
    seen = {}
    model.register_forward_pre_hook(lambda m, args, kwargs: seen.update(kwargs), with_kwargs=True)
    batch = tiny_batch()
    with torch.no_grad():
        peft_model(**batch)
    assert torch.equal(seen.get("attention_mask"), batch["attention_mask"])


# ------------------------------------------------------------------------------------------ task classes, prefixes


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_task_classes_and_prefixes_match_the_auto_classes(family):
    """heads.model_class (public MODEL_FOR_*_MAPPING) picks the class the Auto classes build; the backbone sits under
    `base_model_prefix` (fingerprints and checkpoint key mappings strip it); only causal LMs can generate."""
    config = tiny_config(family)
    kinds = ["classification", "qa"] + (["causal_lm"] if family in DECODERS else [])
    for kind in kinds:
        with torch.device("meta"):
            built = heads.TASK_MODEL_CLASSES[kind].from_config(config)
        assert heads.model_class(config, kind) is type(built), kind
        assert getattr(built, built.base_model_prefix) is built.base_model, kind
        assert arch.backbone_prefix(built) == built.base_model_prefix, kind
        assert heads.is_causal_lm(built) == (kind == "causal_lm"), kind


# ------------------------------------------------------------------------------------------ Trainer / accelerate


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x, labels=None):
        return {"loss": (self.w * x).sum()}  # d loss / d w == 1 per one-row batch


class _ToyWithKwargs(_Toy):
    def forward(self, x, labels=None, **kwargs):  # **kwargs: Trainer passes num_items_in_batch
        return super().forward(x, labels)


class _Recording(Trainer):
    """Records, at each micro-batch, what EstimationTrainer reads of Trainer's and accelerate's state."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[dict] = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        before = model.w.detach().clone()
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.seen.append({"sync": self.accelerator.sync_gradients, "grad": model.w.grad.detach().clone(),
                          "w_before": before, "w_after": model.w.detach().clone(), "items": num_items_in_batch,
                          "accumulation": self.current_gradient_accumulation_steps})
        return loss


class _StepEnd(TrainerCallback):
    def __init__(self, stop_at: int):
        self.stop_at, self.steps = stop_at, []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps.append((state.global_step, model.w.detach().clone()))
        if state.global_step == self.stop_at:
            control.should_training_stop = True
        return control


@pytest.mark.parametrize("model_cls", [_Toy, _ToyWithKwargs])
def test_trainer_step_order_and_loss_scaling(model_cls, tmp_path):
    """What EstimationTrainer and MaskConvergence rely on, on a one-parameter model with 2-step accumulation:

    * `model_accepts_loss_kwargs` is True exactly when the model's forward takes **kwargs;
    * `current_gradient_accumulation_steps` is the micro-batch count of the optimizer step, set before compute_loss;
    * compute_loss's result is divided by it before backward unless the model takes the loss kwargs (and
      num_items_in_batch is known), so a loss term's weight per optimizer step follows that rule;
    * `accelerator.sync_gradients` is True right after the training_step that completes an optimizer step, whose
      grads are then accumulated and not yet clipped, and the optimizer has not stepped;
    * clipping comes after that training_step and before the optimizer step; on_step_end sees the stepped weights
      and the new global_step, and `should_training_stop` set there ends training after that step.
    """
    lr, max_norm = 0.5, 1e-3
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=1, gradient_accumulation_steps=2,
                             max_steps=3, learning_rate=lr, max_grad_norm=max_norm, optim="sgd",
                             lr_scheduler_type="constant", report_to="none", save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
    rows = [{"x": torch.ones(1), "labels": torch.tensor(0)} for _ in range(8)]
    callback = _StepEnd(stop_at=2)
    trainer = _Recording(model=model_cls(), args=args, train_dataset=rows, callbacks=[callback])
    accepts = model_cls is _ToyWithKwargs
    assert trainer.model_accepts_loss_kwargs is accepts
    trainer.train()

    assert trainer.state.global_step == 2  # stopped by on_step_end at step 2 of max_steps 3
    assert [s["sync"] for s in trainer.seen] == [False, True, False, True]
    divided = not (accepts and trainer.seen[1]["items"] is not None)
    assert not accepts or trainer.seen[1]["items"] is not None
    for first, last in (trainer.seen[0:2], trainer.seen[2:4]):
        assert first["accumulation"] == last["accumulation"] == 2
        per_batch = 0.5 if divided else 1.0
        assert first["grad"].item() == pytest.approx(per_batch)  # a micro-batch's share
        assert last["grad"].item() == pytest.approx(2 * per_batch)  # accumulated, unclipped (max norm 1e-3)
        assert torch.equal(last["w_after"], first["w_before"])  # no optimizer step inside the window
    for (step, w_seen), window in zip(callback.steps, (trainer.seen[0:2], trainer.seen[2:4])):
        # SGD on the clipped grad: the weight moved by lr * max_norm, not by lr * the unclipped grad
        assert w_seen.item() == pytest.approx(window[-1]["w_after"].item() - lr * max_norm, rel=1e-4)
    assert [s for s, _ in callback.steps] == [1, 2]


def test_trainer_optimizer_groups_hold_only_trainable_parameters(tmp_path):
    """EstimationTrainer keeps the gates out of Trainer's default parameter groups by freezing them while
    `Trainer.create_optimizer` builds the groups, then adds them as a group of their own."""
    model = _Toy()
    model.frozen = nn.Parameter(torch.ones(2), requires_grad=False)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, save_strategy="no")
    optimizer = Trainer(model=model, args=args).create_optimizer()
    grouped = [p for group in optimizer.param_groups for p in group["params"]]
    assert any(p is model.w for p in grouped) and not any(p is model.frozen for p in grouped)


# ------------------------------------------------------------------------------------------ command line


@pytest.mark.parametrize("command", list(COMMANDS))
def test_config_file_keys_are_the_parsers_flags(command):
    """cli checks --config keys against the dataclass fields; HfArgumentParser makes one flag per init field (a bool's
    --no_X sets X too), so the two views agree (argparse's private `_actions` read here only, to check that)."""
    parser = HfArgumentParser(COMMANDS[command])
    assert {action.dest for action in parser._actions} - {"help"} == flag_names(COMMANDS[command])
    assert all(dataclasses.is_dataclass(t) for t in COMMANDS[command])
