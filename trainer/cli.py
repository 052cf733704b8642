"""``edgebnn`` subcommands of the trainer stage: ``data show`` and ``train``.

Only argparse-level code runs at start-up (``edgebnn --help`` must not import torch): the choices
come from ``trainer.binarizers`` and ``trainer.config``, which need no torch; the handlers import the rest.

    >>> import argparse
    >>> from trainer.cli import register
    >>> parser = argparse.ArgumentParser(prog="edgebnn")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["train", "--model", "fmnist-bnn", "--data", "synthetic", "--out", "runs/x"])
    >>> args.binarizer, args.act_binarizer, args.epochs
    ('ste', 'ste', 10)
"""

from __future__ import annotations

import argparse

from trainer.binarizers import ACTIVATION_BINARIZERS, AUX_REDUCTIONS, WEIGHT_BINARIZERS
from trainer.config import (
    DEFAULT_KD_TEMPERATURE,
    DEFAULT_KD_WEIGHT,
    DEFAULT_WARMUP_MAPPING_STEPS,
    DEVICES,
    OPTIMIZERS,
    SCHEDULES,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands. Heavy imports belong inside the handlers."""
    _add_data_parser(subparsers)
    _add_train_parser(subparsers)


# --- data ---------------------------------------------------------------------------------------


def _add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect the datasets edgebnn trains on")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    show = data_sub.add_parser(
        "show", help="split sizes, classes, pixel statistics and a PNG grid of samples per class"
    )
    show.add_argument("name", help="dataset: fashion-mnist, cifar10 or synthetic")
    show.add_argument(
        "--data-dir", help="folder with the dataset files (default: where Debian installs them)"
    )
    show.add_argument("--out", help="write a PNG grid of samples per class to this path")
    show.add_argument("--per-class", type=int, default=8, help="samples per class in the grid (default 8)")
    show.set_defaults(func=_run_data_show)


def _run_data_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from formats.files import check_writable, refuse_overwriting_inputs
    from trainer.data import describe_dataset, load_dataset, save_sample_grid
    from trainer.errors import TrainerError

    if not 1 <= args.per_class <= 100:
        raise TrainerError(f"--per-class must be in 1..100, got {args.per_class}")
    if args.out:  # before loading anything: the grid must not replace a dataset file
        folder = Path(args.data_dir) if args.data_dir else None
        inputs = [p for p in folder.iterdir() if p.is_file()] if folder and folder.is_dir() else []
        refuse_overwriting_inputs({"--out": args.out}, inputs)
        check_writable(args.out)
    dataset = load_dataset(args.name, data_dir=args.data_dir)
    describe_dataset(dataset)
    if args.out:
        save_sample_grid(dataset, args.out, per_class=args.per_class)
        print(f"sample grid written to {args.out}")
    return 0


# --- train --------------------------------------------------------------------------------------


TRAIN_EPILOG = """examples:
  edgebnn train --model fmnist-bnn --data fashion-mnist --epochs 15 --out runs/baseline
  edgebnn train --model fmnist-bnn --data fashion-mnist --binarizer lns --init runs/baseline/best.pt \\
      --epochs 5 --lr 2e-4 --mapping-lr 1e-3 --out runs/lns
  edgebnn train --model fmnist-bnn --data fashion-mnist --binarizer none --act-binarizer none --out runs/fp
  edgebnn train --model fmnist-bnn --data fashion-mnist --teacher runs/fp/best.pt --out runs/kd
  torchrun --nproc_per_node=2 -m edgebnn train --model resnet20 --data cifar10 --data-dir D --out runs/r20
"""


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """``edgebnn train``: every flag maps onto a field of ``trainer.train.TrainConfig``."""
    train = subparsers.add_parser(
        "train",
        help="train a binary network (STE or LNS), with checkpoints, resume, metrics and curves",
        description="Train a binary network. Writes RUN_DIR/last.pt, best.pt (by validation accuracy), "
        "metrics.jsonl and curves.png after every epoch. Ctrl-C saves a resumable checkpoint (exit 130).",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = train.add_argument_group("model and data")
    what.add_argument("--model", required=True, help="zoo model name, e.g. fmnist-bnn, resnet20")
    what.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture option of the zoo model, value in JSON (e.g. width=32); repeatable",
    )
    what.add_argument("--data", required=True, help="dataset: fashion-mnist, cifar10 or synthetic")
    what.add_argument(
        "--data-dir", help="folder with the dataset files (default: where Debian installs them)"
    )
    what.add_argument("--subset", type=int, help="train on the first N training images only")
    what.add_argument(
        "--val-size",
        type=int,
        help="validation images split off the training set (default 5000, or a tenth of small sets)",
    )
    what.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="random crop + flip (default: on for fashion-mnist, cifar10)",
    )
    binarizer = train.add_argument_group("binarization (LNS)")
    binarizer.add_argument(
        "--binarizer",
        choices=tuple(WEIGHT_BINARIZERS),
        default="ste",
        help="weight binarizer (default ste; none = full-precision weights)",
    )
    binarizer.add_argument(
        "--act-binarizer",
        choices=tuple(ACTIVATION_BINARIZERS),
        default="ste",
        help="activation binarizer gradient (none = full-precision activations, zero padding)",
    )
    binarizer.add_argument(
        "--alpha", type=float, default=1.0, help="weight of the LNS auxiliary loss (default 1.0)"
    )
    binarizer.add_argument(
        "--rho", type=float, default=0.005, help="LNS label-noise rate, both directions (default 0.005)"
    )
    binarizer.add_argument(
        "--rho-pos", type=float, help="noise rate P(sign(W)=-1 | true +1) (default: --rho)"
    )
    binarizer.add_argument(
        "--rho-neg", type=float, help="noise rate P(sign(W)=+1 | true -1) (default: --rho)"
    )
    binarizer.add_argument(
        "--mapping-width", type=int, default=2, help="mapping hidden channels = width * c_in"
    )
    binarizer.add_argument(
        "--mapping-lr", type=float, help="learning rate of the LNS mapping networks (default: --lr)"
    )
    binarizer.add_argument(
        "--aux-reduction",
        choices=AUX_REDUCTIONS,
        default="sum",
        help="LNS aux loss over a layer's weights: sum (the paper's, default) or mean (not the paper's)",
    )
    binarizer.add_argument(
        "--init", metavar="CKPT", help="start from a trained checkpoint (strict, except new mapping nets)"
    )
    binarizer.add_argument(
        "--warmup-mapping-epochs",
        type=int,
        default=0,
        metavar="K",
        help="first train only the mapping networks for K epochs on data (default 0)",
    )
    binarizer.add_argument(
        "--warmup-mapping-steps",
        type=int,
        metavar="N",
        help="data-free warm-up: train only the mapping networks on the aux loss until their bits agree "
        "with sign(W) on 99.9%% of every layer or N steps pass (default for lns without "
        f"--warmup-mapping-epochs: {DEFAULT_WARMUP_MAPPING_STEPS}; 0 = off)",
    )
    distill = train.add_argument_group("knowledge distillation")
    distill.add_argument(
        "--teacher", metavar="CKPT", help="distil from this checkpoint of the same dataset (e.g. the FP twin)"
    )
    distill.add_argument(
        "--kd-weight",
        type=float,
        help=f"w in (1-w)*CE + w*T^2*KL(teacher||student) (default with --teacher: {DEFAULT_KD_WEIGHT})",
    )
    distill.add_argument(
        "--kd-temperature",
        type=float,
        help=f"distillation temperature T (default with --teacher: {DEFAULT_KD_TEMPERATURE})",
    )
    optim = train.add_argument_group("optimisation")
    optim.add_argument(
        "--epochs", type=int, default=10, help="joint training epochs (after the warm-up; default 10)"
    )
    optim.add_argument(
        "--batch-size",
        type=int,
        default=128,
        help="images per step and process (torchrun: N processes step on N batches; default 128)",
    )
    optim.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default adam")
    optim.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    optim.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    optim.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="L2 decay on non-binary parameters; binary latent weights get 0",
    )
    optim.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="per-epoch LR schedule")
    optim.add_argument(
        "--step-size", type=int, default=30, help="step schedule: epochs between decays (default 30)"
    )
    optim.add_argument("--gamma", type=float, default=0.1, help="step schedule: decay factor (default 0.1)")
    optim.add_argument(
        "--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing (default 0)"
    )
    optim.add_argument("--seed", type=int, default=0, help="seed of init, split, data order, augmentation")
    run = train.add_argument_group("run")
    run.add_argument(
        "--out", required=True, metavar="RUN_DIR", help="run folder for checkpoints, metrics, curves"
    )
    run.add_argument(
        "--resume", action="store_true", help="continue RUN_DIR/last.pt exactly where it stopped"
    )
    run.add_argument("--device", choices=DEVICES, default="cpu", help="default cpu")
    run.add_argument(
        "--threads", type=int, help="torch CPU threads per process (default: the CPUs this process may use)"
    )
    run.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NHWC memory format for training (default on: faster on CPU)",
    )
    train.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import os
    import sys

    from trainer.run_files import removed_if_left_empty
    from trainer.train import TrainConfig, TrainingDiverged, TrainingInterrupted, train

    options = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__ if hasattr(args, name)}
    options["model_options"] = _parse_model_options(args.model_option)
    try:
        with removed_if_left_empty(args.out):  # a run that fails before writing leaves no empty folder
            result = train(TrainConfig(**options))
    except (TrainingInterrupted, TrainingDiverged) as stopped:
        if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 speaks
            print(f"edgebnn train: {stopped}", file=sys.stderr)
        return stopped.exit_code
    if result.final and result.rank == 0:
        print(
            f"done: best epoch {result.best_epoch} (val {_percent(result.best_val_acc)}, "
            f"test {_percent(result.best_test_acc)}) -> {result.best_checkpoint}; "
            f"curves {result.curves_path}, metrics {result.metrics_path}"
        )
    return 0


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _parse_model_options(pairs: list[str]) -> dict:
    """``["width=32", "blocks=[2,2,2]"]`` -> ``{"width": 32, "blocks": [2, 2, 2]}`` (JSON values)."""
    import json

    from trainer.errors import TrainerError

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise TrainerError(f"--model-option {pair!r}: expected KEY=VALUE, e.g. width=32")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a bare word is a string
    return options
