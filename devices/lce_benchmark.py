"""LCE's ``lce_benchmark_model`` on a device: its command line, its output, and the binary itself.

There is no larq-compute-engine wheel for ARM, so on a device LCE models run with this tool (TFLite's
``benchmark_model`` plus LCE's ops; a release asset of larq/compute-engine). Everything here is
pure: ``devices/bench.py`` runs the command and hands the output back.

    >>> from devices.lce_benchmark import benchmark_argv, parse_output
    >>> benchmark_argv("./lce_benchmark_model", "m.tflite", threads=4, runs=50, warmup=5, xnnpack=True,
    ...                kernel="indirect")[1:3]
    ['--graph=m.tflite', '--num_threads=4']
    >>> parse_output("Inference timings in us: Init: 27412, First inference: 22971, "
    ...              "Warmup (avg): 21026.4, Inference (avg): 20810.9")["mean_ms"]
    20.8109
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from devices.errors import DevicesError

ELF_MACHINES = {0x03: "x86", 0x28: "arm", 0x3E: "x86_64", 0xB7: "aarch64", 0xF3: "riscv"}
DEVICE_MACHINE = {"aarch64": "aarch64", "arm64": "aarch64", "armv7l": "arm", "armv8l": "arm", "armv6l": "arm",
                  "x86_64": "x86_64", "i686": "x86", "riscv64": "riscv"}  # fmt: skip

# Runs the tool as a child of a small Python so that its peak RSS can be read (RUSAGE_CHILDREN, KiB).
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print('edgebnn_peak_rss_kb=%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)\n"
    "sys.exit(code)\n"
)

_TIMINGS_RE = re.compile(
    r"Inference timings in us:\s*Init:\s*([\d.]+),\s*First inference:\s*([\d.]+),\s*"
    r"Warmup \(avg\):\s*([\d.e+-]+),\s*Inference \(avg\):\s*([\d.e+-]+)"
)
_FOOTPRINT_RE = re.compile(
    r"Memory footprint delta from the start of the tool \(MB\):\s*init=([\d.]+)\s+overall=([\d.]+)"
)
_PEAK_RE = re.compile(r"Peak memory footprint \(MB\):\s*init=([\d.]+)\s+overall=([\d.]+)")
_COUNT_RE = re.compile(
    r"count=(\d+)\s+first=(\d+)\s+curr=(\d+)\s+min=(\d+)\s+max=(\d+)\s+avg=([\d.e+-]+)\s+std=(\d+)"
)
_RSS_RE = re.compile(r"edgebnn_peak_rss_kb=(\d+)")
_VERSION_RE = re.compile(r"(?:LCE|lce)[^\n]*?version[:\s]+([\w.\-]+)")
_PROFILE_ROW_RE = re.compile(
    r"^\s*(\S+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+%\s+[\d.]+%\s+[\d.]+\s+(\d+)\s+\[(.*)\]\s*$"
)


def benchmark_argv(binary: str, graph: str, *, threads: int, runs: int, warmup: int, xnnpack: bool,
                   kernel: str, input_file: tuple[str, str] | None = None, profile: bool = False) -> list[str]:  # fmt: skip
    """The tool's argv. ``input_file``: (input tensor name, raw little-endian file) to feed instead of noise."""
    argv = [binary, f"--graph={graph}", f"--num_threads={threads}", f"--num_runs={runs}",
            f"--warmup_runs={warmup}", f"--use_xnnpack={str(xnnpack).lower()}", "--report_peak_memory_footprint=true"]  # fmt: skip
    if kernel == "indirect":
        argv.append("--use_indirect_bgemm=true")
    elif kernel == "reference":
        argv.append("--use_reference_bconv=true")
    if input_file is not None:
        name, path = input_file
        argv.append(f"--input_layer_value_files={name}:{path}")
    if profile:
        argv.append("--enable_op_profiling=true")
    return argv


