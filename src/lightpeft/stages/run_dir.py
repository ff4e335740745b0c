"""Run directories as plug-and-play artifacts: one base checkpoint, many small task runs.

A run directory holds only what its task needs (plan.json, PEFT + head weights, run.json; kilobytes to a few MB);
`load_pruned` rebuilds the trained model from the untouched base, and `load_tasks` rebuilds several runs from one
base read once, each task with its own pruned model.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch

from lightpeft.core import heads
from lightpeft.core.build import build_model
from lightpeft.core.models import BaseModel, assign_tensors, load_base, model_tensors, tensor_of
from lightpeft.core.plan import PLAN_FILE, Plan
from lightpeft.errors import LightPeftError
from lightpeft.fingerprint import tensors_fingerprint
from lightpeft.io import read_safetensors, read_versioned_json

log = logging.getLogger(__name__)
_logged_unchecked = False  # an older run's unchecked weights are logged once a process


def read_run(run_dir: str | Path) -> dict:
    """The summary (run.json) of a finished run directory, schema-checked."""
    return read_versioned_json(
        Path(run_dir) / RUN_FILE, RUN_SCHEMA_VERSION,
        missing=f"{run_dir} is not a finished run directory (no {RUN_FILE}); pass what `lightpeft train` or "
        "`lightpeft run` wrote",
        corrupt_fix="; re-run training", version_fix="re-run training with this version")


def base_path_of(summary: dict, run_dir: str | Path, base: str | None) -> str:
    """`base` if given, else the base checkpoint the run was trained from (recorded in run.json)."""
    if base:
        return str(base)
    recorded = summary.get("base_path")
    if not recorded or not Path(recorded).exists():
        raise LightPeftError(f"the base checkpoint run {run_dir} was trained from ({recorded}) is not here; "
                             "pass --model_name_or_path BASE")
    return recorded


def read_run_weights(run_dir: str | Path, summary: dict | None = None) -> dict[str, torch.Tensor]:
    """The run's PEFT and head weights; with its `summary` (run.json), refused unless they are the ones it wrote."""
    path = Path(run_dir) / RUN_WEIGHTS_FILE
    state = read_safetensors(path, "re-run training")
    if summary is not None:
        check_weights(summary, state, path)
    return state


def check_weights(summary: dict, state: dict[str, torch.Tensor], path: Path) -> None:
    """`state` is what the run wrote (run.json's weights fingerprint); runs from before the fingerprint pass."""
    global _logged_unchecked
    recorded = summary.get("weights_fingerprint")
    if recorded is None:
        if not _logged_unchecked:
            log.info("%s records no weights fingerprint (written by an older lightpeft): its weights are not "
                     "checked", path.parent / RUN_FILE)
        _logged_unchecked = True
        return
    if tensors_fingerprint(state) != recorded:
        raise LightPeftError(f"{path} is not the weights file this run wrote (its fingerprint differs from "
                             f"{RUN_FILE}'s, whose metrics are another file's); put the run's own file back or "
                             "re-run training")


def _read(run_dir: str | Path) -> tuple[dict, Plan, dict[str, torch.Tensor]]:
    """Everything of a run directory, checked before anything heavy is built."""
    summary = read_run(run_dir)
    return summary, Plan.load(Path(run_dir) / PLAN_FILE), read_run_weights(run_dir, summary)


def _plan_source(run_dir: str | Path) -> str:
    return f"plan file {Path(run_dir) / PLAN_FILE}"


def load_pruned(base: str | BaseModel | None, run_dir: str | Path):
    """Rebuild a trained run from the untouched base checkpoint: prune to its plan, load its PEFT and head weights.

    Args:
        base: a model path or packaged alias, a `BaseModel` (pruned in place), or None for the base the run was
            trained from.
        run_dir: what `lightpeft train` / `lightpeft run` wrote.

    Returns:
        The model in eval mode (a peft model for LoRA runs, the HF model with adapters inside for adapter runs).

    Example:
        >>> model = load_pruned("minilm", "runs/rt")  # doctest: +SKIP
    """
    summary, plan, state = _read(run_dir)
    if not isinstance(base, BaseModel):
        base = load_run_base(base_path_of(summary, run_dir, base), summary["task"])
    return build_model(base, plan, state, _plan_source(run_dir)).eval()


