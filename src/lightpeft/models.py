"""Loading a base checkpoint as a task model, with the checks users need before anything heavy runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from . import arch
from .assets import resolve_model_path
from .errors import LightPeftError
from .fingerprint import fingerprint

log = logging.getLogger(__name__)


@dataclass
class BaseModel:
    """A freshly loaded base checkpoint with a classification head, and what we know about it."""

    model: torch.nn.Module
    path: str
    fingerprint: str
    fresh_keys: list[str]  # weights the checkpoint lacked (initialised at random), e.g. the task head


def load_config(name_or_path: str):
    path = resolve_model_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise LightPeftError(f"{path} is not a Hugging Face model directory ({str(err).splitlines()[0]}); "
                             "pass a directory with config.json and weights") from None
    arch.get_arch(config)  # unsupported architecture -> clear error before weights load
    return path, config


def load_tokenizer(name_or_path: str, tokenizer_name: str | None = None):
    path = resolve_model_path(tokenizer_name or name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # decoders: pad with EOS, as their classification heads expect
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _set_pad_from_eos(config) -> None:
    """Decoder classifiers read the last non-padding token, so they need `pad_token_id`: EOS, as the tokenizer pads."""
    eos = getattr(config, "eos_token_id", None)
    if config.pad_token_id is None and eos is not None:
        config.pad_token_id = eos[0] if isinstance(eos, (list, tuple)) else eos


def load_base(name_or_path: str, num_labels: int, regression: bool = False) -> BaseModel:
    """Load `name_or_path` as a sequence classifier with `num_labels` outputs (1 for regression)."""
    path, config = load_config(name_or_path)
    config.num_labels = num_labels
    config.problem_type = "regression" if regression else "single_label_classification"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected; we record it ourselves
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, output_loading_info=True, dtype=torch.float32
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    _set_pad_from_eos(model.config)
    fresh = sorted(info.get("missing_keys", []))
    return BaseModel(model=model, path=str(path), fingerprint=fingerprint(model, exclude=tuple(fresh)),
                     fresh_keys=fresh)