def parse_output(text: str) -> dict[str, Any]:
    """Timings (ms) and memory (MB) from ``lce_benchmark_model`` / TFLite ``benchmark_model`` output (pure).

    Raises DevicesError when the timing line is missing (the tool failed or is not a benchmark tool).
    """
    timings = _TIMINGS_RE.search(text)
    if not timings:
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        raise DevicesError(
            f"lce_benchmark_model printed no timings: {(errors or lines or ['no output'])[0][:200]}"
        )
    init_us, first_us, warmup_us, mean_us = (float(value) for value in timings.groups())
    result: dict[str, Any] = {
        "load_ms": init_us / 1e3,
        "first_ms": first_us / 1e3,
        "warmup_mean_ms": warmup_us / 1e3,
        "mean_ms": mean_us / 1e3,
        "min_ms": None,
        "max_ms": None,
        "std_ms": None,
        "memory_init_mb": None,
        "memory_overall_mb": None,
        "peak_memory_mb": None,
        "peak_rss_mb": None,
        "version": None,
    }
    counts = _COUNT_RE.findall(text)
    if counts:  # the last count= line is the timed runs (the one before it is the warmup)
        _, _, _, low, high, _, std = counts[-1]
        result.update(min_ms=int(low) / 1e3, max_ms=int(high) / 1e3, std_ms=int(std) / 1e3)
    if footprint := _FOOTPRINT_RE.search(text):
        result["memory_init_mb"], result["memory_overall_mb"] = (float(v) for v in footprint.groups())
    if peak := _PEAK_RE.search(text):
        result["peak_memory_mb"] = float(peak.group(2))
    if rss := _RSS_RE.search(text):
        result["peak_rss_mb"] = int(rss.group(1)) / 1024
    if version := _VERSION_RE.search(text):
        result["version"] = version.group(1)
    return result


def parse_profile(text: str, runs: int) -> list[dict[str, Any]] | None:
    """Per-node times of ``--enable_op_profiling`` (its "Run Order" table of the timed runs), slowest
    first, in the entries of the benchmark schema; None when the output has no such table (pure)."""
    _, found, timed = text.partition("Operator-wise Profiling Info for Regular Benchmark Runs")
    if not found:
        return None
    entries = []
    for line in timed.split("Run Order", 1)[-1].splitlines()[2:]:
        if not line.strip() or line.startswith("="):
            break
        row = _PROFILE_ROW_RE.match(line)
        if row:
            op, _, average_ms, called, node = row.groups()
            calls = max(int(called), 1)
            entries.append({"op": op, "node": node, "total_us": float(average_ms) * 1e3 * runs,
                            "count": calls * runs, "mean_us": float(average_ms) * 1e3 / calls})  # fmt: skip
    return sorted(entries, key=lambda e: -e["total_us"])


def fill_record(record: dict[str, Any], parsed: dict[str, Any]) -> dict[str, Any]:
    """A measured record (benchmark schema) from ``parse_output``'s timings; status "ok"."""
    mean, std = parsed["mean_ms"], parsed["std_ms"]
    record.update(
        load_ms=parsed["load_ms"], first_ms=parsed["first_ms"], mean_ms=mean, min_ms=parsed["min_ms"],
        std_ms=std, cv=(std / mean) if std is not None and mean else None,
        throughput_ips=1e3 / mean if mean else None,
        peak_rss_mb=parsed["peak_rss_mb"] if parsed["peak_rss_mb"] is not None else parsed["peak_memory_mb"],
        lce_memory_overall_mb=parsed["memory_overall_mb"], runtime_version=parsed["version"],
        status="ok", error=None,
    )  # fmt: skip
    return record


def elf_machine(head: bytes) -> str | None:
    """The architecture an ELF executable is built for, or None when it is not ELF (a script) (pure)."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"machine {machine:#x}")


def check_binary_fits(path: Path, device_arch: str) -> None:
    """DevicesError when the binary at ``path`` is built for another architecture than the device's."""
    with open(path, "rb") as binary:
        built_for = elf_machine(binary.read(64))
    wanted = DEVICE_MACHINE.get(device_arch, device_arch)
    if built_for is not None and built_for != wanted:
        raise DevicesError(
            f"{path} is built for {built_for}, but the device is {device_arch}: get the {device_arch} build"
        )
