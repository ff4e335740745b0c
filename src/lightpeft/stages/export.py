"""Export a run as a self-contained compact model, and (LoRA runs) as a vanilla peft adapter.

Two formats (export.json `format`):
  * `transformers`: the plan keeps one head count, KV-head count and FFN width in every layer and every PEFT module
    merges (uniform LoRA plans, `--uniform true`): a standard checkpoint. config.json holds the smaller
    num_attention_heads / num_key_value_heads / head_dim (families that carry head_dim) and FFN width, and
    model.safetensors the weights under the standard names as `save_pretrained` writes them, so
    `AutoModelForXxx.from_pretrained(E)` loads it without lightpeft (`core.standard` says what fits).
  * `lightpeft`: everything else (per-layer shapes, adapters). config.json is the base's with the task's labels;
    the pruned shapes are in plan.json, and `lightpeft.load_exported(E)` rebuilds them.

Export directory:
  config.json              see the formats above (id2label from the task)
  model.safetensors        every tensor of the pruned model: LoRA merged into the pruned weights, adapters kept
                           (tied tensors once: a causal LM's lm_head is re-tied to its input embeddings on load)
  plan.json                the run's plan (pruned structure, PEFT modules)
  export.json              schema version, base fingerprint, weights fingerprint, task (kind: which model class
                           to rebuild; labels), files, `format`, `loader` (the call that loads it),
                           `not_standard_because` (why a standard config cannot describe it, or null)
  README.md                the model card: base, the plan's counts, task, dev metric, how to load, the commands
  tokenizer files          from the base (or the run's tokenizer)
  peft/                    LoRA runs only: adapter_config.json + adapter_model.safetensors written by peft itself
                           (explicit target_modules, rank_pattern, alpha_pattern keeping the method's scaling,
                           modules_to_save for the head), and base_weights.safetensors: the pre-merge weights of
                           the linears LoRA was merged into, so `load_pruned_base` restores the exact pruned base.

`load_exported(E)` loads either format (a standard one through transformers; otherwise it rebuilds the structure
from plan.json on a weightless (meta) model and puts the stored tensors in), with no base checkpoint and no
estimate. For the peft route:
    base = load_pruned_base(E); model = peft.PeftModel.from_pretrained(base, E / "peft")
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoConfig

from lightpeft.core import heads
from lightpeft.core.models import assign_tensors, load_tokenizer, model_tensors, tensor_of
from lightpeft.core.peft_kinds import KINDS, hf_model, lora_layers
from lightpeft.core.peft_modules import inject_for_plan
from lightpeft.core.plan import PLAN_FILE, Plan
from lightpeft.core.plan_checks import check_plan
from lightpeft.core.standard import standard_blocker, standard_config
from lightpeft.core.surgery import prune_backbone
from lightpeft.errors import LightPeftError
from lightpeft.fingerprint import fingerprint
from lightpeft.io import read_safetensors, read_versioned_json, write_json
from lightpeft.stages.model_card import write_model_card
from lightpeft.stages.outputs import claimed_output_dir, staging
from lightpeft.stages.run_dir import base_path_of, load_pruned, read_run
from lightpeft.version import __version__

EXPORT_FILE = "export.json"
EXPORT_SCHEMA_VERSION = 1
EXPORT_WEIGHTS_FILE = "model.safetensors"
PEFT_DIR = "peft"
UNMERGED_FILE = "base_weights.safetensors"
STANDARD, LIGHTPEFT = "transformers", "lightpeft"  # export formats: plain from_pretrained, or load_exported


def loader_of(kind: str, standard: bool) -> str:
    """The call that loads an export of a `kind` task model (model cards and export.json name it)."""
    if standard:
        return f"transformers.{heads.TASK_MODEL_CLASSES[kind].__name__}.from_pretrained"
    return "lightpeft.load_exported"


def export_run(run_dir: str | Path, output_dir: str | Path, base: str | None = None,
               overwrite: bool = False) -> Path:
    """Write the export of `run_dir` (see the module docstring) to `output_dir`, atomically.

    `base` is the run's base checkpoint (default: the one recorded in run.json); it must match the plan's
    fingerprint. Every input is checked before anything is written.
    """
    summary = read_run(run_dir)
    base_path = base_path_of(summary, run_dir, base)
    inputs = {"--run_dir": run_dir, "--model_name_or_path": base_path, "tokenizer": summary.get("tokenizer_path")}
    with claimed_output_dir(output_dir, overwrite, inputs) as out:
        _export_into(out, run_dir, summary, base_path)
    return out


def _export_into(out: Path, run_dir, summary: dict, base_path: str) -> None:
    model = load_pruned(base_path, run_dir)
    plan = Plan.load(Path(run_dir) / PLAN_FILE)
    tokenizer = load_tokenizer(base_path, summary.get("tokenizer_path"))
    with staging(out, "export") as tmp:
        write_export(tmp, model, plan, tokenizer, summary, base_path)


def write_export(directory: Path, model, plan: Plan, tokenizer, summary: dict, base_path: str) -> None:
    """The export files of a trained pruned `model` (as `build_model` made it) into the existing `directory`.

    `summary`: at least `task` (name, kind, label_names); its metric fields and `command` go into the model card.
    """
    blocker = standard_blocker(plan, hf_model(model).config)
    if plan.kinds == ["lora"]:  # a plain peft adapter needs every module to be LoRA
        _save_vanilla_peft(model, directory / PEFT_DIR)
    if merged_kinds(plan):
        model = model.merge_and_unload(safe_merge=True)  # new tensors: the base's stay untouched
    _label_config(model.config, summary["task"])
    if blocker is None:  # one shape for every layer: a checkpoint any transformers loader reads
        model.config = standard_config(model.config, plan)
        model.config.architectures = [type(model).__name__]
        model.save_pretrained(directory)
    else:
        model.config.save_pretrained(directory)
        save_file(_untied_tensors(model), directory / EXPORT_WEIGHTS_FILE)
    plan.save(directory / PLAN_FILE)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    kind = heads.kind_of(summary["task"])
    record = {
        "schema_version": EXPORT_SCHEMA_VERSION,
        "lightpeft_version": __version__,
        "method": plan.method,
        "peft": plan.peft,
        "merged": bool(merged_kinds(plan)),
        "base_fingerprint": plan.base_fingerprint,
        "base_path": base_path,
        "weights_fingerprint": fingerprint(model),
        "task": {**summary["task"], "kind": kind},
        "peft_dir": PEFT_DIR if plan.kinds == ["lora"] else None,
        "format": STANDARD if blocker is None else LIGHTPEFT,
        "loader": loader_of(kind, blocker is None),
        "not_standard_because": blocker,
    }
    write_json(directory / EXPORT_FILE, record)
    write_model_card(directory, record, summary, plan)


def _untied_tensors(model) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by name, a tensor shared by several names (tied embeddings) only under its first."""
    seen, out = set(), {}
    for name, (owner, attr) in model_tensors(model).items():
        tensor = tensor_of(owner, attr)
        if id(tensor) not in seen:
            seen.add(id(tensor))
            out[name] = tensor.detach().contiguous().clone()
    return out


