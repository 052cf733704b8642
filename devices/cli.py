"""``edgebnn`` subcommands of the devices stage."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands. Heavy imports belong inside the handlers."""
