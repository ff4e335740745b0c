"""lightpeft: prune early, fine-tune cheaper (Light-PEFT on Hugging Face transformers + peft)."""

__version__ = "0.1.0"

from .config import (DataConfig, EstimateConfig, ExportConfig, LightPeftTrainingArguments, ModelConfig,  # noqa: E402
                     PeftSettings, PlanConfig, PredictConfig, RunOptions)
from .errors import LightPeftError  # noqa: E402
from .estimate import Estimate  # noqa: E402
from .export import export_run, load_exported, load_pruned_base  # noqa: E402
from .pipeline import estimate, make_plan, prune, run, train, vanilla_plan  # noqa: E402
from .plan import Plan  # noqa: E402
from .predict import load_predictor, predict_texts  # noqa: E402
from .runs import load_pruned, load_tasks  # noqa: E402

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
    "export_run",
    "load_exported",
    "load_predictor",
    "load_pruned",
    "load_pruned_base",
    "load_tasks",
    "make_plan",
    "predict_texts",
    "prune",
    "run",
    "train",
    "vanilla_plan",
]
