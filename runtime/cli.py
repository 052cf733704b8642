"""``edgebnn bench``: latency, memory and size of .tflite / .onnx models, here or on a device.

    edgebnn bench bnn.tflite float.tflite cnn.onnx --threads 1,2 --lce-kernel default,indirect \\
        --json bench.json --plot bench.png
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from runtime.errors import BenchError

RUNTIME_CHOICES = ("auto", "lce", "litert", "onnxruntime")
KERNEL_CHOICES = ("default", "indirect", "reference")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 1,2,4, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return values


def _kernel_list(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [v for v in values if v not in KERNEL_CHOICES]
    if not values or bad:
        raise argparse.ArgumentTypeError(
            f"LCE kernels are {', '.join(KERNEL_CHOICES)} (comma-separated), got {text!r}"
        )
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands. Heavy imports belong inside the handlers."""
    parser = subparsers.add_parser(
        "bench",
        help="measure latency, memory and size of .tflite/.onnx models",
        description="Measure each (model, runtime, threads) configuration in a fresh process: load time, "
        "first inference, warm latency (median, p90, p99, spread), peak memory and file size. "
        "Several models are measured interleaved in rounds and compared with the first one.",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".tflite or .onnx files")
    parser.add_argument("--runtime", default="auto", choices=RUNTIME_CHOICES,
                        help="auto: lce for models with LCE ops, litert for other .tflite, onnxruntime for .onnx")  # fmt: skip
    parser.add_argument(
        "--threads", type=_int_list, default=(1,), help="thread counts, e.g. 1,2,4 (default 1)"
    )
    parser.add_argument(
        "--runs", type=int, default=100, help="timed invocations per configuration (default 100)"
    )
    parser.add_argument(
        "--warmup", type=int, default=10, help="untimed invocations per process first (default 10)"
    )
    parser.add_argument("--rounds", type=int, default=None,
                        help="fresh processes per configuration, interleaved (default 1 for one configuration, else 3)")  # fmt: skip
    parser.add_argument("--lce-kernel", type=_kernel_list, default=("default",),
                        help="LCE binary conv kernel(s): default, indirect, reference; e.g. default,indirect")  # fmt: skip
    parser.add_argument("--xnnpack", action=argparse.BooleanOptionalAction, default=True,
                        help="TFLite's XNNPACK delegate for lce and litert (default on)")  # fmt: skip
    parser.add_argument(
        "--input", default=None, metavar="NPY", help="input array (.npy); default seeded random"
    )
    parser.add_argument("--timeout", type=float, default=300.0, metavar="S",
                        help="seconds one worker may take before it is killed (default 300)")  # fmt: skip
    parser.add_argument("--json", default=None, metavar="OUT.json", help="write the report (edgebnn-bench/1)")
    parser.add_argument("--plot", default=None, metavar="OUT.png", help="write latency (and accuracy) charts")
    parser.add_argument("--profile", action="store_true", help="per-op profile where the runtime has one")
    remote = parser.add_argument_group("remote device (devices stage, see docs/devices.md)")
    remote.add_argument(
        "--device", default="host", metavar="NAME", help="device profile; 'host' = this machine"
    )
    remote.add_argument("--host", default=None, metavar="USER@ADDR",
                        help="where the device is: USER@ADDR (SSH), adb:SERIAL, local or emulator")  # fmt: skip
    remote.add_argument("--port", type=int, default=None, help="SSH port of the device")
    remote.add_argument("--identity", default=None, metavar="KEY", help="SSH private key file")
    remote.add_argument("--known-hosts", default=None, metavar="FILE", help="SSH known_hosts file")
    remote.add_argument(
        "--accept-new-host-key", action="store_true", help="trust a device's SSH key on first use"
    )
    remote.add_argument("--lce-benchmark-binary", default=None, metavar="PATH",
                        help="LCE's lce_benchmark_model for the device's architecture (LCE models on a device)")  # fmt: skip
    parser.set_defaults(func=run)


