"""User-facing errors of the runtime stage: the CLI prints them in one line and exits with exit_code."""


class BenchError(Exception):
    """A problem with the user's input or environment, not a bug: exit code 2, no traceback."""

    exit_code = 2
