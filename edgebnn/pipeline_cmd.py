"""``edgebnn pipeline``: the whole product in one command (what ``make demo`` runs)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pipeline",
        help="train (baseline, LNS, plain fine-tuning) -> export -> convert -> verify -> bench -> report",
        description="Fashion-MNIST -> baseline BNN -> LNS fine-tuning and the plain fine-tuning control -> "
        "ONNX -> LCE .tflite and float TFLite -> verification on the test set -> latency on this host -> "
        "report.md. Stages whose outputs are current are skipped; interrupted training resumes.",
    )
    parser.add_argument("--config", help="TOML file overriding the defaults (see docs/pipeline.md)")
    parser.add_argument(
        "--full",
        action="store_true",
        help="the full recipe: width-96 layout, 28 baseline epochs, then 2 joint epochs of LNS and of plain fine-tuning",
    )
    parser.add_argument("--out", help="run folder (default runs/demo, or runs/full with --full)")
    parser.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files (default: Debian's)")
    parser.add_argument("--threads", type=int, help="torch threads for training (default: all cores)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from edgebnn.pipeline import PipelineConfig, PipelineError, run_pipeline

    config = (
        PipelineConfig.from_toml(args.config, full=args.full)
        if args.config
        else (PipelineConfig.full() if args.full else PipelineConfig())
    )
    overrides = {"out": args.out, "data_dir": args.data_dir, "threads": args.threads}
    config = config.merged(
        {key: value for key, value in overrides.items() if value is not None}, source="command line"
    )
    if config.threads is not None and config.threads < 1:
        raise PipelineError("--threads must be >= 1")
    _refuse_inputs_in_outputs(config, args.config)
    run_pipeline(config)
    return 0


# What the pipeline replaces under its run folder: the training folders are deleted and rewritten
# when their settings change, the rest are files it writes (edgebnn.pipeline, edgebnn.report).
REPLACED_FOLDERS = ("baseline", "lns", "finetune", ".stages")
WRITTEN_FILES = ("report.md", "verify.json", "bench.json", "bench.png", "training.png", "tradeoff.png")


def _refuse_inputs_in_outputs(config, config_file: str | None) -> None:
    """PipelineError when the config file or the dataset lies where the pipeline writes or deletes."""
    import os
    from pathlib import Path

    from edgebnn.pipeline import PipelineError
    from formats.errors import FormatError
    from formats.files import refuse_overwriting_inputs

    out = Path(config.out)
    inputs = {"--config": config_file, "data_dir": config.data_dir}
    for label, path in inputs.items():
        if not path:
            continue
        real = os.path.realpath(path)
        for folder in REPLACED_FOLDERS:
            replaced = os.path.realpath(out / folder)
            if real == replaced or real.startswith(replaced + os.sep):
                raise PipelineError(
                    f"{label} {path} lies inside {out / folder}, which the pipeline deletes and rewrites: "
                    "move it or choose another --out"
                )
    names = [*WRITTEN_FILES, f"{config.model}.onnx", f"{config.model}-lce.tflite"]
    names += [f"{config.model}-float.tflite", f"{config.model}.ebnn"]
    try:
        refuse_overwriting_inputs(
            {f"the pipeline's {name}": out / name for name in names}, [p for p in [config_file] if p]
        )
    except FormatError as error:
        raise PipelineError(str(error)) from None
