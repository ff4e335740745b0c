"""Output directories of every stage: refuse to clobber finished work, write into a staging directory that
replaces the target only on success, and let only the main process write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from lightpeft.errors import LightPeftError
from lightpeft.io import atomic_path
from lightpeft.stages.run_dir import RUN_FILE


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def check_output_dir(path: str | Path | None, overwrite: bool) -> Path:
    if not path:
        raise LightPeftError("no output directory given; pass --output_dir DIR")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LightPeftError(f"--output_dir {path} is a file; pass a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        what = "a finished run" if (path / RUN_FILE).exists() or (path / "estimate.json").exists() else "files"
        raise LightPeftError(f"--output_dir {path} already holds {what}; pass --overwrite_output_dir or another dir")
    return path


@contextlib.contextmanager
def staging(path: Path):
    """Where a stage writes: a temp dir that replaces `path` on success (main process); scratch elsewhere."""
    if is_main_process():
        with atomic_path(path) as tmp:
            tmp.mkdir()
            yield tmp
    else:
        with tempfile.TemporaryDirectory(prefix="lightpeft-rank-") as tmp:
            yield Path(tmp)
