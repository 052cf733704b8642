"""``edgebnn estimate``: latency of a converted BNN on a device you don't have (cost model).

    edgebnn estimate quicknet --device rpi4 --threads 4
    edgebnn estimate model.tflite --device pixel1 --json estimate.json
    edgebnn estimate model.onnx --device rpi5        # no fitted rates: theoretical bound, marked

A zoo name is built from random weights (latency does not depend on them), exported to ONNX,
converted by edgebnn's converter and cached under ``~/.cache/edgebnn/estimate``
(``edgebnn.zoo_graph``); an ``.onnx`` is converted first. The cost model is ``runtime.estimate``;
its rates live in the device profiles.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

# A device profile without a [cost_model.peak] table still gets a bound from its clock and cores:
# 128-bit NEON-class SIMD (see docs/estimate.md).
GENERIC_BINARY_MACS_PER_CYCLE = 128
GENERIC_FLOAT_MACS_PER_CYCLE = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the subcommands of this module. Heavy imports belong inside the handlers."""
    parser = subparsers.add_parser(
        "estimate",
        help="estimate the latency of a BNN on a device from a per-op cost model",
        description="Estimate the latency of a converted model on a device profile (no device needed): "
        "each op's binary MACs, float MACs and bytes, times the device's rates fitted to LCE's "
        "published latencies.",
    )
    parser.add_argument("model", help="a .tflite file, an .onnx file, or a zoo model name (e.g. quicknet)")
    parser.add_argument("--device", default="rpi4", help="device profile name (default: rpi4)")
    parser.add_argument("--device-file", help="a device profile TOML file instead of a named one")
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default: 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the estimate as JSON (total_ms, per-op)")
    parser.add_argument(
        "--top", type=int, default=15, help="ops shown in the breakdown, slowest first (0: all)"
    )
    parser.add_argument("--input-shape", help="C,H,W (or N,C,H,W) for an .onnx model with dynamic sizes")
    parser.add_argument("--counts", metavar="BENCH.json",
                        help="a report of `edgebnn bench ... --host emulator --count-instructions --json`: its "
                        "exact instruction counts are shown beside the estimate")  # fmt: skip
    parser.set_defaults(func=run)


def read_counts(path: str) -> list[dict[str, Any]]:
    """The counted records of an edgebnn-bench/1 report: [{label, instructions, engine, runtime}] (BenchError)."""
    from runtime.errors import BenchError
    from runtime.record import config_label

    try:
        report = json.loads(Path(path).read_text())
        records = report["results"] if isinstance(report, dict) else None
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as error:
        raise BenchError(f"--counts {path}: not an edgebnn bench report ({error})") from None
    if not isinstance(records, list):
        raise BenchError(f"--counts {path}: not an edgebnn bench report (no results list)")
    found = []
    for record in records:
        count = record.get("instructions") if isinstance(record, dict) else None
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            details = record.get("instruction_counts") or {}
            found.append({"label": config_label(record), "runtime": record.get("runtime"),
                          "instructions": count, "engine_instructions": details.get("engine_instructions")})  # fmt: skip
    if not found:
        raise BenchError(f"--counts {path}: no instruction counts in it (bench with --count-instructions)")
    return found


# ---- inputs --------------------------------------------------------------------------------------


