"""The one exception type users see: a one-line message that names the problem and the fix."""


class LightPeftError(Exception):
    """Bad input or a broken artifact. The CLI prints `error: <message>` and exits with status 2."""
