"""``edgebnn bench`` (here or on a device) and ``edgebnn devices`` (profiles, check, setup, the emulated Pi).

    edgebnn bench bnn.tflite float.tflite cnn.onnx --threads 1,2 --lce-kernel default,indirect \\
        --json bench.json --plot bench.png
    edgebnn bench m.ebnn m-lce.tflite m-float.tflite --threads 1,2          # native vs LCE vs LiteRT
    edgebnn bench m-lce.tflite --runtime native --native-kernel avx2,avx512 --profile
    edgebnn bench bnn.tflite model.onnx --device rpi4 --host pi@192.168.1.50 --threads 1,4
    edgebnn devices list
    edgebnn devices show rpi4
    edgebnn devices check rpi4 --host pi@192.168.1.50
    edgebnn devices setup rpi4 --host pi@192.168.1.50
    edgebnn devices emulate rpi4 up            # then: --host emulator

Both drive this stage's API (``devices.bench.benchmark``, the one benchmark path; a host benchmark
is a benchmark on the local target). Library errors name their parameters; ``edgebnn.cli`` prints
the flags instead (``PARAMETER_FLAGS`` where the two differ).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

RUNTIME_CHOICES = ("auto", "lce", "litert", "onnxruntime", "native")
KERNEL_CHOICES = ("default", "indirect", "reference")
NATIVE_KERNEL_CHOICES = ("auto", "scalar", "avx2", "avx512", "neon")
PARAMETER_FLAGS = {"timeout_s": "--timeout"}


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


def _native_kernel_list(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [v for v in values if v not in NATIVE_KERNEL_CHOICES]
    if not values or bad:
        raise argparse.ArgumentTypeError(
            f"native kernels are {', '.join(NATIVE_KERNEL_CHOICES)} (comma-separated), got {text!r}"
        )
    return values


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="device profile (see `edgebnn devices list`)")
    parser.add_argument("--host", required=True,
                        help="USER@ADDRESS (SSH), adb:SERIAL, local, or emulator[:NAME[-armhf]] (the emulated Pi)")  # fmt: skip
    parser.add_argument("--port", type=int, default=None, help="SSH port (default 22)")
    parser.add_argument("--identity", default=None, metavar="KEY", help="SSH private key file")
    parser.add_argument(
        "--known-hosts", default=None, metavar="FILE", help="known_hosts file to check the host key against"
    )
    parser.add_argument("--accept-new-host-key", action="store_true",
                        help="trust the device's host key on first connection (a changed key is still refused)")  # fmt: skip
    parser.add_argument(
        "--device-file", default=None, metavar="FILE", help="read the profile from this TOML file"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands. Heavy imports belong inside the handlers."""
    _register_bench(subparsers)
    _register_devices(subparsers)


def _register_bench(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure latency, memory and size of .tflite/.onnx/.ebnn models",
        description="Measure each (model, runtime, threads) configuration in a fresh process: load time, "
        "first inference, warm latency (median, p90, p99, spread), peak memory and file size. "
        "Several models are measured interleaved in rounds and compared with the first one.",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".tflite, .onnx or .ebnn files")
    parser.add_argument("--runtime", default="auto", choices=RUNTIME_CHOICES,
                        help="auto: lce for models with LCE ops, litert for other .tflite, onnxruntime for "
                        ".onnx, native for .ebnn; native also runs .tflite files (translated on load)")  # fmt: skip
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
    parser.add_argument("--native-kernel", type=_native_kernel_list, default=("auto",),
                        help="native runtime kernel set(s): auto (EDGEBNN_NATIVE_KERNEL, else the best this "
                        "CPU has), scalar, avx2, avx512, neon (aarch64); e.g. avx2,avx512")  # fmt: skip
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
    parser.add_argument("--count-instructions", action="store_true",
                        help="exact guest instructions per inference on the emulated Pi (--host emulator, "
                        "--threads 1; QEMU plugin, see docs/devices.md): the record's `instructions`")  # fmt: skip
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
    parser.set_defaults(func=run_bench, parameter_flags=PARAMETER_FLAGS)


