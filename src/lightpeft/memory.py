"""Process memory as the OS sees it (CPU) and as the CUDA allocator sees it (GPU), per stage.

On Linux the peak resident set size (VmHWM) can be reset by writing "5" to /proc/self/clear_refs, so a stage's
peak is its own and not that of an earlier, larger stage in the same process. Elsewhere the process-lifetime
peak (ru_maxrss) is the best available, and `stage_peak_is_exact()` says so.
"""

from __future__ import annotations

import ctypes
import gc
import re
import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def rss_mb() -> float:
    """Current resident set size in MiB (the lifetime peak where the current value is unavailable)."""
    current = _status_mb("VmRSS")
    return current if current is not None else lifetime_peak_rss_mb()


def lifetime_peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def reset_peak() -> bool:
    """Start a new peak window (RSS and CUDA); False where the OS keeps only the lifetime peak."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak RSS since the last `reset_peak()` (Linux), else since the process started."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else lifetime_peak_rss_mb()


def peak_cuda_mb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def release() -> None:
    """Give freed memory back before a measurement: Python garbage, glibc free lists, the CUDA cache."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed heap pages resident otherwise
    except (OSError, AttributeError):
        pass
