"""User-facing errors of the runtime stage: the CLI prints them in one line and exits with exit_code.

A library function names its own parameter (``BenchError("runs must be >= 1", parameter="runs")``);
the command line replaces that name with its flag (``--runs``) when it prints the message.
"""


class BenchError(Exception):
    """A problem with the user's input or environment, not a bug: exit code 2, no traceback."""

    exit_code = 2

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter  # the argument the message starts with, if it is about one
