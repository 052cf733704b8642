"""``edgebnn export CKPT -o model.onnx``: a trained checkpoint to the ONNX deploy graph.

The graph is checked (``onnx.checker``, binary weights bit for bit, ONNX Runtime against PyTorch)
before the file is written atomically (into an existing folder); see docs/models.md.

    >>> import argparse
    >>> from trainer.cli_export import register
    >>> parser = argparse.ArgumentParser(prog="edgebnn")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["export", "runs/baseline/best.pt"])
    >>> args.checkpoint.name, args.output
    ('best.pt', None)
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``edgebnn export``. Heavy imports happen inside the handler."""
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to the ONNX deploy graph (binary weights as constants)",
        description="Export a trained checkpoint to ONNX: binary weights as +-s constants, sign as "
        "Where(GreaterOrEqual), one-padding as Pad(value=1); verified with ONNX Runtime.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint written by `edgebnn train`")
    parser.add_argument(
        "-o", "--output", type=Path, help="ONNX file to write (default: CHECKPOINT with .onnx)"
    )
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from formats.files import check_writable, refuse_overwriting_inputs
    from trainer.export import export_checkpoint

    output = args.output or args.checkpoint.with_suffix(".onnx")
    # Like convert: the output's folder must exist (never created), and no output may be an input.
    refuse_overwriting_inputs({"-o": output}, [args.checkpoint])
    check_writable(output)
    proto = export_checkpoint(args.checkpoint, output)
    binary = sum(1 for node in proto.graph.node if node.op_type == "Where")
    print(
        f"wrote {output} ({output.stat().st_size / 1024:.1f} KiB, {len(proto.graph.node)} nodes, {binary} binarizers)"
    )
    return 0
