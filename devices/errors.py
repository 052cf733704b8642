"""User-facing errors of the devices stage: the CLI prints them in one line and exits with exit_code."""


class DevicesError(Exception):
    """A problem with the user's input or environment, not a bug: exit code 2, no traceback."""

    exit_code = 2
