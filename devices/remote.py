"""Benchmark models on a device: push the model and the runtime's worker, measure there, fetch records.

``bench_remote`` returns records in the ``edgebnn-bench/1`` schema (CONTRIBUTING.md) with the
device's facts added (``device_facts``) and ``emulated: true`` when the target is the emulated Pi.
``.onnx`` and float ``.tflite`` models run with T4's ``runtime/worker.py`` (+ ``engines.py``) under
the device's Python (the venv ``edgebnn devices setup`` made); LCE models run with
``lce_benchmark_model`` (pushed with ``lce_benchmark_binary=`` or found on the device's PATH),
whose output ``parse_lce_benchmark_output`` reads. Everything goes to one remote temp folder that
is removed afterwards, also after a crash, a timeout or Ctrl-C (the remote process group is
killed first).

    >>> from devices.remote import bench_remote
    >>> records = bench_remote(["tiny.onnx"], device="rpi4", host="emulator", runtime="onnxruntime",
    ...                        threads=[1], runs=20, warmup=2)       # doctest: +SKIP
    >>> records[0]["status"], records[0]["emulated"]                 # doctest: +SKIP
    ('ok', True)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import tempfile
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from devices.check import probe
from devices.errors import DevicesError
from devices.profiles import load_profile
from devices.target import open_target
from devices.transport import RemoteTimeout, Transport

WORKER_FILES = ("worker.py", "engines.py")  # runtime/worker.py runs standalone next to engines.py
ELF_MACHINES = {0x03: "x86", 0x28: "arm", 0x3E: "x86_64", 0xB7: "aarch64", 0xF3: "riscv"}
DEVICE_MACHINE = {"aarch64": "aarch64", "arm64": "aarch64", "armv7l": "arm", "armv8l": "arm", "armv6l": "arm",
                  "x86_64": "x86_64", "i686": "x86", "riscv64": "riscv"}  # fmt: skip
RECORD_KEYS = (
    "model", "model_name", "runtime", "runtime_version", "threads", "kernel", "xnnpack", "runs", "warmup",
    "load_ms", "first_ms", "min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "std_ms", "cv",
    "throughput_ips", "rss_before_mb", "rss_after_load_mb", "peak_rss_mb", "model_size_bytes",
    "device", "emulated", "status", "error",
)  # fmt: skip


# ---- lce_benchmark_model ------------------------------------------------------------------------

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


def parse_lce_benchmark_output(text: str) -> dict[str, float | None]:
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
    result: dict[str, float | None] = {
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
    }
    counts = _COUNT_RE.findall(text)
    if counts:  # the last count= line is the timed runs (the one before it is the warmup)
        _, _, _, low, high, _, std = counts[-1]
        result.update(min_ms=int(low) / 1e3, max_ms=int(high) / 1e3, std_ms=int(std) / 1e3)
    if footprint := _FOOTPRINT_RE.search(text):
        result["memory_init_mb"], result["memory_overall_mb"] = (float(v) for v in footprint.groups())
    if peak := _PEAK_RE.search(text):
        result["peak_memory_mb"] = float(peak.group(2))
    return result


def elf_machine(head: bytes) -> str | None:
    """The architecture an ELF executable is built for, or None when it is not ELF (a script) (pure)."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"machine {machine:#x}")


def check_binary_fits(path: Path, device_arch: str) -> None:
    with open(path, "rb") as binary:
        built_for = elf_machine(binary.read(64))
    wanted = DEVICE_MACHINE.get(device_arch, device_arch)
    if built_for is not None and built_for != wanted:
        raise DevicesError(
            f"{path} is built for {built_for}, but the device is {device_arch}: get the {device_arch} build"
        )


# ---- records ------------------------------------------------------------------------------------


def empty_record(
    model: Path, runtime: str, threads: int, runs: int, warmup: int, device: str, emulated: bool
) -> dict[str, Any]:
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record.update(
        model=str(model), model_name=model.stem, runtime=runtime, threads=threads, runs=runs, warmup=warmup,
        model_size_bytes=model.stat().st_size, device=device, emulated=emulated, status="error",
    )  # fmt: skip
    return record


def record_from_lce(
    parsed: dict[str, Any], record: dict[str, Any], peak_rss_mb: float | None
) -> dict[str, Any]:
    mean = parsed["mean_ms"]
    record.update(
        load_ms=parsed["load_ms"], first_ms=parsed["first_ms"], mean_ms=mean, min_ms=parsed["min_ms"],
        std_ms=parsed["std_ms"], cv=(parsed["std_ms"] / mean) if parsed["std_ms"] is not None and mean else None,
        throughput_ips=1e3 / mean if mean else None,
        peak_rss_mb=peak_rss_mb if peak_rss_mb is not None else parsed["peak_memory_mb"],
        lce_memory_overall_mb=parsed["memory_overall_mb"], status="ok", error=None,
    )  # fmt: skip
    return record


# ---- the remote session ---------------------------------------------------------------------------


# Run a command in the remote temp folder as the leader of its own process group (sshd's session), with
# its pid recorded so that cleanup can kill the whole group after a timeout or Ctrl-C.
def _in_dir(tmp: str, argv: list[str], env: dict[str, str] | None = None) -> str:
    assignments = [f"{key}={value}" for key, value in (env or {}).items()]
    prefix = ["env", *assignments] if assignments else []
    return f"cd {shlex.quote(tmp)} && echo $$ > .pid && exec {shlex.join([*prefix, *argv])}"


def _cleanup(transport: Transport, tmp: str) -> None:
    """Kill what still runs in the temp folder's process group, then remove the folder. A device that
    cannot be reached any more is left alone (the error that got us here is the one to report)."""
    q = shlex.quote(tmp)
    kill = f"if [ -f {q}/.pid ]; then kill -KILL -- -$(cat {q}/.pid) 2>/dev/null; kill -KILL $(cat {q}/.pid) 2>/dev/null; fi"
    with contextlib.suppress(DevicesError):
        transport.run(f"{kill}; rm -rf -- {q}", timeout=60, check=False)


# Runs lce_benchmark_model as a child so that its peak RSS can be read (RUSAGE_CHILDREN, KiB on Linux).
_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print('edgebnn_peak_rss_kb=%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)\n"
    "sys.exit(code)\n"
)


def _worker_dir() -> Path:
    folder = Path(str(resources.files("runtime")))
    missing = [name for name in WORKER_FILES if not (folder / name).is_file()]
    if missing:
        raise DevicesError(f"the runtime worker is missing: {', '.join(missing)} in {folder}")
    return folder


@contextlib.contextmanager
def _npy_file(data: Any) -> Iterator[Path]:
    """A .npy path for ``data`` (a path, or an array written to a temp file for the copy)."""
    if isinstance(data, (str, os.PathLike)):
        if not Path(data).is_file():
            raise DevicesError(f"input file not found: {data}")
        yield Path(data)
        return
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="edgebnn-input-") as folder:
        path = Path(folder) / "input.npy"
        np.save(path, np.asarray(data))
        yield path