def load_run_base(path: str, task: dict) -> BaseModel:
    """The base checkpoint as the task model a run was trained as (its task `kind`; see `heads`)."""
    return load_base(path, task.get("num_labels"), task.get("regression", False), replace_head=True,
                     kind=heads.kind_of(task))


def load_tasks(base: str | None, run_dirs: dict[str, str | Path]) -> dict[str, torch.nn.Module]:
    """Several task runs from one base checkpoint in one process: the base is read once (once per task model
    class: classifier, QA, causal LM), each task gets its own pruned model with its own PEFT modules and head.

    Backbone tensors that pruning leaves whole (embeddings, LayerNorms, unpruned linears) are shared between the
    task models, not copied: treat them as read-only (merge LoRA with `safe_merge=True`, which writes new tensors).

    Example:
        >>> models = load_tasks("minilm", {"sst2": "runs/sst2", "rte": "runs/rte"})  # doctest: +SKIP
        >>> logits = models["rte"](**batch).logits  # doctest: +SKIP
    """
    if not run_dirs:
        raise LightPeftError("load_tasks needs at least one run directory")
    runs = {task: _read(run_dir) for task, run_dir in run_dirs.items()}  # every file checked before loading
    first_task, (first_summary, _, _) = next(iter(runs.items()))
    path = base_path_of(first_summary, run_dirs[first_task], base)
    sources: dict[str, BaseModel] = {}  # one base per task model class (classifier, QA, causal LM)
    models = {}
    for task, (summary, plan, state) in runs.items():
        info = summary["task"]
        kind = "classification" if heads.kind_of(info) == "regression" else heads.kind_of(info)
        if kind not in sources:
            sources[kind] = load_run_base(path, info)
        sibling = share_backbone(sources[kind], info.get("num_labels"), info.get("regression", False))
        models[task] = build_model(sibling, plan, state, _plan_source(run_dirs[task])).eval()
    return models


def share_backbone(source: BaseModel, num_labels: int | None = None, regression: bool = False) -> BaseModel:
    """A new task model of `source`'s class whose backbone tensors *are* `source`'s (no copy) and whose head
    (sized for `num_labels` if it is a classifier) is its own, zero-filled until a run's head weights are loaded into
    it. A causal LM has no head of its own: its lm_head is shared too."""
    config = copy.deepcopy(source.model.config)
    if num_labels is not None:
        config.num_labels = num_labels
        config.problem_type = "regression" if regression else "single_label_classification"
    with torch.device("meta"):  # a skeleton: no memory, no random init
        model = type(source.model)(config)
    prefixes = heads.head_prefixes(model)
    shared = {name: tensor_of(owner, attr).detach()
              for name, (owner, attr) in model_tensors(source.model).items() if not name.startswith(prefixes)}
    leftover = assign_tensors(model, shared, "the base checkpoint")
    slots = model_tensors(model)
    own = {name: torch.zeros(tensor_of(*slots[name]).shape, dtype=tensor_of(*slots[name]).dtype) for name in leftover}
    assign_tensors(model, own, "the task head")
    return BaseModel(model=model.eval(), path=source.path, fingerprint=source.fingerprint,
                     fresh_keys=source.fresh_keys)


RUN_FILE = "run.json"  # written last: its presence marks a finished run


RUN_SCHEMA_VERSION = 2  # 2: `peft` type, `base_path`, task `has_pair` / `max_seq_length`


RUN_WEIGHTS_FILE = "peft_weights.safetensors"
