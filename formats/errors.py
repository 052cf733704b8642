"""The one error type of ``formats``: a bad file or a file that cannot be written (exit code 2)."""


class FormatError(Exception):
    """A file that is not what it claims to be, or that cannot be written; printed as one line."""

    exit_code = 2
