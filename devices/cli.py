"""``edgebnn devices``: list/show profiles, check and set up a device, start the emulated Pi.

edgebnn devices list
edgebnn devices show rpi4
edgebnn devices check rpi4 --host pi@192.168.1.50
edgebnn devices setup rpi4 --host pi@192.168.1.50
edgebnn devices emulate rpi4 up            # then: --host emulator
"""

from __future__ import annotations

import argparse
import json
from typing import Any


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
    setup.add_argument("--runtime", default="onnxruntime,litert",
                       help="comma-separated: onnxruntime, litert (default both; numpy always)")  # fmt: skip
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
