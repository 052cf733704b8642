"""``edgebnn convert``, ``edgebnn verify`` and ``edgebnn summary``: the converter, the runtime's
verification (``runtime.verify``) and the trainer's data and checkpoints, combined.

    edgebnn convert model.onnx -o model.tflite                    # LCE, audit, quick verify
    edgebnn convert model.onnx -o model.tflite --target tflite --int8 --calibration-data fashion-mnist
    edgebnn convert model.onnx -o model.ebnn --target native       # edgebnn's native runtime
    edgebnn convert run/best.pt -o model.tflite --embed c          # + model.h, model.c, model.json
    edgebnn verify model.onnx model.tflite --data fashion-mnist --n 1000
    edgebnn verify model.onnx model.ebnn --data fashion-mnist      # in the native runtime
    edgebnn verify model.onnx model.tflite --runtime native        # an LCE .tflite run natively
    edgebnn summary model.onnx | model.tflite | model.ebnn | checkpoint.pt

Exit codes: 0 ok, 1 verification below its thresholds, 2 bad input (one-line message).
"""

from __future__ import annotations

import argparse
from pathlib import Path

QUICK_VERIFY_SAMPLES = 16
EMBED_SUFFIXES = (".h", ".c", ".json")  # what --embed c writes next to the model (converter.embed)
TARGET_CHOICES = ("lce", "tflite", "native")
VERIFY_RUNTIMES = ("auto", "lce", "litert", "native")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert``, ``verify`` and ``summary``. Heavy imports happen inside the handlers."""
    convert = subparsers.add_parser(
        "convert",
        help="convert an ONNX model or checkpoint to an LCE/TFLite flatbuffer or a native .ebnn",
        description="Convert an ONNX BNN (or an edgebnn checkpoint) to a Larq Compute Engine .tflite "
        "(or a native .ebnn, --target native) with bit-packed binary convolutions, print its audit "
        "and check it against ONNX Runtime.",
    )
    convert.add_argument("model", help="model.onnx, or an edgebnn checkpoint (.pt)")
    convert.add_argument(
        "-o", "--output", required=True, help="output .tflite or .ebnn path (written atomically)"
    )
    convert.add_argument("--target", choices=TARGET_CHOICES, default=None,
                         help="lce, tflite or native (default: native for an .ebnn output, else lce)")  # fmt: skip
    convert.add_argument("--int8", action="store_true", help="full-integer quantisation (target tflite)")
    convert.add_argument("--calibration-data", metavar="NAME", help="dataset name or a .npy of NCHW inputs")
    convert.add_argument("--calibration-samples", type=int, default=256, metavar="N", help="default: 256")
    convert.add_argument("--data-dir", help="folder of the calibration dataset")
    convert.add_argument("--input-shape", help="C,H,W (or N,C,H,W) for models with dynamic sizes")
    convert.add_argument("--embed", choices=("c",), help="also write NAME.h, NAME.c and NAME.json")
    convert.add_argument("--no-verify", action="store_true", help="skip the quick ONNX Runtime comparison")
    convert.set_defaults(func=run_convert)

    verify = subparsers.add_parser(
        "verify",
        help="compare a converted model with its ONNX source",
        description="Run the same inputs through ONNX Runtime and the converted model (a .tflite in the "
        "LCE interpreter, an .ebnn in the native runtime); exit 1 when top-1 agreement or the logit "
        "difference misses its threshold.",
    )
    verify.add_argument("onnx", help="the source model.onnx")
    verify.add_argument("tflite", metavar="model", help="the converted model.tflite or model.ebnn")
    verify.add_argument("--runtime", choices=VERIFY_RUNTIMES, default="auto",
                        help="runtime of the converted model (auto: lce for .tflite, native for .ebnn; "
                        "native translates a .tflite on load)")  # fmt: skip
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="NAME", help="real test images (fashion-mnist, cifar10, synthetic)")
    source.add_argument("--random", type=int, metavar="N", help="N random normal inputs (default: 64)")
    verify.add_argument("--data-dir", help="folder of the dataset")
    verify.add_argument("--n", type=int, default=1000, help="test images with --data (default: 1000)")
    verify.add_argument("--input-shape", help="C,H,W for models with dynamic sizes")
    verify.add_argument(
        "--min-agreement", type=float, help="top-1 agreement threshold (default 0.999; int8 0.95)"
    )
    verify.add_argument(
        "--rtol", type=float, help="mean |diff| / logit scale threshold (default 1e-3; int8 0.1)"
    )
    verify.add_argument("--seed", type=int, default=0, help="seed of --random inputs")
    verify.set_defaults(func=run_verify)

    summary = subparsers.add_parser(
        "summary",
        help="per-layer table of an ONNX model or checkpoint, or the audit of a .tflite/.ebnn",
        description="For .onnx and checkpoints: 1-bit/32-bit parameters, memory and binary/float MACs "
        "per layer. For .tflite and .ebnn: op histogram, binary conv count (LceBconv2d / BCONV2D), "
        "packed weights, compression ratio.",
    )
    summary.add_argument("file", help="model.onnx, model.tflite, model.ebnn or an edgebnn checkpoint (.pt)")
    summary.add_argument("--input-shape", help="C,H,W for ONNX models with dynamic sizes")
    summary.set_defaults(func=run_summary)


# ------------------------------------------------------------------------------------- helpers


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    from converter.errors import ConverterError

    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise ConverterError(
            f"--input-shape {text!r} is not a comma-separated list of sizes like 1,28,28"
        ) from None
    if not shape or any(size <= 0 for size in shape):
        raise ConverterError(f"--input-shape {text!r} needs positive sizes like 1,28,28")
    return shape


def file_kind(path: str) -> str:
    """'tflite', 'ebnn', 'checkpoint' or 'onnx' (``formats.kinds``); FormatError for anything else."""
    from formats.kinds import kind_of_file

    return kind_of_file(path, allowed=("onnx", "checkpoint", "tflite", "ebnn"))


def load_model(path: str):
    """An ONNX model from an .onnx file or, via trainer.export, from a checkpoint."""
    from converter.errors import ConverterError
    from converter.graph import load_onnx

    kind = file_kind(path)
    if kind in ("tflite", "ebnn"):
        raise ConverterError(f"{path} is already a converted model; give the .onnx model or checkpoint")
    if kind == "checkpoint":
        from trainer.export import export_checkpoint_proto

        return export_checkpoint_proto(path)
    return load_onnx(path)


def dataset_inputs(model, name: str, data_dir: str | None, count: int, split: str, input_shape):
    """``count`` images of a dataset normalised like the model input (NCHW float32) and their labels.

    The images and their normalisation come from ``trainer.data.normalized_split`` (with the model's
    recorded mean and std, else the dataset's own), as for the pipeline's verification.
    """
    from converter.errors import ConverterError
    from converter.graph import resolve_input_shape
    from formats.metadata import read_onnx
    from trainer.data import normalized_split

    if count <= 0:
        raise ConverterError(f"the number of samples must be positive, got {count}")
    shape = resolve_input_shape(model, input_shape)
    meta = read_onnx(model)
    images, labels = normalized_split(name, data_dir, split, count, meta.mean, meta.std)
    if list(images.shape[1:]) != list(shape[1:]):
        raise ConverterError(
            f"dataset {name} has images of shape {list(images.shape[1:])}, the model takes {shape[1:]}"
        )
    return images, labels


def calibration_inputs(model, args, input_shape):
    import numpy as np

    from converter.errors import ConverterError

    if not args.calibration_data:
        raise ConverterError("--int8 needs --calibration-data (a dataset name or a .npy file of NCHW inputs)")
    if args.calibration_data.endswith(".npy"):
        from formats.arrays import load_npy

        inputs = load_npy(args.calibration_data, "--calibration-data")  # never unpickles
        if inputs.ndim < 2 or not inputs.size:
            raise ConverterError(
                f"--calibration-data {args.calibration_data}: expected a non-empty numeric array of NCHW "
                f"inputs, got {inputs.dtype} {list(inputs.shape)}"
            )
        inputs = inputs.astype(np.float32)
    else:
        inputs, _ = dataset_inputs(
            model, args.calibration_data, args.data_dir, args.calibration_samples, "train", input_shape
        )
    if not np.isfinite(inputs).all():
        # The int8 calibrator aborts the whole process (SIGABRT) on NaN or infinity: refuse first.
        raise ConverterError(
            f"--calibration-data {args.calibration_data}: holds NaN or infinite values "
            f"({int((~np.isfinite(inputs)).sum())} of {inputs.size}); calibration needs finite inputs"
        )
    return inputs


def random_inputs(model, input_shape, count: int, seed: int):
    import numpy as np

    from converter.errors import ConverterError
    from converter.graph import resolve_input_shape

    if count <= 0:
        raise ConverterError(f"--random needs a positive number of samples, got {count}")
    shape = resolve_input_shape(model, input_shape)
    return np.random.default_rng(seed).standard_normal((count, *shape[1:]), dtype=np.float32)


def is_int8(tflite: bytes) -> bool:
    from formats.tflite import read_tflite

    return any(op.name == "QUANTIZE" for op in read_tflite(tflite).operators)


def manifest(conversion, model, report) -> dict:
    """What an application embedding the model needs to know (NAME.json)."""
    from formats.metadata import read_onnx

    meta = read_onnx(model)
    shape = conversion.input_shape
    tflite_shape = [shape[0], shape[2], shape[3], shape[1]] if len(shape) == 4 else shape
    extra = {}
    if conversion.target == "native":
        extra = {"runtime": "edgebnn native", "format": "ebnn 1.0",
                 "load": "ebnn_model_load_memory with EBNN_LOAD_IN_PLACE (runtime/native/include/edgebnn.h)"}  # fmt: skip
    return {
        "model": meta.model,
        "input": {
            "shape": tflite_shape,
            "layout": "NHWC" if len(shape) == 4 else "plain",
            "dtype": "float32",
        },
        "normalization": {"mean": list(meta.mean), "std": list(meta.std)} if meta.normalization else None,
        "labels": list(meta.labels) if meta.labels is not None else None,
        "ops": report.op_histogram,
        "runtime_required": report.runtime_required,
        "target": conversion.target,
        "int8": conversion.int8,
        **extra,
    }


# ------------------------------------------------------------------------------------- handlers


def run_convert(args: argparse.Namespace) -> int:
    from converter.audit import audit, print_audit, print_summary, summarize_info, wide_console
    from converter.conversion import convert_with_report
    from converter.embed import embed_c
    from converter.errors import ConverterError
    from formats.files import check_writable, refuse_overwriting_inputs, write_files_atomic
    from runtime.verify import DEFAULT_MIN_AGREEMENT, DEFAULT_RTOL, INT8_MIN_AGREEMENT, INT8_RTOL, verify

    output = check_writable(args.output)
    inputs = [args.model] + (
        [args.calibration_data] if (args.calibration_data or "").endswith(".npy") else []
    )
    refuse_overwriting_inputs({"-o": output}, inputs)
    if args.embed == "c":  # NAME.h, NAME.c and NAME.json are outputs too
        embedded = {
            f"--embed c ({output.stem}{ext})": output.with_name(output.stem + ext) for ext in EMBED_SUFFIXES
        }
        refuse_overwriting_inputs(embedded, inputs)
        for path in embedded.values():
            check_writable(path)
    if args.calibration_samples < 1:
        raise ConverterError(f"--calibration-samples must be >= 1, got {args.calibration_samples}")
    target = args.target or ("native" if output.suffix == ".ebnn" else "lce")
    if output.suffix == ".ebnn" and target != "native":
        raise ConverterError(f"-o {output}: an .ebnn file is written by --target native, not {target}")
    if output.suffix == ".tflite" and target == "native":
        raise ConverterError(f"-o {output}: --target native writes an .ebnn file, not a .tflite")
    args.target = target
    if args.int8 and args.target != "tflite":
        raise ConverterError(
            "--int8 needs --target tflite (LCE and native models keep float inputs and outputs)"
        )
    input_shape = parse_shape(args.input_shape)
    model = load_model(args.model)
    calibration = calibration_inputs(model, args, input_shape) if args.int8 else None
    if calibration is not None:
        from converter.graph import resolve_input_shape

        wanted = resolve_input_shape(model, input_shape)[1:]
        if list(calibration.shape[1:]) != list(wanted):  # the calibrator would abort on a mismatch
            raise ConverterError(
                f"--calibration-data {args.calibration_data}: inputs of shape {list(calibration.shape[1:])} "
                f"do not fit the model's input {list(wanted)} (NCHW without the batch)"
            )
    console = wide_console()
    with console.status("converting"):
        conversion = convert_with_report(
            model, target=args.target, int8=args.int8, calibration=calibration, input_shape=input_shape
        )
    report = audit(conversion.flatbuffer, conversion)
    print_summary(summarize_info(conversion.info), console, title=Path(args.model).name)
    print_audit(report, console, title=output.name)
    if not args.no_verify:
        if args.int8:
            inputs, thresholds = calibration[:QUICK_VERIFY_SAMPLES], (INT8_MIN_AGREEMENT, INT8_RTOL)
        else:
            inputs = random_inputs(model, input_shape, QUICK_VERIFY_SAMPLES, seed=0)
            thresholds = (DEFAULT_MIN_AGREEMENT, DEFAULT_RTOL)
        result = verify(model, conversion.flatbuffer, inputs, min_agreement=thresholds[0], rtol=thresholds[1])
        console.print(result.describe(), markup=False)
        if not result.passed and args.int8:
            console.print(
                "[bold yellow]int8 quantisation error above the thresholds[/bold yellow] (written anyway)"
            )
        elif not result.passed:
            console.print(f"[bold red]not written:[/bold red] {output} (use --no-verify to keep it anyway)")
            return 1
    files = {output: conversion.flatbuffer}
    if args.embed == "c":
        artifacts = embed_c(conversion.flatbuffer, output.stem, manifest(conversion, model, report))
        files.update({output.with_name(name): data for name, data in artifacts.items()})
    write_files_atomic(files)
    for path in files:
        console.print(f"wrote {path}")
    return 0


def read_converted(path: str) -> tuple[bytes, str]:
    """(bytes, kind) of a converted model: a .tflite or an .ebnn, checked (FormatError when corrupt)."""
    from formats.kinds import HEAD_BYTES, kind_of_bytes

    try:
        with open(path, "rb") as handle:
            kind = kind_of_bytes(handle.read(HEAD_BYTES))
    except OSError:
        kind = None  # the .tflite reader names the problem
    if kind == "ebnn":
        from formats.ebnn import read

        data = Path(path).read_bytes()
        read(data, source=path)  # truncated, bit-flipped, newer version: one clear message
        return data, kind
    from formats.tflite import load_bytes, read_tflite

    read_tflite(path)
    return load_bytes(path)[0], kind


def run_verify(args: argparse.Namespace) -> int:
    from converter.audit import wide_console
    from converter.errors import ConverterError
    from converter.graph import load_onnx
    from runtime.verify import DEFAULT_MIN_AGREEMENT, DEFAULT_RTOL, INT8_MIN_AGREEMENT, INT8_RTOL, verify

    # Every option is checked before any model is loaded or run.
    if args.random is not None and args.random < 1:
        raise ConverterError(f"--random must be >= 1 (random inputs), got {args.random}")
    if args.n < 1:
        raise ConverterError(f"--n must be >= 1 (test images), got {args.n}")
    if args.min_agreement is not None and not 0.0 <= args.min_agreement <= 1.0:
        raise ConverterError(f"--min-agreement must be in [0, 1], got {args.min_agreement}")
    if args.rtol is not None and not args.rtol > 0:  # also refuses NaN
        raise ConverterError(f"--rtol must be positive, got {args.rtol}")
    input_shape = parse_shape(args.input_shape)
    model = load_onnx(args.onnx)
    tflite, kind = read_converted(args.tflite)
    if kind == "ebnn" and args.runtime not in ("auto", "native"):
        raise ConverterError(f"{args.tflite} is a native .ebnn model: it runs in --runtime native only")
    labels = None
    if args.data:
        inputs, labels = dataset_inputs(model, args.data, args.data_dir, args.n, "test", input_shape)
    else:
        inputs = random_inputs(model, input_shape, 64 if args.random is None else args.random, args.seed)
    int8 = kind == "tflite" and is_int8(tflite)
    min_agreement = (
        args.min_agreement
        if args.min_agreement is not None
        else (INT8_MIN_AGREEMENT if int8 else DEFAULT_MIN_AGREEMENT)
    )
    rtol = args.rtol if args.rtol is not None else (INT8_RTOL if int8 else DEFAULT_RTOL)
    result = verify(model, tflite, inputs, labels, min_agreement=min_agreement, rtol=rtol,
                    candidate_runtime=args.runtime)  # fmt: skip
    wide_console().print(result.describe(), markup=False)
    return 0 if result.passed else 1


def run_summary(args: argparse.Namespace) -> int:
    from converter.audit import audit, print_audit, print_summary, summarize_onnx, wide_console

    console = wide_console()
    if file_kind(args.file) in ("tflite", "ebnn"):
        print_audit(audit(args.file), console, title=Path(args.file).name)
        return 0
    model = load_model(args.file)
    print_summary(summarize_onnx(model, parse_shape(args.input_shape)), console, title=Path(args.file).name)
    return 0