def _record_runtime(model: Path, runtime: str, use_lce: bool) -> str:
    """The schema's runtime name for a record (``auto`` resolved by the file type)."""
    if use_lce:
        return "lce_benchmark_model"
    if runtime == "auto":
        return "onnxruntime" if model.suffix.lower() == ".onnx" else "litert"
    return runtime


def _is_lce_model(path: Path) -> bool:
    try:
        from runtime import engines  # stdlib + numpy only; never TensorFlow

        return engines.detect_runtime(str(path)) == "lce"
    except Exception:  # noqa: BLE001 - not a model edgebnn can read: the worker will say why
        return False


def bench_remote(
    models: Iterable[str | Path],
    *,
    device: str,
    host: str,
    runtime: str = "auto",
    threads: Iterable[int] = (1,),
    runs: int = 50,
    warmup: int = 5,
    port: int | None = None,
    identity: str | None = None,
    known_hosts: str | None = None,
    accept_new_host_key: bool = False,
    device_file: str | None = None,
    lce_benchmark_binary: str | Path | None = None,
    lce_kernel: str | Iterable[str] = "default",
    xnnpack: bool = True,
    input: Any = None,  # noqa: A002 - the name `edgebnn bench` passes: .npy path, array, "random" or None
    output_dir: str | Path | None = None,
    remote_python: str | None = None,
    timeout_s: float = 600,
    profile: bool = False,
    rounds: int | None = None,
    worker_env: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure every (model, threads) on the device; one record each, in the benchmark schema.

    ``runtime``: auto | onnxruntime | litert | lce | lce_benchmark_model (LCE models always run with
    lce_benchmark_model on a device; ``lce_kernel`` may list several kernels for them). ``rounds`` is
    accepted for `edgebnn bench` compatibility: one process per configuration on a device.
    With ``input`` (a .npy path or an array) every run uses that input, and with
    ``output_dir`` the device's output of each model is fetched into ``output_dir/<model>.<runtime>.npy``
    (its path in ``record["output_npy"]``) so the caller can compare it with the host's.
    A crash or timeout of one configuration gives an "error"/"timeout" record and the others still run.
    """
    say = progress or (lambda message: None)
    models = [Path(model) for model in models]
    for model in models:
        if not model.is_file():
            raise DevicesError(f"model file not found: {model}")
    kernels = [lce_kernel] if isinstance(lce_kernel, str) else list(lce_kernel)
    if lce_benchmark_binary is not None and not Path(lce_benchmark_binary).is_file():
        raise DevicesError(f"--lce-benchmark-binary not found: {lce_benchmark_binary}")
    threads = [int(count) for count in threads]
    if not threads or min(threads) < 1 or runs < 1 or warmup < 0:
        raise DevicesError("threads and runs must be >= 1 and warmup >= 0")
    device_profile = load_profile(device, device_file)
    records: list[dict[str, Any]] = []
    with open_target(host, port=port, identity=identity, known_hosts=known_hosts,
                     accept_new_host_key=accept_new_host_key) as target:  # fmt: skip
        transport = target.transport
        facts = probe(transport)
        python = remote_python or facts.get("python_path") or "python3"
        device_facts = {
            key: facts.get(key)
            for key in ("architecture", "os_bits", "cores", "glibc", "python", "model", "kernel")
        }
        device_facts["host"] = target.description
        if lce_benchmark_binary is not None:
            check_binary_fits(Path(lce_benchmark_binary), facts["architecture"])
        tmp = _make_temp_dir(transport, device_profile.remote_tmp)
        try:
            say(f"copying to {target.description}:{tmp}")
            worker_dir = _worker_dir()
            for name in WORKER_FILES:
                transport.put(worker_dir / name, f"{tmp}/{name}")
            remote_input = None
            if input is not None and not (isinstance(input, str) and input == "random"):
                remote_input = f"{tmp}/input.npy"
                with _npy_file(input) as local_input:
                    transport.put(local_input, remote_input)
            lce_binary = facts["runtimes"].get("lce_benchmark_model")
            if lce_benchmark_binary is not None:
                lce_binary = f"{tmp}/lce_benchmark_model"
                transport.put(lce_benchmark_binary, lce_binary)
                transport.run(f"chmod +x {shlex.quote(lce_binary)}", timeout=60)
            failure: str | None = None  # after a lost connection or a full disk, the rest is not run
            for index, model in enumerate(models):
                use_lce = runtime in ("lce", "lce_benchmark_model") or (
                    runtime == "auto" and _is_lce_model(model)
                )
                configs = [
                    (count, kernel) for count in threads for kernel in (kernels if use_lce else kernels[:1])
                ]
                remote_model = f"{tmp}/m{index}/{model.name}"  # keeps the user's file name, quoted everywhere
                for count, kernel in configs:
                    name = _record_runtime(model, runtime, use_lce)
                    record = empty_record(
                        model, name, count, runs, warmup, device_profile.name, target.emulated
                    )
                    if failure is None:
                        say(f"{model.name}: {name}, {count} thread(s)")
                        try:
                            if (count, kernel) == configs[0]:
                                transport.run(
                                    f"mkdir -p {shlex.quote(str(Path(remote_model).parent))}", timeout=60
                                )
                                transport.put(model, remote_model)
                            if use_lce:
                                record = _bench_lce(transport, tmp, lce_binary, python, model, remote_model, count,
                                                    runs, warmup, kernel, xnnpack, device_profile.name,
                                                    target.emulated, timeout_s)  # fmt: skip
                            else:
                                record = _bench_worker(transport, tmp, python, model, remote_model, runtime, count,
                                                       runs, warmup, kernel, xnnpack, remote_input,
                                                       device_profile.name, target.emulated, timeout_s, worker_env,
                                                       profile)  # fmt: skip
                                if output_dir is not None and remote_input is not None and record["status"] == "ok" \
                                        and (count, kernel) == configs[0]:  # fmt: skip
                                    record["output_npy"] = _fetch_output(
                                        transport, tmp, python, remote_model, record["runtime"], remote_input,
                                        Path(output_dir), model, timeout_s,
                                    )  # fmt: skip
                        except DevicesError as error:
                            failure = str(error)
                            record.update(status="error", error=failure)
                    else:
                        record["error"] = f"not run: {failure}"
                    record["device_facts"] = device_facts
                    records.append(record)
        finally:
            _cleanup(transport, tmp)
    return records


def _bench_worker(transport, tmp, python, model, remote_model, runtime, threads, runs, warmup, lce_kernel,
                  xnnpack, remote_input, device, emulated, timeout_s, worker_env, profile=False) -> dict[str, Any]:  # fmt: skip
    argv = [python, f"{tmp}/worker.py", remote_model, "--runtime", runtime,
            "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup), "--lce-kernel", lce_kernel,
            "--xnnpack" if xnnpack else "--no-xnnpack", "--device", device]  # fmt: skip
    if emulated:
        argv.append("--emulated")
    if remote_input:
        argv += ["--input", remote_input]
    if profile:
        argv.append("--profile")
    record = empty_record(
        model, _record_runtime(model, runtime, False), threads, runs, warmup, device, emulated
    )
    try:
        done = transport.run(_in_dir(tmp, argv, worker_env), timeout=timeout_s, check=False)
    except RemoteTimeout:
        record.update(status="timeout", error=f"no result within {timeout_s:g} s (remote process killed)")
        _kill_group(transport, tmp)
        return record
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        measured = json.loads(lines[-1])
        measured.update(
            model=str(model), model_size_bytes=model.stat().st_size, device=device, emulated=emulated
        )
        return measured
    stderr = [line for line in done.stderr.strip().splitlines() if line.strip()]
    record["error"] = f"remote worker exited with {done.returncode}" + (
        f": {stderr[-1][:300]}" if stderr else ""
    )
    return record


def _make_temp_dir(transport: Transport, parent: str = "") -> str:
    """A fresh folder on the device: in ``parent`` (the profile's remote_tmp) or ``$TMPDIR`` or /tmp."""
    where = shlex.quote(parent) if parent else '"${TMPDIR:-/tmp}"'
    done = transport.run(f"mktemp -d {where}/edgebnn-bench.XXXXXX", timeout=60, check=False)
    tmp = done.stdout.strip()
    if done.returncode != 0 or not tmp.startswith("/"):
        reason = "disk full" if "space" in done.stderr.lower() else (done.stderr.strip() or "mktemp failed")
        raise DevicesError(
            f"{transport.description}: cannot create a temp folder in {parent or '$TMPDIR'}: {reason}"
        )
    return tmp


def _kill_group(transport: Transport, tmp: str) -> None:
    q = shlex.quote(tmp)
    transport.run(
        f"[ -f {q}/.pid ] && kill -KILL -- -$(cat {q}/.pid) 2>/dev/null; rm -f {q}/.pid",
        timeout=60,
        check=False,
    )


def _bench_lce(transport, tmp, binary, python, model, remote_model, threads, runs, warmup, lce_kernel, xnnpack,
               device, emulated, timeout_s) -> dict[str, Any]:  # fmt: skip
    record = empty_record(model, "lce_benchmark_model", threads, runs, warmup, device, emulated)
    record.update(kernel=lce_kernel, xnnpack=xnnpack)
    if not binary:
        record["error"] = "lce_benchmark_model is not on the device's PATH; pass --lce-benchmark-binary"
        return record
    argv = [binary, f"--graph={remote_model}", f"--num_threads={threads}", f"--num_runs={runs}",
            f"--warmup_runs={warmup}", f"--use_xnnpack={str(xnnpack).lower()}", "--report_peak_memory_footprint=true"]  # fmt: skip
    if lce_kernel == "indirect":
        argv.append("--use_indirect_bgemm=true")
    elif lce_kernel == "reference":
        argv.append("--use_reference_bconv=true")
    command = [python, "-c", _RSS_WRAPPER, *argv] if python else argv
    try:
        done = transport.run(_in_dir(tmp, command), timeout=timeout_s, check=False)
    except RemoteTimeout:
        record.update(status="timeout", error=f"no result within {timeout_s:g} s (remote process killed)")
        _kill_group(transport, tmp)
        return record
    output = done.stdout + "\n" + done.stderr
    rss = re.search(r"edgebnn_peak_rss_kb=(\d+)", output)
    try:
        parsed = parse_lce_benchmark_output(output)
    except DevicesError as error:
        record["error"] = f"exit {done.returncode}: {error}"
        return record
    if done.returncode != 0:
        record["error"] = f"lce_benchmark_model exited with {done.returncode}"
        return record
    version = re.search(r"(?:LCE|lce)[^\n]*?version[:\s]+([\w.\-]+)", output)
    record["runtime_version"] = version.group(1) if version else None
    return record_from_lce(parsed, record, int(rss.group(1)) / 1024 if rss else None)


# Used only while runtime/worker.py has no --output flag: the same engines.py, one predict call.
_PREDICT = (
    "import sys, numpy as np\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import engines\n"
    "model, runtime, source, target = sys.argv[2:6]\n"
    "engine = engines.load_engine(open(model, 'rb').read(), runtime, 1, 'default', True)\n"
    "np.save(target, engine.predict(np.load(source)))\n"
)


def _fetch_output(transport, tmp, python, remote_model, runtime, remote_input, output_dir: Path, model: Path,
                  timeout_s) -> str:  # fmt: skip
    remote_output = f"{tmp}/output.npy"
    done = transport.run(
        _in_dir(tmp, [python, "-c", _PREDICT, tmp, remote_model, runtime, remote_input, remote_output]),
        timeout=timeout_s, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise DevicesError(
            f"computing the output on the device failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    local = output_dir / f"{model.stem}.{runtime}.npy"
    partial = output_dir / f".{local.name}.partial"
    transport.get(remote_output, partial)
    partial.replace(local)
    return str(local)
