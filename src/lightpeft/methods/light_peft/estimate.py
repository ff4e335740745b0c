"""The estimation stage: a short joint run of gates (L1) and PEFT modules on many linears, and its artifact.

Estimate directory (safetensors + JSON, no pickles):
  estimate.json            schema version, base fingerprint, task kind, model dims, PEFT type and settings, module
                           names, steps, stats
  masks.safetensors        `head` (layers, heads), `ffn` (layers, ffn neurons): final gate values;
                           `head_taylor`, `ffn_taylor`: mean per-step |gate x dL/dgate| (see gate_scores)
  importance.safetensors   `module` (modules,), `rank` (modules, r): window means (rank = unit importance)
  peft_weights.safetensors estimated PEFT + task-head weights (canonical names, see peft_modules)
  masks.png                gate values per layer
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from lightpeft.core import arch
from lightpeft.core.peft_kinds import PeftSettings, get_kind
from lightpeft.core.peft_modules import export_state
from lightpeft.core.training import TrainerParts, make_trainer, measured
from lightpeft.errors import LightPeftError
from lightpeft.io import atomic_path, read_safetensors, read_versioned_json
from lightpeft.methods.light_peft import masks
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig
from lightpeft.methods.light_peft.convergence import MaskConvergence
from lightpeft.methods.light_peft.gate_scores import GateTaylor
from lightpeft.methods.light_peft.importance import ImportanceTracker
from lightpeft.methods.light_peft.plan_search import score_candidates
from lightpeft.methods.light_peft.trainer import EstimationTrainer, estimation_args

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: `peft` + `peft_config` (LoRA or adapter); 1 was LoRA-only
META_FILE = "estimate.json"


@dataclass
class Estimate:
    """Everything planning and efficient training need from estimation."""

    meta: dict  # see module docstring
    head_masks: torch.Tensor  # (layers, heads)
    ffn_masks: torch.Tensor  # (layers, ffn)
    module_names: list[str]
    module_importance: torch.Tensor  # (modules,)
    rank_importance: torch.Tensor  # (modules, r)
    peft_state: dict[str, torch.Tensor] = field(repr=False)
    head_taylor: torch.Tensor | None = None  # (layers, heads); None in estimates written before it existed
    ffn_taylor: torch.Tensor | None = None  # (layers, ffn)

    def structure_scores(self, score: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(head, ffn) scores that rank heads and neurons: `gate` values or `taylor` sums (higher = keep)."""
        if score == "gate":
            return self.head_masks, self.ffn_masks
        if self.head_taylor is None:
            raise LightPeftError("this estimate has no Taylor gate scores (written by an older lightpeft); re-run "
                                 "`lightpeft estimate` or use --structure_score gate")
        return self.head_taylor, self.ffn_taylor

    @property
    def fingerprint(self) -> str:
        return self.meta["base_fingerprint"]

    def save(self, directory: str | Path) -> None:
        """Write atomically: the directory appears complete or not at all."""
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            self.write(tmp)

    def write(self, directory: Path) -> None:
        """Write the files into the existing `directory` (a staging directory: not atomic by itself)."""
        gate_tensors = {"head": self.head_masks, "ffn": self.ffn_masks}
        if self.head_taylor is not None:
            gate_tensors.update(head_taylor=self.head_taylor, ffn_taylor=self.ffn_taylor)
        save_file({k: v.contiguous() for k, v in gate_tensors.items()}, directory / "masks.safetensors")
        save_file({"module": self.module_importance.contiguous(), "rank": self.rank_importance.contiguous()},
                  directory / "importance.safetensors")
        save_file({k: v.contiguous() for k, v in self.peft_state.items()}, directory / "peft_weights.safetensors")
        (directory / META_FILE).write_text(json.dumps(self.meta, indent=2) + "\n")
        from lightpeft.report import plot_masks

        plot_masks(self.head_masks, self.ffn_masks, directory / "masks.png")

    @classmethod
    def load(cls, directory: str | Path) -> "Estimate":
        directory = Path(directory)
        meta = _read_meta(directory)
        fix = "re-run `lightpeft estimate`"
        mask_t = read_safetensors(directory / "masks.safetensors", fix)
        imp_t = read_safetensors(directory / "importance.safetensors", fix)
        peft_state = read_safetensors(directory / "peft_weights.safetensors", fix)
        names = meta.get("module_names", [])
        if imp_t["module"].shape[0] != len(names) or mask_t["head"].shape[0] != meta["num_layers"]:
            raise LightPeftError(f"estimate {directory} is inconsistent (tensor shapes disagree with {META_FILE}); "
                                 "re-run `lightpeft estimate`")
        return cls(meta, mask_t["head"], mask_t["ffn"], names, imp_t["module"], imp_t["rank"], peft_state,
                   mask_t.get("head_taylor"), mask_t.get("ffn_taylor"))


def _read_meta(directory: Path) -> dict:
    return read_versioned_json(
        directory / META_FILE, SCHEMA_VERSION,
        missing=f"{directory} is not an estimate directory (no {META_FILE}); pass the directory `lightpeft estimate` "
                "wrote",
        corrupt_fix=" (not valid JSON); re-run `lightpeft estimate`", version_fix="re-run `lightpeft estimate`")


