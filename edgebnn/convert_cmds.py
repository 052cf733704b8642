"""CLI glue (stub until implemented)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the subcommands of this module. Heavy imports belong inside the handlers."""
