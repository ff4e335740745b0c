"""lightpeft: prune early, fine-tune cheaper (Light-PEFT on Hugging Face transformers + peft)."""

from lightpeft.config import (
    DataConfig,
    ExportConfig,
    LightPeftTrainingArguments,
    ModelConfig,
    PredictConfig,
    RunOptions,
)
from lightpeft.core.build import vanilla_plan
from lightpeft.core.peft_kinds import PeftSettings
from lightpeft.core.plan import Plan
from lightpeft.errors import LightPeftError
from lightpeft.methods.light_peft.config import EstimateConfig, PlanConfig
from lightpeft.methods.light_peft.estimate import Estimate
from lightpeft.methods.light_peft.planning import initial_state, make_plan, prune
from lightpeft.methods.light_peft.recipes import recipe_configs
from lightpeft.stages.estimate import estimate
from lightpeft.stages.export import export_run, load_exported, load_pruned_base
from lightpeft.stages.predict import load_predictor, predict_texts
from lightpeft.stages.run import run
from lightpeft.stages.run_dir import load_pruned, load_tasks
from lightpeft.stages.train import train
from lightpeft.version import __version__  # noqa: F401

__all__ = [
    "DataConfig",
    "Estimate",
    "EstimateConfig",
    "ExportConfig",
    "LightPeftError",
    "LightPeftTrainingArguments",
    "ModelConfig",
    "PeftSettings",
    "Plan",
    "PlanConfig",
    "PredictConfig",
    "RunOptions",
    "estimate",
    "initial_state",
    "export_run",
    "load_exported",
    "load_predictor",
    "load_pruned",
    "load_pruned_base",
    "load_tasks",
    "make_plan",
    "predict_texts",
    "prune",
    "recipe_configs",
    "run",
    "train",
    "vanilla_plan",
]
