"""Atomic writes: an artifact is either complete on disk or absent, never half-written; exclusive lock files."""

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


class LockHeld(Exception):
    """Another process holds the lock; `pid` is the one it recorded (None if it has not written it yet)."""

    def __init__(self, lock_file: Path, pid: int | None):
        super().__init__(f"{lock_file} is held by PID {pid}")
        self.lock_file, self.pid = lock_file, pid


@contextlib.contextmanager
def exclusive_lock(lock_file: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive `flock` on `lock_file` for the block, without waiting: `LockHeld` if another process has it.

    The file holds the holder's PID and is removed on release (also on exceptions; the kernel drops the lock of a
    killed process, whose file the next holder reuses). A process that locked a file its last holder had just
    removed tries again on the new one, so two processes never both hold the lock.
    """
    import fcntl

    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LockHeld(lock_file, int(text) if text.isdigit() else None) from None
        try:
            current = os.stat(lock_file).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # removed or replaced between our open and our lock: lock the file that is there now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield lock_file
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_file)  # before unlocking: whoever opens the path next creates a new file
        os.close(fd)


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