def _save_vanilla_peft(model, directory: Path) -> None:
    """peft's own adapter files, plus the unmerged weights of the LoRA-wrapped linears (before they are merged)."""
    model.save_pretrained(directory)
    unmerged = {f"{name}.weight": layer.base_layer.weight.detach().contiguous().clone()  # merging changes weight only
                for name, layer in lora_layers(model).items()}
    save_file(unmerged, directory / UNMERGED_FILE)


def _label_config(config, task: dict):
    """The task model's config with readable labels (id2label) for pipelines and users."""
    names = task.get("label_names")
    if names and heads.kind_of(task) == "classification":
        config.id2label = dict(enumerate(names))
        config.label2id = {name: i for i, name in enumerate(names)}
    return config


# ------------------------------------------------------------------------------------------------ loading


def read_export(export_dir: str | Path) -> dict:
    """export.json of an export directory, schema-checked."""
    return read_versioned_json(
        Path(export_dir) / EXPORT_FILE, EXPORT_SCHEMA_VERSION,
        missing=f"{export_dir} is not an export directory (no {EXPORT_FILE}); pass what `lightpeft export` wrote",
        corrupt_fix=" (not valid JSON); re-run `lightpeft export`",
        version_fix="re-run `lightpeft export` with this version")


def load_exported(export_dir: str | Path) -> torch.nn.Module:
    """The exported task model in eval mode, in one call: no base checkpoint, no estimate.

    Example:
        >>> model = load_exported("exports/rt")  # doctest: +SKIP
        >>> model.config.id2label[int(model(**batch).logits.argmax(-1)[0])]  # doctest: +SKIP
    """
    export_dir = Path(export_dir)
    meta = read_export(export_dir)
    plan = Plan.load(export_dir / PLAN_FILE)
    plan.check_base(meta["base_fingerprint"])
    if meta.get("format") == STANDARD:
        return _checked(_load_standard(export_dir, heads.kind_of(meta["task"])), meta, export_dir)
    model = _skeleton(export_dir, plan, kind=heads.kind_of(meta["task"]))
    tensors = read_safetensors(export_dir / EXPORT_WEIGHTS_FILE, "re-run `lightpeft export`")
    assign_tensors(model, tensors, str(export_dir / EXPORT_WEIGHTS_FILE))
    model.tie_weights()  # tied tensors were stored once (e.g. a causal LM's lm_head = its input embeddings)
    missing = [name for name, (owner, attr) in model_tensors(model).items() if tensor_of(owner, attr).is_meta]
    if missing:
        raise LightPeftError(f"{export_dir / EXPORT_WEIGHTS_FILE} lacks {len(missing)} tensors of the plan's model "
                             f"(first: {missing[0]}); re-run `lightpeft export`")
    return _checked(model, meta, export_dir)


