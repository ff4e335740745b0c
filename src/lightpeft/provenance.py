"""The command line that made an artifact, for run.json and model cards."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command_line(argv: list[str] | None = None) -> str:
    """This process's command as a user would type it: `lightpeft ...` for the CLI, `python SCRIPT ...` otherwise."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return "python"
    if Path(argv[0]).name in ("lightpeft", "__main__.py"):  # the console script, or `python -m lightpeft`
        return shlex.join(["lightpeft", *argv[1:]])
    return shlex.join(["python", *argv])