def estimation_steps(cfg: EstimateConfig, training_steps: int) -> int:
    """Estimation length: an explicit step count, or a fraction of the training run raised to
    `min_estimate_steps` (but never beyond half the run), and at least 2 steps."""
    if cfg.estimate_steps:
        return cfg.estimate_steps
    floor = min(cfg.min_estimate_steps, training_steps // 2)
    return max(2, floor, round(cfg.estimate_fraction * training_steps))


def run_estimation(base, tokenizer, train_ds, parts: TrainerParts, args, peft_cfg: PeftSettings,
                   est_cfg: EstimateConfig, steps: int, plan_cfg: PlanConfig | None = None,
                   task_kind: str = "classification", holdout=None, metric_kind: str | None = None) -> Estimate:
    """Train gates + PEFT jointly for `steps` optimizer steps on `base` (a `models.BaseModel`, built for
    `task_kind`) with the task's own loss (classification, QA span or causal-LM loss) and collect stats.
    With `holdout` rows (not in `train_ds`), candidate plans are then scored on them (see `plan_search`).

    Under torchrun/accelerate every process runs this; statistics are all-reduced, so every rank returns the
    same `Estimate` (gates are DDP parameters, Taylor scores come from all-reduced grads).
    """
    model = base.model
    targets = arch.linear_names(model, peft_cfg.estimate_roles())
    peft_model = get_kind(peft_cfg.peft).inject(model, peft_cfg.method_config(), targets, {})
    hf_model = model  # peft wraps `model` itself; adapters live inside it
    handle = masks.attach_gates(hf_model)
    converging = est_cfg.mask_convergence is not None
    tracker = ImportanceTracker(peft_model, total_steps=steps, window=est_cfg.importance_window, marks=converging)
    gate_taylor = GateTaylor(handle.gates, est_cfg.l1_coef)
    callbacks = []
    if converging:
        every = est_cfg.convergence_every or max(2, steps // 20)
        cfg = plan_cfg or PlanConfig()
        watched = gate_taylor.results if cfg.structure_score == "taylor" else handle.gates.values
        callbacks.append(MaskConvergence(watched, tracker, cfg, every, est_cfg.mask_convergence,
                                         est_cfg.convergence_patience, group_size=arch.kv_group_size(model.config)))
    with tempfile.TemporaryDirectory(prefix="lightpeft-estimate-") as scratch:
        trainer = make_trainer(
            peft_model, estimation_args(args, steps, scratch), train_ds, None, tokenizer, parts,
            cls=EstimationTrainer, gates=handle.gates, tracker=tracker, l1_coef=est_cfg.l1_coef,
            mask_lr_coef=est_cfg.mask_lr_coef, gate_taylor=gate_taylor, callbacks=callbacks,
        )
        with measured() as stats:
            trainer.train()
        head_taylor, ffn_taylor = gate_taylor.results()
        candidates = None
        if holdout is not None:
            cfg = plan_cfg or PlanConfig()
            scores = (head_taylor, ffn_taylor) if cfg.structure_score == "taylor" else handle.gates.values()
            candidates = score_candidates(trainer, handle.gates, holdout, *scores, cfg, est_cfg.candidate_ratios,
                                          arch.kv_group_size(model.config), metric_kind)
    tracker.all_reduce()
    names, module_imp, rank_imp = tracker.results()
    tracker.remove()
    _check_same_on_all_ranks(handle.gates.head.detach().clone())
    head_masks, ffn_masks = handle.gates.values()
    handle.detach(hf_model)
    config = model.config
    meta = {
        "schema_version": SCHEMA_VERSION,
        "base_fingerprint": base.fingerprint,
        "base_path": base.path,
        "model_type": config.model_type,
        "num_layers": arch.num_layers(hf_model),
        "num_heads": arch.num_heads(config),
        "num_kv_heads": arch.num_kv_heads(config),
        "head_size": arch.head_size(config),
        "ffn_size": arch.ffn_size(config),
        "task_kind": task_kind,  # which task class the base was built as (counts and prefixes depend on it)
        "num_labels": config.num_labels,
        "problem_type": config.problem_type,
        "peft": peft_cfg.peft,
        "peft_config": peft_cfg.method_config(),
        "module_names": names,
        "module_roles": {n: list(r) for n, r in arch.linear_roles(hf_model, peft_cfg.estimate_roles()).items()},
        "config": config.to_dict(),
        "steps": trainer.state.global_step,
        "max_steps": steps,
        "convergence": {"converged_at": callbacks[0].converged_at, "every": callbacks[0].every,
                        "threshold": callbacks[0].threshold, "history": callbacks[0].history}
        if converging else None,
        "importance_window": est_cfg.importance_window,
        "l1_coef": est_cfg.l1_coef,
        "stats": stats.to_json(),
        "plan_candidates": candidates,
        "final_train_loss": _last_loss(trainer),
    }
    return Estimate(meta, head_masks, ffn_masks, names, module_imp, rank_imp, export_state(peft_model),
                    head_taylor, ffn_taylor)


def _last_loss(trainer) -> float | None:
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return losses[-1] if losses else None


def _check_same_on_all_ranks(tensor: torch.Tensor) -> None:
    """Gates are DDP-synchronised parameters; a mismatch means a broken launch, so fail loudly."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        reference = tensor.clone()
        dist.broadcast(reference, src=0)
        if not torch.equal(reference, tensor):
            raise LightPeftError("gate values differ across processes; launch with torchrun or accelerate launch")