def _load_standard(export_dir: Path, kind: str) -> torch.nn.Module:
    """A standard export, through transformers alone (what any user of the checkpoint does)."""
    try:
        return heads.TASK_MODEL_CLASSES[kind].from_pretrained(export_dir, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as err:
        raise LightPeftError(f"{export_dir} does not load with transformers ({str(err).splitlines()[0]}); re-run "
                             "`lightpeft export`") from None


def _checked(model: torch.nn.Module, meta: dict, export_dir: Path) -> torch.nn.Module:
    if fingerprint(model) != meta["weights_fingerprint"]:
        raise LightPeftError(f"{export_dir / EXPORT_WEIGHTS_FILE} is not the file this export wrote (weights fingerprint "
                             "differs); re-run `lightpeft export`")
    return model.eval()


def load_pruned_base(export_dir: str | Path) -> torch.nn.Module:
    """The pruned base of a LoRA export *without* LoRA merged in: what `E/peft` goes on with plain peft.

    Example:
        >>> from peft import PeftModel  # doctest: +SKIP
        >>> model = PeftModel.from_pretrained(load_pruned_base("exports/rt"), "exports/rt/peft")  # doctest: +SKIP
    """
    export_dir = Path(export_dir)
    meta = read_export(export_dir)
    if not meta.get("peft_dir"):
        raise LightPeftError(f"{export_dir} is an export of a {meta.get('peft')} run, which has no vanilla peft "
                             "adapter; use load_exported")
    model = load_exported(export_dir)
    unmerged = read_safetensors(export_dir / meta["peft_dir"] / UNMERGED_FILE, "re-run `lightpeft export`")
    assign_tensors(model, unmerged, str(export_dir / meta["peft_dir"] / UNMERGED_FILE))
    return model.eval()


def merged_kinds(plan: Plan) -> list[str]:
    """The plan's PEFT kinds that export folds into the base weights (LoRA, through peft's merge)."""
    return [kind for kind in plan.kinds if KINDS[kind].merges_on_export]


def _skeleton(export_dir: Path, plan: Plan, kind: str) -> torch.nn.Module:
    """The plan's pruned task model of `kind`, with the PEFT modules export keeps unmerged (adapters), without
    weights, on the meta device."""
    try:
        config = AutoConfig.from_pretrained(export_dir)
    except (OSError, ValueError) as err:
        raise LightPeftError(f"{export_dir}/config.json is missing or corrupt ({str(err).splitlines()[0]}); "
                             "re-run `lightpeft export`") from None
    model = heads.meta_task_model(config, kind)
    check_plan(plan, model, f"plan file {export_dir / PLAN_FILE}")
    with torch.device("meta"):
        prune_backbone(model, plan)
        kept = plan.only_kinds([k for k in plan.kinds if k not in merged_kinds(plan)])
        if kept.peft_modules:
            inject_for_plan(model, kept)
    return model
