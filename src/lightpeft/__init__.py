"""lightpeft: prune early, fine-tune cheaper (Light-PEFT on Hugging Face transformers + peft)."""

from .config import (DataConfig, EstimateConfig, LightPeftTrainingArguments, ModelConfig, PeftSettings, PlanConfig,
                     RunOptions)
from .errors import LightPeftError
from .estimate import Estimate
from .pipeline import estimate, load_pruned, make_plan, prune, run, train, vanilla_plan
from .plan import Plan

__all__ = [
    "DataConfig",
    "Estimate",
    "EstimateConfig",
    "LightPeftError",
    "LightPeftTrainingArguments",
    "ModelConfig",
    "PeftSettings",
    "Plan",
    "PlanConfig",
    "RunOptions",
    "estimate",
    "load_pruned",
    "make_plan",
    "prune",
    "run",
    "train",
    "vanilla_plan",
]
__version__ = "0.1.0"
