"""Settings of `lightpeft bench`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from lightpeft.errors import LightPeftError
from lightpeft.methods.prune_peft.config import SearchConfig
from lightpeft.methods.prune_peft.criteria import CRITERIA

DEFAULT_ARMS = ("vanilla", "light-peft")
# PrunePEFT arms: the search at the budget, its ablations (random pruning to the same budget; one criterion of
# Table 1 scoring every partition, no warm-up; one depth block per module kind, warm-up as usual) and the search on
# Light-PEFT's pruned backbone; each is `lightpeft run --method ...` with the search flags and the arm's overrides
SINGLE_CRITERION_ARMS = {f"prune-peft-only-{c}": ("prune_peft", {"criteria_assignment": "uniform", "criteria": [c]})
                         for c in CRITERIA}
SEARCH_ARMS = {"prune-peft": ("prune_peft", {}), "prune-peft-random": ("prune_peft", {"combine": "random"}),
               **SINGLE_CRITERION_ARMS,
               "prune-peft-no-blocks": ("prune_peft", {"depth_blocks": 1, "criteria_assignment": "warmup"}),
               "light-peft+prune-peft": ("light_peft+prune_peft", {})}
ARMS = (*DEFAULT_ARMS, "peer", *SEARCH_ARMS)
LABELS = {"prune-peft": "PrunePEFT", "prune-peft-random": "random pruning",
          **{arm: f"PrunePEFT, {overrides['criteria'][0]} only" for arm, (_, overrides) in SINGLE_CRITERION_ARMS.items()},
          "prune-peft-no-blocks": "PrunePEFT, no depth blocks", "light-peft+prune-peft": "Light-PEFT + PrunePEFT"}


def search_arm(arm: str, search_flags: dict) -> tuple[str, SearchConfig]:
    """A PrunePEFT arm's `--method` and search settings: the bench's search flags with the arm's overrides."""
    method, overrides = SEARCH_ARMS[arm]
    return method, SearchConfig(**{**search_flags, **overrides})


def variant_arm(variant: str) -> str:
    return f"light-peft[{variant}]"


def arm_label(arm: str) -> str:
    if arm in LABELS:
        return LABELS[arm]
    return "vanilla" if arm == "vanilla" else arm.replace("light-peft", "Light-PEFT ").strip()


# training-stage flags a variant may set besides the plan flags (the vanilla arm never distills)
TRAINING_VARIANT_FLAGS = ("distill_weight", "distill_temperature")


