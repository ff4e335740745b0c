"""Atomic writes: an artifact is either complete on disk or absent, never half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place only if the block succeeds.

    Works for files and for directories (the block decides what to create at the yielded path).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_versioned_json(path: Path, version: int, missing: str, corrupt_fix: str, version_fix: str) -> dict:
    """A JSON artifact checked for existence, validity and schema version; each failure is a one-line error.

    `missing` is the whole message for an absent file; the fixes end the corrupt and version messages.
    """
    from lightpeft.errors import LightPeftError

    if not path.is_file():
        raise LightPeftError(missing)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LightPeftError(f"{path} is corrupt{corrupt_fix}") from None
    found = data.get("schema_version") if isinstance(data, dict) else None
    if found != version:
        raise LightPeftError(f"{path} has schema version {found!r}, this lightpeft reads {version}; {version_fix}")
    return data


def read_safetensors(path: Path, fix: str) -> dict:
    """Every tensor of a safetensors file; a missing or truncated file is a one-line error ending in `fix`."""
    from safetensors.torch import load_file

    from lightpeft.errors import LightPeftError

    try:
        return load_file(path)
    except Exception as err:  # safetensors raises several types for missing or truncated files
        raise LightPeftError(f"{path} is corrupt or missing ({type(err).__name__}); {fix}") from None
