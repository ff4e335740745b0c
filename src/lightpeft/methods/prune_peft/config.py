"""Settings of PrunePEFT's search (`SearchConfig`): the supernet, the budget, the schedule, the criteria and how
they are combined."""

from __future__ import annotations

from dataclasses import dataclass, field

from lightpeft.config import check_positive
from lightpeft.core.peft_kinds import PEFT_ROLES
from lightpeft.errors import LightPeftError
from lightpeft.methods.prune_peft.criteria import check_criteria
from lightpeft.methods.prune_peft.partitions import DEPTH_BLOCKS, NUM_BLOCKS

COMBINERS = ("eq1", "block_dynamic", "random")
ASSIGNMENTS = ("warmup", "paper", "uniform")  # or a path to an assignment JSON file
REINIT = ("fresh", "keep")


@dataclass
class SearchConfig:
    budget_params: int | None = field(
        default=None,
        metadata={"help": "Trainable PEFT parameters the searched plan may keep (the task head not counted). The "
                  "search stops once the remaining modules fit."},
    )
    budget_fraction: float | None = field(
        default=None,
        metadata={"help": "Budget as a fraction of the vanilla PEFT configuration's parameters (--peft, "
                  "--vanilla_targets, --lora_r: LoRA r=8 on q, v by default). Default when no budget is given: 1.0, "
                  "the vanilla budget."},
    )
    lora_roles: list[str] = field(
        default_factory=lambda: ["q", "v"],
        metadata={"help": "Linears of a layer that carry its one candidate LoRA module (the paper: q and v, pruned "
                  "together). Empty: no LoRA candidates."},
    )
    adapter_roles: list[str] = field(
        default_factory=lambda: ["ffn_out"],
        metadata={"help": "Where candidate serial adapters go in every layer, one module per role (the paper: after "
                  "the FFN output, `ffn_out`; add `o` for after the attention output). Empty: no adapters."},
    )
    prune_per_round: int | None = field(
        default=None, metadata={"help": "Modules removed per round, k (default: layers / 6, at least 1)."}
    )
    max_rounds: int | None = field(
        default=None, metadata={"help": "Stop after this many rounds even above the budget (default: until it)."}
    )
    round_epochs: float = field(default=1.0, metadata={"help": "Training per round in epochs (the paper: ~1)."})
    round_steps: int | None = field(
        default=None, metadata={"help": "Training per round in optimizer steps (overrides --round_epochs)."}
    )
    search_data_fraction: float = field(
        default=1.0,
        metadata={"help": "Fraction of the training rows the rounds train on, label-stratified (the paper's low "
                  "fidelity variant: 0.01)."},
    )
    criteria: list[str] = field(
        default_factory=lambda: ["weight", "zeros", "threshold", "activation", "sensitivity", "gradient"],
        metadata={"help": "Criteria the warm-up chooses from (and `uniform` gives every module): weight, zeros, "
                  "threshold, activation, sensitivity, gradient (the paper's Table 1)."},
    )
    criteria_assignment: str = field(
        default="warmup",
        metadata={"help": "Which criteria score which partition (depth block x module kind): `warmup` (the "
                  "paper: single-criterion pruning on a small subset, by pruning frequency), `paper` (the released "
                  "code's fixed table, 4 blocks only), `uniform` (every module by every --criteria, no warm-up; "
                  "with one criterion: the single-criterion ablation), or an assignment.json a previous search wrote "
                  "with the same --depth_blocks (skips the warm-up)."},
    )
    depth_blocks: int = field(
        default=NUM_BLOCKS,
        metadata={"help": f"Depth blocks the layers are cut into, crossed with the module kind: {NUM_BLOCKS} (the "
                  "paper: relative depth < 0.2, < 0.5, < 0.8, the rest) or 1 (one block over all depths per module "
                  "kind: the no-block-partition ablation; the warm-up still assigns criteria per module kind)."},
    )
    combine: str = field(
        default="eq1",
        metadata={"help": "`eq1` (the paper's Eq. 1: rank-weighted normalised scores, one softmax over all "
                  "remaining modules), `block_dynamic` (the released code's per-block top-4), `random` (random "
                  "pruning to the same budget: the ablation)."},
    )
    threshold: float = field(default=1e-6, metadata={"help": "|w| below this counts for the `threshold` criterion."})
    reinit: str = field(
        default="fresh",
        metadata={"help": "`fresh`: every surviving module restarts between rounds (the paper; LoRA B and adapter "
                  "up-projection zero, so each starts as the identity); `keep`: survivors continue."},
    )
    warmup_samples: int = field(default=100, metadata={"help": "Training rows of the warm-up subset (stratified)."})
    warmup_turns: int = field(default=3, metadata={"help": "Pruning turns per criterion in the warm-up."})
    warmup_prune: int = field(default=3, metadata={"help": "Modules one warm-up turn removes."})
    warmup_epochs: float = field(default=3.0, metadata={"help": "Epochs on the warm-up subset per turn."})

    def __post_init__(self):
        if self.budget_params is not None and self.budget_fraction is not None:
            raise LightPeftError("give one budget: --budget_params or --budget_fraction, not both")
        check_positive("budget_params", self.budget_params)
        check_positive("budget_fraction", self.budget_fraction)
        for name in ("prune_per_round", "max_rounds", "round_steps", "warmup_samples", "warmup_turns",
                     "warmup_prune", "round_epochs", "warmup_epochs", "threshold"):
            check_positive(name, getattr(self, name))
        if not 0.0 < self.search_data_fraction <= 1.0:
            raise LightPeftError(f"--search_data_fraction must be in (0, 1], got {self.search_data_fraction}")
        for role in [*self.lora_roles, *self.adapter_roles]:
            if role not in PEFT_ROLES:
                raise LightPeftError(f"unknown PEFT role {role!r}; choose from {', '.join(PEFT_ROLES)}")
        shared = sorted(set(self.lora_roles) & set(self.adapter_roles))
        if shared:
            raise LightPeftError(f"--lora_roles and --adapter_roles share {', '.join(shared)}; one linear carries "
                                 "one PEFT module")
        if not self.lora_roles and not self.adapter_roles:
            raise LightPeftError("the search space is empty; give --lora_roles or --adapter_roles")
        check_criteria(self.criteria, "--criteria")
        if not self.criteria:
            raise LightPeftError("--criteria is empty; name at least one of the criteria")
        if self.combine not in COMBINERS:
            raise LightPeftError(f"--combine must be one of {', '.join(COMBINERS)}, got {self.combine!r}")
        if self.depth_blocks not in DEPTH_BLOCKS:
            raise LightPeftError(f"--depth_blocks must be one of {', '.join(map(str, DEPTH_BLOCKS))}, got "
                                 f"{self.depth_blocks}")
        if self.criteria_assignment == "paper" and self.depth_blocks != NUM_BLOCKS:
            raise LightPeftError(f"--criteria_assignment paper is a table for {NUM_BLOCKS} depth blocks; drop "
                                 f"--depth_blocks {self.depth_blocks} or use warmup / uniform")
        if self.reinit not in REINIT:
            raise LightPeftError(f"--reinit must be one of {', '.join(REINIT)}, got {self.reinit!r}")

    @property
    def assignment_file(self) -> str | None:
        return None if self.criteria_assignment in ASSIGNMENTS else self.criteria_assignment
