"""Resumable staging areas: where an unfinished `run`, `estimate` or `train` keeps its finished work (an estimate, a
plan, a finished arm, the Trainer's checkpoints) until the whole output is complete, so that the same command
continues after a crash, `kill -9` or SIGTERM instead of starting over.

    <parent>/.<name>.partial/     the output being built; moved to <parent>/<name> only once it is complete
        resume.json               the settings that shape the output (configs, base and data file fingerprints)
        estimate/ plan.json ...   finished pieces, each written atomically
        trainer/checkpoint-N/     Trainer checkpoints (safetensors weights); `.complete` once fully written

A rerun reuses the area only if its settings are the recorded ones; otherwise it refuses with one line naming what
changed (`--resume false` discards the area and starts over). An area that holds no finished work yet is discarded
quietly. Multi-process runs do not resume: every rank would need the same view of the area.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

from transformers import TrainerCallback

from lightpeft.errors import LightPeftError
from lightpeft.io import write_json
from lightpeft.stages.outputs import is_main_process, staging, write_marker

log = logging.getLogger(__name__)

RESUME_FILE = "resume.json"
RESUME_SCHEMA_VERSION = 1
CHECKPOINT_DONE = ".complete"  # written into a Trainer checkpoint once it is whole
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_ATOMIC_LEFTOVER = re.compile(r"\..+\.[a-z0-9_]{8}")  # `atomic_path`'s temp dirs a kill left inside the area
# TrainingArguments that never change what a run computes (where it logs, how often it saves, progress bars)
_NOT_SHAPING = re.compile(r"output_dir|logging_.*|log_.*|disable_tqdm|report_to|run_name|project|trackio_.*|"
                          r"push_to_hub|hub_.*|save_.*|resume_from_checkpoint|overwrite_output_dir|"
                          r"dataloader_(num_workers|pin_memory|persistent_workers|prefetch_factor)|skip_memory_metrics")
HEAD_TAIL_BYTES = 1 << 20


def partial_dir(target: Path) -> Path:
    return target.parent / f".{target.name}.partial"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def files_fingerprint(path: str | os.PathLike | None) -> str | None:
    """sha256 over the names, sizes and first/last MiB of the files at `path` (a file, or a directory's files, not
    recursive); None where `path` is not on disk (a packaged alias or hub name: the name is the identity)."""
    if not path or not Path(path).exists():
        return None
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}|{size}|".encode())
        with open(file, "rb") as handle:
            digest.update(handle.read(HEAD_TAIL_BYTES))
            if size > 2 * HEAD_TAIL_BYTES:
                handle.seek(-HEAD_TAIL_BYTES, os.SEEK_END)
                digest.update(handle.read())
    return digest.hexdigest()[:16]


def resume_settings(kind: str, configs: dict, training: dict, inputs: dict) -> dict:
    """What a resumed `kind` of output must share with the interrupted one: the configs (`to_dict`), the training
    arguments that shape results, and the fingerprints of the input files by flag."""
    shaping = {k: v for k, v in training.items() if not _NOT_SHAPING.fullmatch(k)}
    files = {flag: files_fingerprint(path) for flag, path in inputs.items() if path}
    return json.loads(json.dumps({"kind": kind, **configs, "training": shaping, "input_files": files}, default=str))


def changed_settings(recorded: dict, current: dict, limit: int = 4) -> str:
    """`a.b 1 -> 2, ...`: the settings that differ, flattened, at most `limit` named."""
    old, new = _flatten(recorded), _flatten(current)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    shown = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" if not k.startswith("input_files.") else
             f"the files of {k.removeprefix('input_files.')}" for k in keys[:limit]]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(_flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def holds_work(area: Path) -> bool:
    """Whether `area` holds anything worth resuming: a finished estimate, plan or arm, or a complete checkpoint."""
    return area.is_dir() and any(_is_work(p) for p in area.iterdir() if p.name != RESUME_FILE)


def _is_work(path: Path) -> bool:
    if _ATOMIC_LEFTOVER.fullmatch(path.name):
        return False
    if path.name == "trainer" and path.is_dir():
        return last_checkpoint(path) is not None
    return not path.is_dir() or any(_is_work(p) for p in path.iterdir())


def last_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest Trainer checkpoint that was fully written (`CHECKPOINT_DONE`), or None."""
    if not trainer_dir.is_dir():
        return None
    done = [p for p in trainer_dir.iterdir() if _CHECKPOINT.fullmatch(p.name) and (p / CHECKPOINT_DONE).is_file()]
    return max(done, key=lambda p: int(_CHECKPOINT.fullmatch(p.name).group(1)), default=None)


