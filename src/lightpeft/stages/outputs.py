"""Output directories of every stage: refuse to clobber finished work or anything lightpeft did not write, hold a
lock on the directory for the whole stage, write into a staging directory that replaces the target only on
success, and let only the main process write.

Every output directory carries a marker file, `.lightpeft` (what wrote it, which version, when), written into the
staging directory last, so it appears with the complete artifact. `--overwrite_output_dir` replaces only an empty
directory or one with the marker, and never the stage's inputs (or a directory holding one). The lock is a `flock`
on `<parent>/.<name>.lock`, held by the main process from the first check to the final move; a second writer of
the same directory is refused at once. Staging directories a killed export or benchmark left
(`<parent>/.<name>.XXXXXXXX`) are removed when the next command of that directory holds the lock; `run`, `estimate`
and `train` stage in a resumable area instead (see `resume`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

from lightpeft.errors import LightPeftError
from lightpeft.io import LockHeld, atomic_path, exclusive_lock, write_json
from lightpeft.version import __version__

log = logging.getLogger(__name__)

MARKER = ".lightpeft"
MARKER_SCHEMA_VERSION = 1
OUTPUT_KINDS = {"run": "a finished run", "estimate": "an estimate", "export": "an export", "bench": "a benchmark",
                "suite": "a benchmark suite", "search": "a search"}

Inputs = Mapping[str, "str | os.PathLike | None"]  # flag -> path a stage reads (names that are not paths are skipped)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def stage_inputs(model_cfg, data_cfg=None, **more) -> dict:
    """The paths a training-type stage reads, by flag: base, tokenizer, task data, and `more` (e.g. plan_path)."""
    inputs = {"--model_name_or_path": model_cfg.model_name_or_path, "--tokenizer_name": model_cfg.tokenizer_name}
    if data_cfg is not None:
        inputs.update({"--task": data_cfg.task, "--validation_file": data_cfg.validation_file})
    inputs.update({f"--{flag}": value for flag, value in more.items()})
    return inputs


def marker_of(path: Path) -> dict | None:
    """The marker of a lightpeft output directory, or None (no marker, or not one lightpeft wrote)."""
    try:
        data = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == "lightpeft" else None


def write_marker(directory: Path, kind: str) -> None:
    """Mark `directory` (complete) as lightpeft's `kind` of output, with the files it holds."""
    files = sorted(str(f.relative_to(directory)) for f in directory.rglob("*") if f.is_file())
    write_json(directory / MARKER, {
        "schema_version": MARKER_SCHEMA_VERSION, "written_by": "lightpeft", "lightpeft_version": __version__,
        "kind": kind, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    })


def check_output_dir(path: str | Path | None, overwrite: bool, inputs: Inputs | None = None) -> Path:
    """The resolved output directory, after refusing a file, an input of the stage (or a directory holding one),
    a non-empty directory without `overwrite`, and, with it, a directory lightpeft did not write."""
    if not path:
        raise LightPeftError("no output directory given; pass --output_dir DIR")
    target = Path(path).resolve()  # through symlinks: what would be replaced
    if target.exists() and not target.is_dir():
        raise LightPeftError(f"--output_dir {path} is a file; pass a directory")
    _check_not_an_input(f"--output_dir {path}", target, inputs or {}, inside=True)
    if target.is_dir() and any(target.iterdir()):
        marker = marker_of(target)
        if not overwrite:
            what = OUTPUT_KINDS.get(marker.get("kind"), "lightpeft output") if marker else "files"
            raise LightPeftError(f"--output_dir {path} already holds {what}; pass --overwrite_output_dir or another dir")
        if marker is None:
            raise LightPeftError(f"--output_dir {path} holds files lightpeft did not write (no {MARKER} marker) and "
                                 "--overwrite_output_dir replaces only lightpeft's own outputs; pass another "
                                 "--output_dir, or empty this one yourself")
    return target


def check_output_file(path: str | Path, overwrite: bool, flag: str, overwrite_flag: str,
                      inputs: Inputs | None = None) -> Path:
    """Refuse a directory, an input of the command or a file an input directory holds (one of a lightpeft
    output's files; any existing file of another directory, e.g. a model's), and an existing file without
    `overwrite`."""
    path = Path(path)
    target = path.resolve()
    if target.is_dir():
        raise LightPeftError(f"{flag} {path} is a directory; pass a file path")
    _check_not_an_input(f"{flag} {path}", target, inputs or {}, inside=False)
    if target.exists() and not overwrite:
        raise LightPeftError(f"{flag} {path} already exists; pass {overwrite_flag} or another path")
    return path


def _check_not_an_input(what: str, target: Path, inputs: Inputs, inside: bool) -> None:
    """`inside` (a directory output): also refuse a target holding an input; else (a file): a file that belongs
    to an input directory."""
    for flag, value in inputs.items():
        if not value or not Path(value).exists():  # unset, a packaged alias or a hub name
            continue
        source = Path(value).resolve()
        if source == target:
            raise LightPeftError(f"{what} is the {flag} {value} this command reads; pass another output path")
        if inside and target in source.parents:
            raise LightPeftError(f"{what} holds the {flag} {value} this command reads, and writing it would "
                                 "delete it; pass another --output_dir")
        if not inside and source in target.parents and _belongs_to(target, source):
            raise LightPeftError(f"{what} would replace a file of the {flag} {value} this command reads; pass "
                                 "another path")


def _belongs_to(file: Path, directory: Path) -> bool:
    """Whether `file` is part of `directory`: one of its files by its marker, or, unmarked, any existing file."""
    marker = marker_of(directory)
    if marker is None:
        return file.exists()
    return str(file.relative_to(directory)) in marker.get("files", []) or file.name == MARKER


def lock_file(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def claimed_output_dir(path: str | Path | None, overwrite: bool, inputs: Inputs | None = None) -> Iterator[Path]:
    """The checked output directory (see `check_output_dir`), locked for the block by the main process, with the
    staging directories of earlier killed runs removed. A second writer gets a one-line error naming the holder."""
    target = check_output_dir(path, overwrite, inputs)  # usage errors before anything is created
    if not is_main_process():
        yield target
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(lock_file(target)))
        except LockHeld as held:
            holder = f"PID {held.pid}" if held.pid else "another process"
            raise LightPeftError(f"--output_dir {path} is being written by another lightpeft process ({holder}, "
                                 f"lock {held.lock_file}); wait for it to end or pass another --output_dir") from None
        check_output_dir(path, overwrite, inputs)  # again under the lock: another process may have finished
        remove_stale_staging(target)
        yield target


def remove_stale_staging(target: Path) -> None:
    """Remove the staging directories (`atomic_path`'s `.<name>.XXXXXXXX`) a killed run into `target` left behind.
    Call only while holding `target`'s lock: then no live lightpeft process owns them."""
    if not target.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}")
    for entry in sorted(target.parent.iterdir()):
        if not pattern.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        if all(child.name == target.name or child.name.startswith(f".{target.name}.") for child in entry.iterdir()):
            log.warning("removing %s, left by an interrupted run into %s", entry, target)
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def staging(path: Path, kind: str = "run") -> Iterator[Path]:
    """Where a stage writes: a temp dir that replaces `path` on success, marked as lightpeft's `kind` of output
    (main process); scratch elsewhere."""
    if is_main_process():
        with atomic_path(path) as tmp:
            tmp.mkdir()
            yield tmp
            write_marker(tmp, kind)
    else:
        with tempfile.TemporaryDirectory(prefix="lightpeft-rank-") as tmp:
            yield Path(tmp)