def _remote_report(args: argparse.Namespace, options: dict[str, Any]):
    """Dispatch to the devices stage, which returns records (or a report) of the same schema."""
    from runtime.report import BenchReport
    from runtime.worker import system_facts

    try:
        from devices.remote import bench_remote
    except ImportError:
        raise BenchError(
            f"--device {args.device}: remote benchmarking needs devices.remote.bench_remote, "
            "which this installation does not have"
        ) from None
    result = bench_remote(
        args.models, device=args.device, host=args.host, port=args.port, identity=args.identity,
        known_hosts=args.known_hosts, accept_new_host_key=args.accept_new_host_key,
        lce_benchmark_binary=args.lce_benchmark_binary, **options,
    )  # fmt: skip
    if isinstance(result, BenchReport):
        return result
    if isinstance(result, dict):
        return BenchReport(
            result["system"], result["results"], result.get("settings", {}), result.get("warnings", [])
        )
    records = list(result)
    return BenchReport(remote_system(records, args.device, system_facts()), records)


def remote_system(records: list[dict[str, Any]], device: str, host_facts: dict[str, Any]) -> dict[str, Any]:
    """The report's ``system`` from the ``device_facts`` that devices.remote adds to its records."""
    facts = next((r["device_facts"] for r in records if r.get("device_facts")), None)
    emulated = any(r.get("emulated") for r in records)
    if not facts:
        note = "facts of the machine that ran edgebnn; the device reported none"
        return host_facts | {"device": device, "emulated": emulated, "note": note}
    return {
        "cpu_model": facts.get("model") or facts.get("cpu_model") or "unknown",
        "architecture": facts.get("architecture") or "unknown",
        "os": f"Linux {facts.get('kernel') or '?'} (glibc {facts.get('glibc') or '?'})",
        "os_bits": facts.get("os_bits"),
        "kernel_release": facts.get("kernel") or "unknown",
        "cores": facts.get("cores"),
        "python": facts.get("python") or "unknown",
        "engines": {r["runtime"]: r["runtime_version"] for r in records if r.get("runtime_version")},
        "date": host_facts["date"],
        "device": device,
        "emulated": emulated,
        "host": facts.get("host"),
    }


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from runtime.bench import benchmark, collect_warnings

    if args.device == "host" and (args.host or args.lce_benchmark_binary):
        raise BenchError("--host and --lce-benchmark-binary are for a remote device: add --device NAME")
    if args.runs < 1:
        raise BenchError(f"--runs must be >= 1, got {args.runs}")
    if args.warmup < 0:
        raise BenchError(f"--warmup must be >= 0, got {args.warmup}")
    data: Any = "random"
    if args.input:
        try:
            data = np.load(args.input)
        except (OSError, ValueError) as error:
            raise BenchError(f"--input {args.input}: cannot read a .npy array ({error})") from None
    options = {
        "runtime": args.runtime, "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
        "lce_kernel": args.lce_kernel, "xnnpack": args.xnnpack, "input": data, "timeout_s": args.timeout,
        "rounds": args.rounds, "profile": args.profile,
    }  # fmt: skip

    from rich.console import Console

    console = Console(stderr=True)
    if args.device != "host":
        report = _remote_report(args, options)
        if not report.warnings:
            report.warnings = collect_warnings(report.results)
    else:
        with console.status("benchmarking...") as status:

            def progress(record: dict[str, Any]) -> None:
                from runtime.report import config_label

                status.update(f"measured {config_label(record)}: {record['status']}")

            report = benchmark(args.models, on_record=progress, **options)

    report.print()
    if args.profile:
        _print_profiles(report, Console(width=None if sys.stdout.isatty() else 170))
    if args.json:
        report.write_json(args.json)
        console.print(f"wrote {args.json}", highlight=False)
    if args.plot:
        report.plot(args.plot)
        console.print(f"wrote {args.plot}", highlight=False)
    return 0 if report.ok else 1


def _print_profiles(report, console) -> None:
    from rich.table import Table

    from runtime.report import config_label

    for record in report.results:
        if record["status"] != "ok":
            continue
        if not record.get("profile"):
            console.print(
                f"{config_label(record)}: no per-op profile ({record['runtime']} does not expose one)"
            )
            continue
        table = Table(title=f"per-op profile: {config_label(record)}", title_justify="left")
        for name in ("node", "op", "mean us", "share"):
            table.add_column(name, justify="left" if name in ("node", "op") else "right")
        total = sum(entry["total_us"] for entry in record["profile"]) or 1
        for entry in record["profile"][:15]:
            table.add_row(
                entry["node"],
                entry["op"],
                f"{entry['mean_us']:.1f}",
                f"{100 * entry['total_us'] / total:.1f}%",
            )
        console.print(table)