def load_cost_model(device: str, device_file: str | None = None):
    """The device's CostModel; without fitted rates, the theoretical one (CostModel.calibrated False)."""
    from devices.profiles import load_profile
    from runtime.errors import BenchError
    from runtime.estimate import CostModel, PeakRates

    profile = load_profile(device, device_file)
    table = profile.extra.get("cost_model", {})
    if not isinstance(table, dict):
        raise BenchError(f"device {profile.name!r}: [cost_model] must be a table")
    fallback = None
    if "peak" not in table and profile.clock_mhz > 0 and profile.cores > 0:
        fallback = PeakRates(
            core_clock_hz=(profile.clock_mhz * 1e6,) * profile.cores,
            binary_macs_per_cycle=GENERIC_BINARY_MACS_PER_CYCLE,
            float_macs_per_cycle=GENERIC_FLOAT_MACS_PER_CYCLE,
            memory_bytes_per_s=math.inf,  # unknown: the bound counts compute only
        )
    if "peak" not in table and fallback is None:
        from devices.profiles import profile_names

        calibrated = [name for name in profile_names() if "binary_macs_per_s" in _cost_table(name)]
        raise BenchError(
            f"device {profile.name!r} has no [cost_model] rates, no [cost_model.peak] and no clock_mhz/cores "
            f"to bound them; calibrated devices: {', '.join(calibrated)}"
        )
    return CostModel.from_table(table, device=profile.name, fallback_peak=fallback)


def _cost_table(name: str) -> dict:
    from devices.profiles import load_profile

    table = load_profile(name).extra.get("cost_model", {})
    return table if isinstance(table, dict) else {}


def model_flatbuffer(model: str, input_shape: tuple[int, ...] | None = None) -> bytes:
    """The .tflite bytes of MODEL: a file as is, an .onnx converted, a zoo name built (cached)."""
    from runtime.errors import BenchError

    path = Path(model)
    if path.suffix.lower() in (".tflite", ".onnx"):
        if not path.is_file():
            raise BenchError(f"model file not found: {path}")
        if path.suffix.lower() == ".tflite":
            if input_shape is not None:
                raise BenchError(f"--input-shape is for .onnx models; {path} has its shapes fixed")
            return path.read_bytes()
        from converter.conversion import convert

        return convert(str(path), input_shape=input_shape)
    if input_shape is not None:
        raise BenchError("--input-shape is for .onnx models; a zoo model has its own input shape")
    from edgebnn.zoo_graph import zoo_graph
    from trainer.zoo import MODELS

    if model not in MODELS:
        raise BenchError(
            f"unknown model {model!r}: give a .tflite or .onnx file or a zoo name ({', '.join(MODELS)})"
        )
    return zoo_graph(model)


# ---- output --------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.3g}"


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}"


def published_figure(model: str, device: str, threads: int):
    """LCE's published latency for this zoo model, device and thread count, if there is one."""
    from runtime.cost_calibration import PUBLISHED

    return next((p for p in PUBLISHED if (p.model, p.device, p.threads) == (model, device, threads)), None)


