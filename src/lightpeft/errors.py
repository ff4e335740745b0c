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
