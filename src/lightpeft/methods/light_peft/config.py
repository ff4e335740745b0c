"""Settings of Light-PEFT's two steps: estimation (`EstimateConfig`) and selection (`PlanConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lightpeft.config import check_positive, check_ratio
from lightpeft.errors import LightPeftError

# The reference scripts' head and FFN ratio. Not 1/3: with the count rule floor(ratio * (n - 1)) + 1, exactly 1/3
# prunes one more unit wherever n - 1 is a multiple of 3 (6 of 16 heads, 1366 of 4096 neurons, instead of 5, 1365).
REFERENCE_THIRD = 0.333333333

TRAIN_SCHEDULES = ("full", "remaining")


@dataclass
class EstimateConfig:
    l1_coef: float = field(default=1e-4, metadata={"help": "L1 coefficient on the head and FFN-neuron masks."})
    mask_lr_coef: float = field(
        default=1.0, metadata={"help": "Mask learning rate = learning_rate x this (the paper: 1, same as PEFT)."}
    )
    estimate_steps: int | None = field(
        default=None, metadata={"help": "Estimation length in optimizer steps (overrides --estimate_fraction)."}
    )
    estimate_fraction: float = field(
        default=0.1, metadata={"help": "Estimation length as a fraction of the training run's optimizer steps."}
    )
    importance_window: float = field(
        default=0.5, metadata={"help": "Average importance over this last fraction of estimation (the paper: 0.5)."}
    )
    mask_convergence: float | None = field(
        default=None,
        metadata={"help": "Stop estimation early once at most this fraction of heads and of FFN neurons changes "
                  "keep/prune status (at the plan's ratios) between checks, --convergence_patience checks in a "
                  "row (EarlyBERT's mask distance; e.g. 0.02). The step count or fraction then caps the length."},
    )
    convergence_every: int | None = field(
        default=None, metadata={"help": "Steps between mask checks (default: a twentieth of the estimation cap, at least 2)."}
    )
    convergence_patience: int = field(default=2, metadata={"help": "Calm checks in a row needed to stop."})
    min_estimate_steps: int = field(
        default=0,
        metadata={"help": "Estimation runs at least this many optimizer steps whatever --estimate_fraction gives "
                  "(but at most half the training run): a fraction of a short run is too few steps to rank units."},
    )
    plan_search_examples: int = field(
        default=0,
        metadata={"help": "Training examples held out from estimation to score candidate plans with the gates "
                  "binarised (forward passes only), which --max_metric_drop chooses from. 0 = no scoring. At most a "
                  "quarter of the training rows is held out; the training stage still uses every row."},
    )
    train_schedule: str = field(
        default="full",
        metadata={"help": "Length of the training stage that follows (`lightpeft run`): `full` (the paper: a fresh "
                  "schedule of the whole run) or `remaining` (the run's steps minus estimation's: the PEFT weights "
                  "continue from estimation, so estimation + training take vanilla's step count)."},
    )
    candidate_ratios: list[float] = field(
        default_factory=lambda: [0.0, 0.15, 0.3, 0.45],
        metadata={"help": "Head and FFN ratios scored on the held-out examples (every head ratio x FFN ratio)."},
    )

    def __post_init__(self):
        if self.l1_coef < 0:
            raise LightPeftError(f"--l1_coef must be >= 0, got {self.l1_coef}")
        check_positive("mask_lr_coef", self.mask_lr_coef)
        check_positive("estimate_steps", self.estimate_steps)
        if not 0.0 < self.estimate_fraction <= 1.0:
            raise LightPeftError(f"--estimate_fraction must be in (0, 1], got {self.estimate_fraction}")
        if self.mask_convergence is not None and not 0.0 <= self.mask_convergence < 1.0:
            raise LightPeftError(f"--mask_convergence must be in [0, 1), got {self.mask_convergence}")
        check_positive("convergence_every", self.convergence_every)
        check_positive("convergence_patience", self.convergence_patience)
        if not 0.0 < self.importance_window <= 1.0:
            raise LightPeftError(f"--importance_window must be in (0, 1], got {self.importance_window}")
        for name in ("min_estimate_steps", "plan_search_examples"):
            if getattr(self, name) < 0:
                raise LightPeftError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.train_schedule not in TRAIN_SCHEDULES:
            raise LightPeftError(f"--train_schedule must be one of {', '.join(TRAIN_SCHEDULES)}, "
                                 f"got {self.train_schedule!r}")
        if not self.candidate_ratios:
            raise LightPeftError("--candidate_ratios needs at least one ratio, e.g. 0 0.2 0.4")
        for ratio in self.candidate_ratios:
            check_ratio("candidate_ratios", ratio)


SCOPES = ("layer", "global")


GQA_POLICIES = ("kv_group", "per_group")

STRUCTURE_SCORES = ("gate", "taylor")

RECIPES = ("paper", "accuracy")  # their values: recipes.py


@dataclass
class PlanConfig:
    head_ratio: float = field(
        default=REFERENCE_THIRD,
        metadata={"help": "Fraction of attention heads to prune (the reference's 0.333333333: 4 of 12, 5 of 16)."},
    )
    head_scope: str = field(default="layer", metadata={"help": "`layer`: the ratio in every layer; `global`."})
    ffn_ratio: float = field(
        default=REFERENCE_THIRD, metadata={"help": "Fraction of FFN neurons to prune (the reference's 0.333333333)."}
    )
    ffn_scope: str = field(default="global", metadata={"help": "`global`: one threshold over all layers; `layer`."})
    module_ratio: float = field(default=0.75, metadata={"help": "Fraction of PEFT modules to prune (global)."})
    rank_ratio: float = field(default=0.5, metadata={"help": "Fraction of LoRA rank units to prune."})
    rank_scope: str = field(default="global", metadata={"help": "`global` over surviving modules, or `layer`."})
    min_peft_layer: int = field(
        default=0,
        metadata={"help": "Keep PEFT modules only in blocks >= this index (same number of modules, chosen among "
                  "those blocks). Backward stops at the lowest trainable block, so this cuts backward cost. "
                  "0 = the paper's global choice."},
    )
    target_train_speedup: float | None = field(
        default=None,
        metadata={"help": "Budget instead of fixed ratios: the smallest head/FFN ratio (>= --head_ratio/--ffn_ratio) "
                  "and lowest PEFT block whose counted training-step FLOPs are 1/this of vanilla PEFT's."},
    )
    target_params_fraction: float | None = field(
        default=None,
        metadata={"help": "Budget instead of fixed ratios: the smallest head/FFN ratio whose foundation model keeps "
                  "at most this fraction of the parameters (e.g. 0.8)."},
    )
    budget_seq_length: int = field(
        default=128, metadata={"help": "Tokens per example assumed by --target_train_speedup's FLOP count."}
    )
    round_to: int = field(
        default=1,
        metadata={"help": "Round each layer's kept FFN width to a multiple of this (highest gates kept). 1 = the "
                  "paper; 32 or 64 give matmul-friendly widths (measured faster on CPU at the same FLOPs)."},
    )
    gqa_policy: str = field(
        default="kv_group",
        metadata={"help": "Grouped-query attention (Llama, Mistral, Qwen): `kv_group` prunes whole key/value groups "
                  "(scored by the mean gate of their query heads; k/v and the KV cache shrink too); `per_group` "
                  "prunes the same number of query heads in every group (k/v stay whole)."},
    )
    uniform: bool = field(
        default=False,
        metadata={"help": "The same head count and FFN width in every layer, so the export is a standard Hugging "
                  "Face checkpoint (plain from_pretrained, vLLM, ONNX). Llama-style models (head_dim in the config) "
                  "lose heads (whole KV groups) and FFN neurons; BERT-style and other families, whose config derives "
                  "the head size from hidden_size / heads, lose FFN neurons only. LoRA only (adapters cannot be "
                  "written in a standard config)."},
    )

    structure_score: str = field(
        default="gate",
        metadata={"help": "How heads and FFN neurons are ranked: `gate` (the final gate value, the paper) or "
                  "`taylor` (|gate x dL/dgate| summed over estimation's steps, from the same backward)."},
    )
    max_metric_drop: float | None = field(
        default=None,
        metadata={"help": "Choose the head and FFN ratios by accuracy instead: among the candidates scored on the "
                  "held-out examples (--plan_search_examples), the one with the cheapest counted training step whose "
                  "predicted metric drop (points: x100 for metrics in [0, 1]; perplexity in its own units) is at most "
                  "this. --head_ratio / --ffn_ratio are then ignored."},
    )
    recipe: str = field(
        default="paper",
        metadata={"help": "Named defaults for the estimation and planning flags: `paper` (the paper's exact recipe, "
                  "the default) or `accuracy` (plans sized by held-out accuracy after a longer estimation); flags "
                  "and --config values override them. Recorded in every plan."},
    )

    def __post_init__(self):
        for name in ("head_ratio", "ffn_ratio", "module_ratio", "rank_ratio"):
            check_ratio(name, getattr(self, name))
        check_positive("round_to", self.round_to)
        if self.min_peft_layer < 0:
            raise LightPeftError(f"--min_peft_layer must be >= 0, got {self.min_peft_layer}")
        if self.target_train_speedup is not None and self.target_train_speedup <= 1.0:
            raise LightPeftError(f"--target_train_speedup must be > 1 (e.g. 2.0), got {self.target_train_speedup}")
        if self.target_params_fraction is not None and not 0.0 < self.target_params_fraction < 1.0:
            raise LightPeftError(f"--target_params_fraction must be in (0, 1), got {self.target_params_fraction}")
        if self.target_train_speedup is not None and self.target_params_fraction is not None:
            raise LightPeftError("give one budget: --target_train_speedup or --target_params_fraction, not both")
        check_positive("budget_seq_length", self.budget_seq_length)
        for name in ("head_scope", "ffn_scope", "rank_scope"):
            if getattr(self, name) not in SCOPES:
                raise LightPeftError(f"--{name} must be one of {', '.join(SCOPES)}, got {getattr(self, name)!r}")
        if self.recipe not in RECIPES:
            raise LightPeftError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if self.structure_score not in STRUCTURE_SCORES:
            raise LightPeftError(f"--structure_score must be one of {', '.join(STRUCTURE_SCORES)}, "
                                 f"got {self.structure_score!r}")
        if self.max_metric_drop is not None:
            if not self.max_metric_drop >= 0:
                raise LightPeftError(f"--max_metric_drop must be >= 0 points, got {self.max_metric_drop}")
            if self.target_train_speedup is not None or self.target_params_fraction is not None:
                raise LightPeftError("give one way to size the plan: --max_metric_drop or a budget, not both")
        if self.gqa_policy not in GQA_POLICIES:
            raise LightPeftError(f"--gqa_policy must be one of {', '.join(GQA_POLICIES)}, got {self.gqa_policy!r}")