def print_estimate(result, model_label: str, top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)  # wide enough when piped
    title = f"{model_label} on {result.device}, {result.threads} thread{'s' if result.threads > 1 else ''}"
    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("#", "right"),
        ("op", "left"),
        ("shape", "left"),
        ("binary MACs", "right"),
        ("float MACs", "right"),
        ("bytes", "right"),
        ("ms", "right"),
        ("share", "right"),
    ):
        table.add_column(column, justify=justify)
    indexed = list(enumerate(result.ops))
    shown = sorted(indexed, key=lambda item: item[1].ms, reverse=True)
    if top > 0:
        shown = shown[:top]
    for index, op in sorted(shown, key=lambda item: item[0]):
        share = op.ms / result.total_ms if result.total_ms else 0.0
        table.add_row(
            str(index),
            op.work.op + (" [red](unknown)[/]" if op.work.kind == "unknown" else ""),
            op.work.detail,
            _si(op.work.binary_macs, "") if op.work.binary_macs else "",
            _si(op.work.float_macs, "") if op.work.float_macs else "",
            _si(op.work.bytes_moved, "B") if op.work.bytes_moved else "",
            f"{op.ms:.3f}",
            f"{share:.1%}",
        )
    if top > 0 and len(result.ops) > top:
        rest = sum(op.ms for _, op in indexed) - sum(op.ms for _, op in shown)
        table.add_row("", f"... {len(result.ops) - top} more ops", "", "", "", "", f"{rest:.3f}", "")
    console.print(table)
    totals = result.totals
    console.print(
        f"work: {totals.binary_macs / 1e9:.3f} G binary MACs (input channels padded to multiples of 32), "
        f"{totals.float_macs / 1e6:.1f} M float MACs, {totals.bytes_moved / 1e6:.1f} MB moved, {totals.ops} ops"
    )
    by_type: dict[str, float] = {}
    for op in result.ops:
        by_type[op.work.op] = by_type.get(op.work.op, 0.0) + op.ms
    if result.total_ms:
        ranked = sorted(by_type.items(), key=lambda item: item[1], reverse=True)
        console.print(
            "by op type: " + ", ".join(f"{name} {ms / result.total_ms:.0%}" for name, ms in ranked if ms)
        )
    if result.calibrated:
        console.print(
            f"[bold]estimate: {_ms(result.total_ms)} ms[/] (band {_ms(result.low_ms)}-{_ms(result.high_ms)} ms, "
            f"the fit's leave-one-model-out error)"
        )
    else:
        console.print(
            f"[bold yellow]no calibrated rates for {result.device}: theoretical bound only, "
            f">= {_ms(result.total_ms)} ms[/] (every core at peak; real latency is several times higher)"
        )
    console.print(
        f"theoretical limit: {_ms(result.bound_ms)} ms at the device's peak; "
        f"the estimate implies {result.peak_fraction:.0%} of it"
    )
    published = published_figure(model_label, result.device, result.threads)
    if published is not None:
        console.print(
            f"published by LCE ({published.model}, {published.device}, {published.threads} thr): {published.ms:.1f} ms; "
            f"estimate {result.total_ms / published.ms - 1:+.0%} (in-sample: this figure is part of the fit)"
        )
    if result.unknown_ops:
        console.print(f"[yellow]not in the estimate (no cost model for): {', '.join(result.unknown_ops)}[/]")


def estimate_document(result, model_label: str) -> dict[str, Any]:
    document = {"schema": "edgebnn-estimate/1", "model": model_label, **result.as_dict()}
    if math.isinf(document["high_ms"]):
        document["high_ms"] = None  # open-ended: the uncalibrated estimate is a lower bound
    return document


def run(args: argparse.Namespace) -> int:
    from edgebnn.convert_cmds import parse_shape
    from formats.files import check_writable, refuse_overwriting_inputs, write_atomic
    from runtime.errors import BenchError
    from runtime.estimate import estimate, read_tflite_ops

    # Every option and the output first, before any conversion work.
    if args.threads < 1:
        raise BenchError(f"--threads must be at least 1, not {args.threads}")
    if args.top < 0:
        raise BenchError(f"--top must be >= 0 (0: all ops), got {args.top}")
    input_shape = parse_shape(args.input_shape)
    if args.json:
        inputs = [p for p in (args.model, args.device_file, args.counts) if p and Path(p).exists()]
        refuse_overwriting_inputs({"--json": args.json}, inputs)
        check_writable(args.json)
    counts = read_counts(args.counts) if args.counts else None
    cost_model = load_cost_model(args.device, args.device_file)  # device errors first: they are cheap
    label = (
        args.model if Path(args.model).suffix.lower() in (".tflite", ".onnx") else f"zoo model {args.model}"
    )
    ops = read_tflite_ops(model_flatbuffer(args.model, input_shape), source=label)
    result = estimate(ops, cost_model, args.threads)
    print_estimate(result, args.model, args.top)
    for found in counts or []:  # measured, exact, on the emulated core: a count, not a latency
        print(f"counted on the emulated Cortex-A72: {found['label']}: {found['instructions']:,} instructions "
              f"per inference ({found['instructions'] / 1e6:.1f} M)")  # fmt: skip
    if args.json:
        document = estimate_document(result, args.model)
        if counts:
            document["instructions"] = counts
        write_atomic(args.json, (json.dumps(document, indent=2) + "\n").encode())
    return 0
