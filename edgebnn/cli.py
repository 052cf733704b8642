"""Entry point of the ``edgebnn`` command.

Where a command lives (CONTRIBUTING.md): a command that drives one stage's API is in that stage's
``cli.py`` (``data``/``train`` in trainer/cli.py, ``export`` in trainer/cli_export.py, ``bench``
and ``devices`` in devices/cli.py); a command that combines stages is in ``edgebnn/`` (``convert``,
``verify``, ``summary``, ``estimate``, ``pipeline``). Each such module has ``register(subparsers)``
and every subcommand sets ``func(args) -> int``. They import only argparse-level code at start-up:
torch, TensorFlow and the runtimes are imported inside the handlers, so ``edgebnn --help`` is instant.

User errors are exceptions that carry an ``exit_code`` attribute (each stage defines its own error
class in ``<stage>/errors.py``); they are printed as one line without a traceback. A library error
that names one of its parameters (``error.parameter``, e.g. "runs must be >= 1") is printed with the
command's flag instead ("--runs must be >= 1"): the option whose dest is that name, or the
command's ``parameter_flags`` default where the two differ. Set ``EDGEBNN_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)

# Stage CLIs, then the cross-stage commands (which may import several stages).
STAGE_CLIS = (
    "trainer.cli",  # data, train
    "trainer.cli_export",  # export
    "devices.cli",  # bench, devices
    "edgebnn.convert_cmds",  # convert, verify, summary (converter + runtime + trainer data/checkpoints)
    "edgebnn.estimate_cmd",  # estimate (runtime cost model + devices profiles + zoo + converter)
    "edgebnn.pipeline_cmd",  # pipeline (everything)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgebnn",
        description="Train binary neural networks (LNS), convert them to Larq Compute Engine, "
        "and measure them on edge CPUs.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in STAGE_CLIS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("edgebnn: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        # A full disk (or quota, read-only file system) inside a library (torch's or TensorFlow's
        # temporary files): the user's environment, not a bug. Our own writes already say which file.
        if error.errno not in DISK_ERRNOS or os.environ.get("EDGEBNN_DEBUG"):
            raise
        where = f" {error.filename}" if error.filename else " a temporary file"
        print(
            f"edgebnn: error: cannot write{where}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 2
    except Exception as error:  # noqa: BLE001 - only errors that declare an exit code are user errors
        exit_code = getattr(error, "exit_code", None)
        if exit_code is None or os.environ.get("EDGEBNN_DEBUG"):
            raise
        print(f"edgebnn: error: {with_flags(error, command_flags(parser, args))}", file=sys.stderr)
        return int(exit_code)


def command_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """Parameter name -> flag of the command that parsed ``args`` (its options' dests, subcommands
    followed down, and the command's own ``parameter_flags`` where a name differs from its dest)."""
    flags: dict[str, str] = {}
    while parser is not None:
        chosen = None
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(args, action.dest, None) or "")
            elif action.option_strings and action.dest != "help":
                flags[action.dest] = max(action.option_strings, key=len)
        parser = chosen
    return flags | getattr(args, "parameter_flags", {})


def with_flags(error: BaseException, flags: dict[str, str]) -> str:
    """The error's message, with the parameter it starts with replaced by its command-line flag (a
    parameter the command has no flag for stays as it is).

    >>> from runtime.errors import BenchError
    >>> with_flags(BenchError("timeout_s must be positive, got 0", parameter="timeout_s"), {"timeout_s": "--timeout"})
    '--timeout must be positive, got 0'
    >>> with_flags(BenchError("inputs must be a batch", parameter="inputs"), {"runs": "--runs"})
    'inputs must be a batch'
    """
    message = str(error)
    parameter = getattr(error, "parameter", None)
    if parameter in flags and message.startswith(parameter + " "):
        message = flags[parameter] + message[len(parameter) :]
    return message


if __name__ == "__main__":
    sys.exit(main())
