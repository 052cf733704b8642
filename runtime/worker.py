"""Measure one model with one runtime and thread count, in this process, and print ONE JSON record.

The benchmark (``devices/bench.py``) starts a fresh ``python -m runtime.worker ...`` per
configuration and round, so that imports and other models never pollute the memory figures. On
this host it runs from the installed package; on a device from a folder that holds just
``WORKER_FILES`` (the package layout, so the imports are the same), copied there by the benchmark:

    cd /tmp/edgebnn-bench.XXXX && python3 -m runtime.worker model.tflite --runtime litert --threads 4 --runs 100

It needs only the standard library, numpy and the runtime's own package (onnxruntime,
ai-edge-litert, or larq-compute-engine; for ``native`` the library ``libedgebnn.so``, shipped as
``runtime/native/libedgebnn.so`` next to its binding when it is built for the device's
architecture). What it measures, like TFLite's ``benchmark_model``:
load/init time (model bytes -> ready interpreter), the first inference, then ``--warmup`` untimed
and ``--runs`` timed invocations (``time.perf_counter_ns`` around ``invoke`` only, garbage
collector off), and the resident memory before the load, after it, and at its peak (``VmHWM`` of
/proc/self/status; ``ru_maxrss`` where there is no /proc). Its record comes from
``runtime.record.new_record``; ``--system`` prints the machine's facts instead.

Test-only hook: ``EDGEBNN_WORKER_FAULT=crash|hang`` makes the worker abort (SIGABRT) or sleep
forever after loading the model, so the harness's crash and timeout paths can be tested for real.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import resource
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from formats.files import write_atomic
from runtime import engines
from runtime.errors import BenchError
from runtime.record import new_record, now, summarize

FAULT_ENV = "EDGEBNN_WORKER_FAULT"
# Everything `python -m runtime.worker` imports from edgebnn, as paths below the package root: what
# the benchmark copies to a device. tests/runtime/test_worker.py checks it against the imports.
WORKER_FILES = (
    "runtime/__init__.py", "runtime/errors.py", "runtime/engines.py", "runtime/record.py", "runtime/worker.py",
    "runtime/translate.py", "runtime/native/__init__.py",
    "formats/__init__.py", "formats/errors.py", "formats/files.py", "formats/kinds.py", "formats/tflite.py",
    "formats/ebnn.py", "formats/metadata.py",
)  # fmt: skip
# The native runtime's library in the flat layout its binding also looks for (runtime/native/__init__.py).
WORKER_LIBRARY = "runtime/native/libedgebnn.so"


def package_root() -> Path:
    """The folder that holds the ``runtime`` and ``formats`` packages (the installed edgebnn)."""
    return Path(__file__).resolve().parents[1]


def worker_files(architecture: str | None = None) -> dict[str, Path]:
    """``WORKER_FILES`` -> where each one is on this machine, plus ``WORKER_LIBRARY`` when the native
    library is built for ``architecture`` (``platform.machine()`` names; default: this machine's)."""
    root = package_root()
    files = {name: root / name for name in WORKER_FILES}
    library = root / "runtime" / "native" / "build" / (architecture or platform.machine()) / "libedgebnn.so"
    if library.is_file():
        files[WORKER_LIBRARY] = library
    return files


# ---------------------------------------------------------------------------------------------
# Memory, inputs and the machine


def _status_field_mb(field: str) -> float | None:
    """A ``kB`` field of /proc/self/status (Linux) in MiB, or None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _maxrss_mb() -> float:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB on Linux


def rss_mb() -> float:
    """Current resident set size in MiB (falls back to the peak where /proc is missing)."""
    current = _status_field_mb("VmRSS")
    return current if current is not None else _maxrss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size in MiB: VmHWM, which belongs to this program image.

    Not ru_maxrss where /proc exists: Linux carries it across exec, so a worker started by a large
    parent (a 1 GB test process, a notebook) would report the parent's size at fork.
    """
    peak = _status_field_mb("VmHWM")
    return peak if peak is not None else _maxrss_mb()


def make_input(shape: tuple[int, ...], dtype: np.dtype, seed: int = 0) -> np.ndarray:
    """A reproducible random input: standard normal for floats, the full range for integers."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (x86 "model name", ARM "Model"/"Hardware")."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def system_facts() -> dict[str, Any]:
    """What LCE's benchmark reports state about the machine: CPU, architecture, OS and bitness, cores."""
    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        usable_cores = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "architecture": platform.machine(),
        "os": platform.platform(),
        "os_bits": 8 * struct.calcsize("P"),  # of this Python userland: 32-bit Pi OS is ~5x slower
        "kernel_release": platform.release(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "engines": {runtime: engines.runtime_version(runtime) for runtime in engines.RUNTIMES},
        "date": now(),
    }


# ---------------------------------------------------------------------------------------------
# The measurement


def save_npy(path: str, array: np.ndarray) -> None:
    """The array as a .npy file, written atomically (``formats.files``: its folder must exist)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def _ms(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e6


def measure(
    model: str,
    runtime: str = "auto",
    threads: int = 1,
    runs: int = 100,
    warmup: int = 10,
    lce_kernel: str = "default",
    xnnpack: bool = True,
    input_path: str | None = None,
    seed: int = 0,
    profile: bool = False,
    device: str = "host",
    emulated: bool = False,
    output_path: str | None = None,
    native_kernel: str = "auto",
) -> dict[str, Any]:
    """Load ``model`` and time it; returns one benchmark record. Raises BenchError on bad input."""
    if runs < 1:
        raise BenchError(f"runs must be >= 1, got {runs}", parameter="runs")
    if warmup < 0:
        raise BenchError(f"warmup must be >= 0, got {warmup}", parameter="warmup")
    content, name = engines.read_model(model)
    runtime = engines.check_runtime(content, name, runtime)
    kernel = native_kernel if runtime == "native" else lce_kernel
    record = new_record(model, runtime, threads, kernel, xnnpack, runs, warmup, device, emulated)

    start = time.perf_counter_ns()
    engines.import_runtime(runtime)
    record["import_ms"] = _ms(start, time.perf_counter_ns())

    gc.collect()
    record["rss_before_mb"] = rss_mb()
    profile_dir = tempfile.mkdtemp(prefix="edgebnn-profile-") if profile else None
    start = time.perf_counter_ns()
    source = model if runtime == "onnxruntime" else content  # ONNX from its path: external data files
    engine = engines.load_engine(source, runtime, threads, lce_kernel, xnnpack, profile_dir=profile_dir,
                                 native_kernel=native_kernel)  # fmt: skip
    record["load_ms"] = _ms(start, time.perf_counter_ns())  # native .tflite: the translation included
    record["rss_after_load_mb"] = rss_mb()
    record["runtime_version"] = engine.version
    if runtime == "native":
        record["kernel"] = engine.kernel  # the set auto chose: scalar, avx2, avx512

    fault = os.environ.get(FAULT_ENV)
    if fault == "crash":
        os.abort()
    if fault == "hang":
        while True:
            time.sleep(60)

    x = (
        make_input(engine.input_shape, engine.input_dtype, seed)
        if input_path is None
        else np.load(input_path, allow_pickle=False)
    )
    if tuple(x.shape) != engine.input_shape and not (
        engine.batch_dynamic and tuple(x.shape[1:]) == engine.input_shape[1:]
    ):
        raise BenchError(
            f"input of shape {tuple(x.shape)} does not fit the model's input {engine.input_shape}"
        )
    engine.set_input(x)
    record["input_shape"] = list(x.shape)

    start = time.perf_counter_ns()
    engine.invoke()
    record["first_ms"] = _ms(start, time.perf_counter_ns())
    if output_path:  # the model's answer to this input, for comparing devices and runtimes
        save_npy(output_path, engine.output())
        record["output_npy"] = output_path

    invoke, clock = engine.invoke, time.perf_counter_ns  # local names: no attribute lookups in the loop
    latencies_ns = [0] * runs
    gc.disable()
    try:
        for _ in range(warmup):
            invoke()
        engine.reset_profile()  # the per-op profile covers the timed runs only (native)
        for i in range(runs):
            start = clock()
            invoke()
            latencies_ns[i] = clock() - start
    finally:
        gc.enable()

    latencies_ms = [ns / 1e6 for ns in latencies_ns]
    record.update(summarize(latencies_ms, batch=int(x.shape[0])))
    record["latencies_ms"] = latencies_ms
    record["peak_rss_mb"] = peak_rss_mb()
    record["profile"] = engine.profile()
    if profile_dir:
        shutil.rmtree(profile_dir, ignore_errors=True)
    record["imported_tensorflow"] = any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
    record["status"] = "ok"
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.worker", description="Time one model with one runtime; print one JSON record."
    )
    parser.add_argument("model", nargs="?", help="the .tflite, .onnx or .ebnn file (omit with --system)")
    parser.add_argument("--system", action="store_true", help="print this machine's facts as JSON instead")
    parser.add_argument("--runtime", default="auto", choices=("auto", *engines.RUNTIMES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--lce-kernel", default="default", choices=engines.LCE_KERNELS)
    parser.add_argument("--native-kernel", default="auto", choices=engines.NATIVE_KERNELS,
                        help="kernel set of the native runtime (auto: EDGEBNN_NATIVE_KERNEL, else the best)")  # fmt: skip
    parser.add_argument("--xnnpack", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--input", default=None, help=".npy file with the input (default: seeded random)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="save the output of the first inference here (.npy)")
    parser.add_argument("--profile", action="store_true", help="per-op profile where the runtime has one")
    parser.add_argument("--device", default="host", help="the device name written into the record")
    parser.add_argument("--emulated", action="store_true", help="mark the record as measured under emulation")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.system:
        sys.stdout.write(json.dumps(system_facts()) + "\n")
        return 0
    if not args.model:
        parser.error("a model file is required")
    try:
        record = measure(
            args.model, args.runtime, args.threads, args.runs, args.warmup, args.lce_kernel, args.xnnpack,
            args.input, args.seed, args.profile, args.device, args.emulated, args.output,
            native_kernel=args.native_kernel,
        )  # fmt: skip
        code = 0
    except Exception as error:  # noqa: BLE001 - every failure becomes an "error" record for the harness
        runtime = args.runtime
        if (
            runtime == "auto"
        ):  # unresolved: name the runtime the file's suffix asks for, so the record is valid
            suffix = Path(args.model).suffix
            runtime = {".onnx": "onnxruntime", ".ebnn": "native"}.get(suffix, "litert")
        kernel = args.native_kernel if runtime == "native" else args.lce_kernel
        record = new_record(args.model, runtime, args.threads, kernel, args.xnnpack,
                            args.runs, args.warmup, args.device, args.emulated)  # fmt: skip
        message = str(error).strip().splitlines()
        user_error = getattr(error, "exit_code", None) == 2  # BenchError, FormatError
        record["error"] = message[0] if message and user_error else repr(error)
        code = 2 if user_error else 1
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