class MarkCompleteCheckpoints(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has written all of it (`on_save` runs after the save), so a
    checkpoint a kill cut short is never resumed from."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                (checkpoint / CHECKPOINT_DONE).write_text(f"{state.global_step}\n")


@contextlib.contextmanager
def resumable_staging(target: Path, kind: str, settings: dict, resume: bool = True) -> Iterator[Path]:
    """Where a resumable stage writes (see the module docstring); call with `target`'s lock held.

    On success the area becomes `target` (marked, replacing a previous output). On any failure or interruption it
    is kept if it holds finished work (the exception gets `kept_state`, the area's path, for the CLI's message),
    else removed."""
    if world_size() > 1:  # multi-process: every rank starts over (the main process discards any area)
        if is_main_process() and partial_dir(target).exists():
            log.warning("discarding %s: multi-process runs do not resume", partial_dir(target))
            shutil.rmtree(partial_dir(target))
        with staging(target, kind) as stage_dir:
            yield stage_dir
        return
    area = partial_dir(target)
    _open_area(area, kind, settings, resume)
    try:
        yield area
        _finish(area, target, kind)  # inside: a full disk while finishing keeps the area like any other failure
    except BaseException as err:
        if holds_work(area):
            err.kept_state = str(area)
            log.warning("kept the finished work of this %s in %s: run the same command again to resume", kind, area)
        else:
            shutil.rmtree(area, ignore_errors=True)
        raise


def _open_area(area: Path, kind: str, settings: dict, resume: bool) -> None:
    if area.exists() and not resume:
        log.warning("--resume false: discarding %s, left by an interrupted %s", area, kind)
        shutil.rmtree(area)
    elif area.exists() and not holds_work(area):
        shutil.rmtree(area)  # interrupted before anything was finished: nothing to keep
    elif area.exists():
        recorded = _recorded_settings(area)
        if recorded != settings:
            changed = changed_settings(recorded, settings) if recorded else "its resume.json is unreadable"
            raise LightPeftError(f"{area} holds an interrupted {kind} with other settings ({changed}); rerun with "
                                 "the same settings to resume it, or pass --resume false to discard it and start over")
        for leftover in (p for p in area.iterdir() if _ATOMIC_LEFTOVER.fullmatch(p.name)):
            shutil.rmtree(leftover, ignore_errors=True)
        log.warning("resuming the interrupted %s in %s (%s)", kind, area, describe(area))
        return
    area.mkdir(parents=True)
    write_json(area / RESUME_FILE, {"schema_version": RESUME_SCHEMA_VERSION, "settings": settings})


def _recorded_settings(area: Path) -> dict | None:
    try:
        data = json.loads((area / RESUME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data.get("settings") if isinstance(data, dict) else None


def describe(area: Path) -> str:
    found = [name for name in ("estimate", "plan.json") if (area / name).exists()]
    for trainer_dir in sorted(area.glob("**/trainer")):
        checkpoint = last_checkpoint(trainer_dir)
        if checkpoint:
            found.append(str(checkpoint.relative_to(area)))
    return ", ".join(found) or "nothing finished"


def _finish(area: Path, target: Path, kind: str) -> None:
    (area / RESUME_FILE).unlink()
    for trainer_dir in list(area.glob("**/trainer")):
        shutil.rmtree(trainer_dir, ignore_errors=True)
    write_marker(area, kind)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(area, target)


def stage_settings(kind: str, args, configs: tuple, inputs: dict, **extra) -> dict:
    """`resume_settings` of a stage: its configs and `args` (TrainingArguments), the files of its `inputs` (flag ->
    path), and `extra` values that shape it (e.g. a plan's or initial weights' fingerprint)."""
    from lightpeft.config import to_dict

    configs = to_dict(*configs, args)
    training = configs.pop("training")
    return resume_settings(kind, {**configs, **extra}, training, inputs)