def parse_variant(variant: str) -> dict:
    """`key=value,key=value` overrides of one extra Light-PEFT arm: estimation and plan flags, `recipe=NAME` (that
    recipe's values, under the variant's other items) and the training stage's distillation flags
    (`TRAINING_VARIANT_FLAGS`), validated by their own checks."""
    from lightpeft.config import check_distillation
    from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig
    from lightpeft.methods.light_peft.recipes import recipe_values

    allowed = {f.name for cls in (EstimateConfig, PlanConfig) for f in dataclasses.fields(cls)}
    overrides = {}
    for item in filter(None, (part.strip() for part in variant.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in allowed | set(TRAINING_VARIANT_FLAGS):
            raise LightPeftError(f"--variants item {item!r} must be FLAG=VALUE with an estimation or plan flag (e.g. "
                                 "round_to=64, recipe=paper, min_estimate_steps=100; see `lightpeft run --help`) or "
                                 f"{' / '.join(TRAINING_VARIANT_FLAGS)}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    if "recipe" in overrides:  # the recipe's values first, the variant's own items over them
        overrides = {**recipe_values(overrides["recipe"]), **overrides}
    estimate, plan, training = split_variant(overrides)
    EstimateConfig(**estimate)
    PlanConfig(**plan)
    check_distillation(training.get("distill_weight", 0.0), training.get("distill_temperature", 2.0))
    return overrides


def split_variant(overrides: dict) -> tuple[dict, dict, dict]:
    """(EstimateConfig, PlanConfig, training-argument) overrides of a parsed variant."""
    from lightpeft.methods.light_peft.config import EstimateConfig

    estimate_fields = {f.name for f in dataclasses.fields(EstimateConfig)}
    training = {k: v for k, v in overrides.items() if k in TRAINING_VARIANT_FLAGS}
    estimate = {k: v for k, v in overrides.items() if k in estimate_fields}
    return estimate, {k: v for k, v in overrides.items() if k not in training and k not in estimate}, training


def all_arms(cfg: "BenchConfig") -> list[str]:
    return list(cfg.arms) + [variant_arm(v) for v in cfg.variants]
SHAPE_PRESETS = ("minilm", "roberta-base", "roberta-large", "opt-1.3b")


@dataclass
class BenchConfig:
    seeds: list[int] = field(
        default_factory=lambda: [42],
        metadata={"help": "One repeat per seed; both arms use the same seed, and their order alternates between "
                  "repeats (vanilla first, then Light-PEFT first, ...)."},
    )
    arms: list[str] = field(
        default_factory=lambda: list(DEFAULT_ARMS),
        metadata={"help": f"Arms to run: {', '.join(ARMS)}. `peer`: LoRA q,v in a plain peft + transformers Trainer "
                  "script (lightpeft/bench/peer.py) on the same data and settings, to check the vanilla arm is as "
                  "fast as what a user would write. The PrunePEFT arms search with the search flags (e.g. "
                  "--budget_fraction); random pruning stops at the same budget; `prune-peft-only-CRITERION` scores "
                  "every partition by that one criterion (no warm-up); `prune-peft-no-blocks` uses one depth block "
                  "per module kind (warm-up as usual)."},
    )
    infer_batch_sizes: list[int] = field(
        default_factory=lambda: [1, 32], metadata={"help": "Inference batch sizes to time (dev examples)."}
    )
    infer_examples: int = field(
        default=256, metadata={"help": "Dev examples timed per inference batch size (after warm-up)."}
    )
    export_inference: bool = field(
        default=False, metadata={"help": "Also time each run as trained (PEFT unmerged) and as its `lightpeft "
                                 "export` (self-contained, LoRA merged), and report artifact sizes on disk."}
    )
    profile: bool = field(
        default=False, metadata={"help": "Also break a training step of each trained arm into its parts "
                                 "(data, attention, FFN, PEFT, other forward, backward, optimizer)."}
    )
    shape_only: str | None = field(
        default=None,
        metadata={"help": "Time random-init models instead of training: a preset "
                  f"({', '.join(SHAPE_PRESETS)}) or a config.json path. Throughput and memory only, never accuracy."},
    )
    shape_steps: int = field(default=10, metadata={"help": "Shape-only: timed training steps per arm (after warm-up)."})
    shape_batch_size: int = field(default=8, metadata={"help": "Shape-only: batch size of training and inference."})
    shape_seq_length: int = field(default=128, metadata={"help": "Shape-only: tokens per example."})
    variants: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra Light-PEFT arms, each a comma-separated list of estimation, plan or distillation "
                  "flags, e.g. `round_to=64` `recipe=paper` `distill_weight=0.5` (`recipe=NAME`: that recipe's "
                  "values, the variant's other flags over them). With two or more arms besides vanilla, "
                  "tradeoff.png plots dev metric against measured training speed-up."},
    )
    threads: int | None = field(
        default=None,
        metadata={"help": "CPU threads per arm process (torch.set_num_threads); default: torch's choice. Use 1 to "
                  "time on a machine where other work runs (OpenMP barriers stall badly when cores are shared)."},
    )
    bench_label: str | None = field(default=None, metadata={"help": "Name shown in the report (default: the task)."})

    def __post_init__(self):
        if not self.seeds:
            raise LightPeftError("--seeds needs at least one seed")
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or not self.arms:
            raise LightPeftError(f"--arms must be a subset of {', '.join(ARMS)}, got {' '.join(self.arms) or 'none'}")
        if self.shape_only and "peer" in self.arms:
            raise LightPeftError("--arms peer trains on task data; drop it with --shape_only")
        for name in ("infer_examples", "shape_steps", "shape_batch_size", "shape_seq_length"):
            if getattr(self, name) <= 0:
                raise LightPeftError(f"--{name} must be > 0, got {getattr(self, name)}")
        if self.threads is not None and self.threads <= 0:
            raise LightPeftError(f"--threads must be > 0, got {self.threads}")
        if self.shape_only and any(a in SEARCH_ARMS for a in self.arms):
            raise LightPeftError("--shape_only times random-init models and cannot search; drop the PrunePEFT arms")
        for variant in self.variants:
            parse_variant(variant)
        if any(b <= 0 for b in self.infer_batch_sizes):
            raise LightPeftError(f"--infer_batch_sizes must be positive, got {self.infer_batch_sizes}")


@dataclass
class SuiteOptions:
    config: str | None = field(
        default=None, metadata={"help": "The suite file (YAML): its tasks, each a `lightpeft bench` config, and the "
                                "targets the summary checks (e.g. benchmarks/suites/promise.yaml)."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Suite directory (default: the suite file's `output_dir`): tasks/NAME/ per "
                                "task, suite.md, suite.json and suite.png."}
    )
    tasks: str | None = field(
        default=None, metadata={"help": "Comma-separated task names to run (default: all); the summary covers every "
                                "finished task of the suite."}
    )
    rerun: bool = field(
        default=False, metadata={"help": "Run the selected tasks again even when a finished result with the same "
                                 "settings is there (default: reuse it)."}
    )

    def __post_init__(self):
        if not self.config:
            raise LightPeftError("`lightpeft suite` needs --config SUITE.yaml (e.g. benchmarks/suites/promise.yaml)")

    def task_names(self) -> list[str] | None:
        return [t.strip() for t in self.tasks.split(",") if t.strip()] if self.tasks else None
