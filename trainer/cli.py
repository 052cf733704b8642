"""``edgebnn`` subcommands of the trainer stage: ``data show`` and ``train``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands. Heavy imports belong inside the handlers."""
    _add_data_parser(subparsers)
    _add_train_parser(subparsers)


# --- data (owned by the lead) -------------------------------------------------------------------


def _add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect the datasets edgebnn trains on")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    show = data_sub.add_parser(
        "show", help="split sizes, classes, pixel statistics and a PNG grid of samples per class"
    )
    show.add_argument("name", help="dataset: fashion-mnist, cifar10 or synthetic")
    show.add_argument("--data-dir", help="folder with the dataset files (default: where Debian installs them)")
    show.add_argument("--out", help="write a PNG grid of samples per class to this path")
    show.add_argument("--per-class", type=int, default=8, help="samples per class in the grid (default 8)")
    show.set_defaults(func=_run_data_show)


def _run_data_show(args: argparse.Namespace) -> int:
    from trainer.data import describe_dataset, load_dataset, save_sample_grid

    dataset = load_dataset(args.name, data_dir=args.data_dir)
    describe_dataset(dataset)
    if args.out:
        save_sample_grid(dataset, args.out, per_class=args.per_class)
        print(f"sample grid written to {args.out}")
    return 0


# --- train (owned by T2) ------------------------------------------------------------------------


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers ``edgebnn train`` (T2 fills this in)."""
