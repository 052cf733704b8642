"""Entry point of the ``edgebnn`` command.

Each stage owns a ``<stage>/cli.py`` with ``register(subparsers)``; every subcommand sets
``func(args) -> int``. Stage CLI modules import only argparse-level code at start-up: torch,
TensorFlow and the runtimes are imported inside the handlers, so ``edgebnn --help`` is instant.

User errors are exceptions that carry an ``exit_code`` attribute (each stage defines its own error
class in ``<stage>/errors.py``); they are printed as one line without a traceback. Set
``EDGEBNN_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Stage CLIs, then the cross-stage commands (which may import several stages).
STAGE_CLIS = (
    "trainer.cli",  # data, train
    "trainer.cli_export",  # export
    "converter.cli",
    "runtime.cli",  # bench
    "devices.cli",  # devices
    "edgebnn.convert_cmds",  # convert, verify, summary (converter + trainer data/checkpoints)
    "edgebnn.estimate_cmd",  # estimate (runtime cost model + zoo + converter)
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
    except Exception as error:  # noqa: BLE001 - only errors that declare an exit code are user errors
        exit_code = getattr(error, "exit_code", None)
        if exit_code is None or os.environ.get("EDGEBNN_DEBUG"):
            raise
        print(f"edgebnn: error: {error}", file=sys.stderr)
        return int(exit_code)


if __name__ == "__main__":
    sys.exit(main())
