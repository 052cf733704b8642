"""User-facing errors of the devices stage: the CLI prints them in one line and exits with exit_code.

As in the runtime, a library function names its own parameter (``parameter="host"``); the command
line prints its flag (``--host``) instead.
"""


class DevicesError(Exception):
    """A problem with the user's input or environment, not a bug: exit code 2, no traceback."""

    exit_code = 2

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter  # the argument the message starts with, if it is about one
