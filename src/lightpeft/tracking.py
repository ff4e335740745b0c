"""Experiment tracking through the Trainer's own `report_to`: where TensorBoard writes for each stage.

The Trainer's TensorBoard callback writes under `output_dir/runs/...` unless TENSORBOARD_LOGGING_DIR is set when
the Trainer is built. lightpeft's stages train in scratch directories (removed afterwards), so each stage points it
at a folder of its artifact instead, unless the user set the variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "TENSORBOARD_LOGGING_DIR"
TRACKING_DIR = "tensorboard"  # beside a stage's artifacts


def reports_to_tensorboard(args) -> bool:
    report_to = getattr(args, "report_to", None) or []
    return "tensorboard" in ([report_to] if isinstance(report_to, str) else report_to)


@contextmanager
def tensorboard_dir(path: str | Path, args) -> Iterator[None]:
    """While building a Trainer: its TensorBoard events go to `path` (when it reports there and the user left
    TENSORBOARD_LOGGING_DIR unset)."""
    if not reports_to_tensorboard(args) or os.environ.get(ENV):
        yield
        return
    os.environ[ENV] = str(path)
    try:
        yield
    finally:
        del os.environ[ENV]
