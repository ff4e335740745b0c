"""Loading a base checkpoint as a task model, with the checks users need before anything heavy runs."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer
from transformers.utils import logging as hf_logging

from lightpeft.assets import resolve_model_path
from lightpeft.core import arch, heads
from lightpeft.errors import LightPeftError, refused_pickle
from lightpeft.fingerprint import fingerprint

log = logging.getLogger(__name__)


@dataclass
class BaseModel:
    """A freshly loaded base checkpoint as a task model (see `heads`), and what we know about it."""

    model: torch.nn.Module
    path: str
    fingerprint: str
    fresh_keys: list[str]  # weights the checkpoint lacked (initialised at random), e.g. the task head


def load_config(name_or_path: str):
    path = resolve_model_path(name_or_path)
    if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
        raise LightPeftError(f"{path} has no config.json, so it is not a Hugging Face model directory; pass a "
                             "directory with config.json and weights (save_pretrained writes both)")
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise LightPeftError(f"{path} is not a Hugging Face model directory ({str(err).splitlines()[0]}); "
                             "pass a directory with config.json and weights") from None
    arch.get_arch(config)  # unsupported architecture -> clear error before weights load
    return path, config


# what a saved tokenizer leaves in its directory (fast, WordPiece, BPE, SentencePiece, tiktoken)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model", "tekken.json")


def load_tokenizer(name_or_path: str, tokenizer_name: str | None = None):
    """The tokenizer in `tokenizer_name` (default: the model directory). A directory without tokenizer files, or a
    tokenizer whose vocabulary is only its special tokens, is a LightPeftError: transformers would build an empty
    one from config.json alone, and every word would be `[UNK]`."""
    path = resolve_model_path(tokenizer_name or name_or_path)
    fix = "pass a directory that holds one" if tokenizer_name else "pass --tokenizer_name DIR"
    if Path(path).is_dir() and not any((Path(path) / name).is_file() for name in TOKENIZER_FILES):
        raise LightPeftError(f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...); {fix}")
    tokenizer = AutoTokenizer.from_pretrained(path)
    special = set(tokenizer.all_special_tokens)
    if not set(tokenizer.get_vocab()) - special:
        raise LightPeftError(f"the tokenizer in {path} holds only its {len(special)} special tokens (every word "
                             f"would be {tokenizer.unk_token or 'unknown'}); {fix}")
    if tokenizer.pad_token is None:  # decoders: pad with EOS, as their classification heads expect
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_weight_files(path: str) -> None:
    """Every `*.safetensors` file in `path` opens (its header is read, not the tensors): a truncated or corrupt one
    is a LightPeftError naming it instead of a safetensors traceback from deep inside `from_pretrained`."""
    from safetensors import safe_open

    for file in sorted(Path(path).glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as weights:
                weights.keys()
        except Exception as err:  # SafetensorError, or an OSError reading it
            raise LightPeftError(f"{file} is not a readable safetensors file ({str(err).splitlines()[0]}); it may "
                                 "be truncated: copy or save the checkpoint again") from None


def _set_pad_from_eos(config) -> None:
    """Decoder classifiers read the last non-padding token, so they need `pad_token_id`: EOS, as the tokenizer pads."""
    eos = getattr(config, "eos_token_id", None)
    if config.pad_token_id is None and eos is not None:
        config.pad_token_id = eos[0] if isinstance(eos, (list, tuple)) else eos


def load_base(name_or_path: str, num_labels: int | None = None, regression: bool = False, replace_head: bool = False,
              kind: str | None = None) -> BaseModel:
    """Load `name_or_path` as the task model of `kind` (see `heads`): a sequence classifier with `num_labels`
    outputs (1 for regression), an extractive-QA span model, or a causal LM.

    `kind` defaults to `regression` / `classification` by `regression`. An architecture that cannot do `kind` (an
    encoder asked for a causal LM) is a LightPeftError before any weights load. `replace_head`: a task head of another
    size in the checkpoint is fine (it is about to be replaced by a run's trained head); otherwise transformers
    refuses the size mismatch.
    """
    kind = kind or ("regression" if regression else "classification")
    path, config = load_config(name_or_path)
    model_cls = heads.model_class(config, kind)
    if kind in ("classification", "regression"):
        config.num_labels = num_labels
        config.problem_type = "regression" if kind == "regression" else "single_label_classification"
    elif kind == "qa":
        config.num_labels = 2  # BERT-like span heads are num_labels wide: start and end (a classifier base may say 3)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected; we record it ourselves
    check_weight_files(path)
    try:
        model, info = model_cls.from_pretrained(
            path, config=config, output_loading_info=True, dtype=torch.float32, ignore_mismatched_sizes=replace_head,
            key_mapping=heads.checkpoint_key_mapping(config, kind),
        )
    except OSError as err:  # no weight files at all: transformers names what it looked for
        raise LightPeftError(f"cannot load weights from {path} ({str(err).splitlines()[0]}); pass a model directory "
                             "with its weights") from None
    except pickle.UnpicklingError as err:  # a pytorch_model.bin torch's weights_only loader refuses
        raise refused_pickle(f"the weights of {path}", err, "use a checkpoint saved as safetensors "
                             "(model.safetensors) from a source you trust") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    _set_pad_from_eos(model.config)
    fresh = sorted(info.get("missing_keys", []))
    return BaseModel(model=model, path=str(path), fingerprint=fingerprint(model, exclude=tuple(fresh)),
                     fresh_keys=fresh)


def model_tensors(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, str]]:
    """Every parameter and buffer of `model` (non-persistent buffers included): full name -> (owner, attribute)."""
    out = {}
    for owner_name, owner in model.named_modules():
        prefix = f"{owner_name}." if owner_name else ""
        for attr, tensor in [*owner._parameters.items(), *owner._buffers.items()]:
            if tensor is not None:
                out[prefix + attr] = (owner, attr)
    return out


def tensor_of(owner: torch.nn.Module, attr: str) -> torch.Tensor | None:
    """The parameter or buffer `attr` of `owner` (the slots `model_tensors` lists)."""
    return owner._parameters.get(attr, owner._buffers.get(attr))


def assign_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> list[str]:
    """Make `model`'s parameters and buffers *be* `tensors` (no copy), e.g. to fill a meta-device skeleton.

    Every key of `tensors` must name a tensor of `model` with the same shape (else a LightPeftError naming
    `source`). Parameters come out frozen. Returns the names of `model`'s tensors that were not assigned.
    """
    slots = model_tensors(model)
    unknown = sorted(set(tensors) - set(slots))
    if unknown:
        raise LightPeftError(f"{source} holds {len(unknown)} tensors this model does not have (first: {unknown[0]}); "
                             "it does not belong to this plan")
    for name, tensor in tensors.items():
        owner, attr = slots[name]
        current = tensor_of(owner, attr)
        if current.shape != tensor.shape:
            raise LightPeftError(f"{source}: {name} has shape {tuple(tensor.shape)}, expected "
                                 f"{tuple(current.shape)}; it does not belong to this plan")
        if attr in owner._parameters:
            owner._parameters[attr] = torch.nn.Parameter(tensor, requires_grad=False)
        else:
            owner._buffers[attr] = tensor
    return [name for name in slots if name not in tensors]
