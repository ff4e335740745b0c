"""Process memory as the OS sees it (CPU), as the CUDA allocator sees it (GPU), and as live tensor bytes.

On Linux the peak resident set size (VmHWM) can be reset by writing "5" to /proc/self/clear_refs, so a stage's
peak is its own and not that of an earlier, larger stage in the same process. Elsewhere the process-lifetime
peak (ru_maxrss) is the best available, and `reset_peak()` says so.

RSS on CPU also holds what no tensor holds: freed heap pages glibc keeps, oneDNN's per-shape primitive caches,
libraries. `LiveTensors` counts only the bytes of tensor storages alive at each moment (weights, gradients,
optimizer state, activations, autograd's saved tensors), the CPU counterpart of the CUDA allocator's peak.
"""

from __future__ import annotations

import ctypes
import gc
import re
import resource
import sys
import weakref
from functools import partial
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

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


class LiveTensors(TorchDispatchMode):
    """Peak bytes of live tensor storages during a `with` block, on any device (`peak_bytes`, `peak_mb`).

    Counted: the tensors passed in (modules: parameters, buffers and gradients; optimizers: their state; tensors,
    or dicts / lists of them), live at entry, and every storage an operator returns inside the block, forward and
    backward (autograd runs its operators under the same mode), each storage once however many views share it.
    A storage is subtracted when it is freed (a weakref on the storage object, which torch keeps alive exactly as
    long as the storage). Not counted: scratch memory a kernel allocates and frees inside one operator, tensors
    alive at entry that were not passed in and are never touched, allocator and library caches.
    """

    def __init__(self, *present):
        super().__init__()
        self._present = present
        self._live: dict[int, tuple[weakref.ref, int]] = {}
        self.current_bytes = 0
        self.peak_bytes = 0
        self.start_bytes = 0

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    @property
    def start_mb(self) -> float:
        return self.start_bytes / 2**20

    def track(self, *objects) -> None:
        """Count tensors that exist already (the ones an operator in the block creates are counted by themselves)."""
        for obj in objects:
            if isinstance(obj, torch.nn.Module):
                tensors = [*obj.parameters(), *obj.buffers()]
                tensors += [p.grad for p in obj.parameters() if p.grad is not None]
            elif isinstance(obj, torch.optim.Optimizer):
                tensors = tree_flatten(list(obj.state.values()))[0]
            else:
                tensors = tree_flatten(obj)[0]
            for tensor in tensors:
                if isinstance(tensor, torch.Tensor):
                    self._add(tensor)
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)

    def _add(self, tensor: torch.Tensor) -> None:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError, TypeError):  # sparse / subclass tensors without one storage
            return
        if storage.device.type == "meta":
            return
        key, nbytes = id(storage), storage.nbytes()
        entry = self._live.get(key)
        if entry is None:
            self._live[key] = (weakref.ref(storage, partial(self._freed, key)), nbytes)
            self.current_bytes += nbytes
        elif entry[1] != nbytes:  # resized in place
            self._live[key] = (entry[0], nbytes)
            self.current_bytes += nbytes - entry[1]

    def _freed(self, key: int, ref: weakref.ref) -> None:
        entry = self._live.get(key)
        if entry is not None and entry[0] is ref:
            del self._live[key]
            self.current_bytes -= entry[1]

    def __enter__(self):
        self.track(*self._present)
        self.start_bytes = self.peak_bytes = self.current_bytes
        return super().__enter__()

    def __exit__(self, *exc):
        result = super().__exit__(*exc)
        self._live.clear()  # drops the weakrefs: no callbacks into this object once the block is over
        return result

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self._add(out)
        else:  # operators return a tensor, a tuple / list of tensors (or None), or nothing
            for tensor in out if isinstance(out, (tuple, list)) else tree_flatten(out)[0]:
                if isinstance(tensor, torch.Tensor):
                    self._add(tensor)
        if self.current_bytes > self.peak_bytes:
            self.peak_bytes = self.current_bytes
        return out