def _register_devices(subparsers: argparse._SubParsersAction) -> None:
    devices = subparsers.add_parser(
        "devices", help="device profiles, remote check/setup, emulated Raspberry Pi",
        description="Target devices: profiles (TOML), SSH/adb access, runtime setup without internet on the "
        "device, and an emulated Raspberry Pi 4 (qemu-user + a real OpenSSH server).",
    )  # fmt: skip
    commands = devices.add_subparsers(dest="devices_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="the known device profiles")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_list)

    show = commands.add_parser("show", help="one profile in full")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--device-file", default=None, metavar="FILE")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)

    check = commands.add_parser("check", help="connect and report what the device is and what it lacks")
    _connection_options(check)
    check.set_defaults(func=run_check)

    setup = commands.add_parser(
        "setup", help="install the runtimes on the device (wheels fetched on this host)"
    )
    _connection_options(setup)
    setup.add_argument("--runtime", default="onnxruntime,litert,native",
                       help="comma-separated: onnxruntime, litert, native (default all; numpy always; native: "
                       "the library cross-compiled on this host, shipped with each benchmark)")  # fmt: skip
    place = setup.add_mutually_exclusive_group()
    place.add_argument("--venv", default=None, metavar="DIR", help="remote venv (default ~/.edgebnn/venv)")
    place.add_argument(
        "--target", default=None, metavar="DIR", help="pip install --target DIR instead of a venv"
    )
    setup.add_argument(
        "--force", action="store_true", help="reinstall even when the versions are already there"
    )
    setup.set_defaults(func=run_setup)

    emulate = commands.add_parser("emulate", help="an emulated Raspberry Pi: up, down or status")
    emulate.add_argument("name", metavar="NAME", help="device profile to emulate (rpi4)")
    emulate.add_argument("action", choices=("up", "down", "status"))
    emulate.add_argument(
        "--arch", default="arm64", choices=("arm64", "armhf"), help="64-bit (default) or 32-bit OS"
    )
    emulate.add_argument(
        "--port", type=int, default=None, help="loopback port for its sshd (default: a free one)"
    )
    emulate.add_argument("--json", action="store_true")
    emulate.set_defaults(func=run_emulate)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def run_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from devices.profiles import load_profile, profile_names

    profiles = [load_profile(name) for name in profile_names()]
    if args.json:
        _print_json([profile.as_dict() for profile in profiles])
        return 0
    table = Table(title="edgebnn devices")
    for column in ("name", "connection", "arch", "bits", "cpu", "cores", "clock", "memory", "LCE runs with"):
        table.add_column(column)
    for p in profiles:
        table.add_row(p.name, p.connection, p.architecture, str(p.os_bits), p.cpu, str(p.cores),
                      f"{p.clock_mhz} MHz", f"{p.memory_mb} MB", p.lce_runner)  # fmt: skip
    Console().print(table)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from devices.profiles import load_profile

    profile = load_profile(args.name, args.device_file)
    if args.json:
        _print_json(profile.as_dict())
        return 0
    table = Table(title=f"device {profile.name}", show_header=False)
    for key, value in profile.as_dict().items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    Console().print(table)
    return 0


def _open(args: argparse.Namespace):
    from devices.profiles import load_profile
    from devices.target import open_target

    profile = load_profile(args.name, args.device_file)
    target = open_target(args.host, port=args.port, identity=args.identity, known_hosts=args.known_hosts,
                         accept_new_host_key=args.accept_new_host_key)  # fmt: skip
    return profile, target


def run_check(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from devices.check import find_traps, probe

    profile, target = _open(args)
    with target:
        facts = probe(target.transport)
    traps = find_traps(facts, profile)
    report = {"device": profile.name, "host": target.description, "emulated": target.emulated,
              "facts": {k: v for k, v in facts.items() if k != "pythons"}, "warnings": traps}  # fmt: skip
    if args.json:
        _print_json(report)
        return 0
    console = Console()
    title = f"{profile.name} at {target.description}" + (
        " [EMULATED: times are not latencies]" if target.emulated else ""
    )
    table = Table(title=title, show_header=False)
    rows = [
        ("architecture", facts["architecture"]), ("OS bits", facts["os_bits"]), ("cores", facts["cores"]),
        ("model", facts["model"]), ("kernel", facts["kernel"]), ("glibc", facts["glibc"]),
        ("python", f"{facts['python']} ({facts['python_path']})" if facts["python"] else None),
        ("memory", f"{facts['memory_mb']} MB" if facts["memory_mb"] else None),
        ("free in temp", f"{facts['tmp_free_mb']} MB" if facts["tmp_free_mb"] is not None else None),
    ]  # fmt: skip
    rows += [(f"runtime {name}", version or "-") for name, version in facts["runtimes"].items()]
    for key, value in rows:
        table.add_row(key, "?" if value is None else str(value))
    console.print(table)
    for trap in traps:
        console.print(f"[yellow]warning:[/yellow] {trap}", highlight=False)
    return 0


def run_setup(args: argparse.Namespace) -> int:
    from rich.console import Console

    from devices.setup import setup_device

    console = Console(stderr=True)
    runtimes = [name.strip() for name in args.runtime.split(",") if name.strip()]
    _, target = _open(args)
    with target:
        result = setup_device(target.transport, runtimes=runtimes, target=args.target, venv=args.venv,
                              force=args.force, log=lambda message: console.print(message, highlight=False))  # fmt: skip
    if args.json:
        _print_json({k: v for k, v in result.items() if k != "facts"})
        return 0
    where = result["target"] or result["venv"]
    installed = ", ".join(f"{name} {version}" for name, version in result["runtimes"].items() if version)
    print(f"installed into {where} on {target.description}: {installed}")
    if result.get("native_library"):
        print(f"native runtime: {result['native_library']} (built here, shipped with each benchmark)")
    return 0


def run_emulate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from devices import emulator

    machine = emulator.Emulator(args.name, args.arch)
    console = Console(stderr=True)
    if args.action == "up":
        state = emulator.up(
            machine, port=args.port, log=lambda message: console.print(message, highlight=False)
        )
        if args.json:
            _print_json(state)
            return 0
        spec = (
            "emulator" if (args.name, args.arch) == ("rpi4", "arm64") else f"emulator:{args.name}-{args.arch}"
        )
        print(
            f"emulated {args.name} ({args.arch}, QEMU_CPU={state['qemu_cpu']}) is up: EMULATED, times are not latencies"
        )
        print(f"  edgebnn devices check {args.name} --host {spec}")
        print(f"  ssh -p {state['port']} -i {state['identity']} -o UserKnownHostsFile={state['known_hosts']} "
              f"-o BatchMode=yes {state['host']}")  # fmt: skip
        print(f"  --host {state['host']} --port {state['port']} --identity {state['identity']} "
              f"--known-hosts {state['known_hosts']}")  # fmt: skip
        return 0
    if args.action == "down":
        stopped = emulator.down(machine)
        print(f"emulated {args.name} ({args.arch}): " + ("stopped" if stopped else "was not running"))
        return 0
    info = emulator.status(machine)
    if args.json:
        _print_json(info)
    else:
        state = "running" if info["running"] else ("built, stopped" if info["built"] else "not built")
        extra = f" at {info['host']} port {info['port']}" if info["running"] else ""
        print(f"emulated {args.name} ({args.arch}): {state}{extra}")
    return 0


# ---- edgebnn bench ------------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from devices.bench import benchmark
    from formats.files import check_writable, refuse_overwriting_inputs
    from runtime.errors import BenchError
    from runtime.record import config_label

    if args.device == "host" and (args.host or args.lce_benchmark_binary):
        raise BenchError("--host and --lce-benchmark-binary are for a remote device: add --device NAME")
    # Outputs are checked before any measurement: never an input, never each other, folder exists.
    inputs = [
        *args.models,
        args.input,
        args.identity,
        args.known_hosts,
        args.lce_benchmark_binary,
    ]
    refuse_overwriting_inputs({"--json": args.json, "--plot": args.plot}, [p for p in inputs if p])
    if args.json and args.plot:
        refuse_overwriting_inputs({"--plot": args.plot}, [args.json])
    for output in (args.json, args.plot):
        if output:
            check_writable(output)
    data: Any = "random"
    if args.input:
        from formats.arrays import load_npy

        data = load_npy(args.input, "--input")  # allow_pickle=False: a pickled .npy could run code
    console = Console(stderr=True)
    with console.status("benchmarking...") as status:
        report = benchmark(
            args.models, device=args.device, host=args.host, port=args.port, identity=args.identity,
            known_hosts=args.known_hosts, accept_new_host_key=args.accept_new_host_key,
            lce_benchmark_binary=args.lce_benchmark_binary, runtime=args.runtime, threads=args.threads,
            runs=args.runs, warmup=args.warmup, lce_kernel=args.lce_kernel, native_kernel=args.native_kernel,
            xnnpack=args.xnnpack, input=data,
            timeout_s=args.timeout, rounds=args.rounds, profile=args.profile,
            count_instructions=args.count_instructions,
            on_record=lambda record: status.update(f"measured {config_label(record)}: {record['status']}"),
            progress=lambda message: status.update(message),
        )  # fmt: skip

    report.print()
    for record in report.results:  # exact counts, not latencies (devices.counting)
        if record.get("instructions") is not None:
            print(f"{config_label(record)}: {record['instructions']:,} guest instructions per inference "
                  "(emulated Cortex-A72)")  # fmt: skip
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

    from runtime.record import config_label

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
