"""The one exception type users see: a one-line message that names the problem and the fix."""


class LightPeftError(Exception):
    """Bad input or a broken artifact. The CLI prints `error: <message>` and exits with status 2."""


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM) raised as an exception in the main thread, so that it unwinds like Ctrl-C: staging
    directories are removed and locks released on the way out. The CLI prints one line and exits with 128 + signal
    (143 for SIGTERM, as a shell reports a process the signal ended)."""

    def __init__(self, signal_name: str, exit_code: int):
        super().__init__(signal_name)
        self.signal_name, self.exit_code = signal_name, exit_code


DISK_FULL_ERRNOS = (28, 122)  # ENOSPC, EDQUOT
DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "StorageFull", "os error 28")


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` (or what caused it) is a full disk: an OSError with ENOSPC/EDQUOT, or the wrapped error that
    safetensors (Rust I/O), torch.save and others raise for one."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(err) for text in DISK_FULL_TEXTS):
            return True
        err = err.__cause__ or err.__context__
    return False


def refused_pickle(what: str, err: BaseException, fix: str) -> LightPeftError:
    """The one-line error for a pickle that torch's safe loader (`weights_only=True`) refused. torch's own message
    suggests `weights_only=False`, which runs arbitrary code from the file: lightpeft never does, nor suggests it."""
    return LightPeftError(f"{what} holds a pickle that torch's safe loader refuses ({type(err).__name__}: it stores "
                          f"more than tensors, and lightpeft never unpickles arbitrary objects); {fix}")
