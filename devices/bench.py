"""The one benchmark path: latency, memory and size of models on any target, this host included.

A benchmark on this host is a benchmark on the local target. Here, the installed worker
(``python -m runtime.worker``, this Python) runs on the model files where they are; on a device
(SSH, adb, the emulated Pi) the worker's files (``runtime.worker.WORKER_FILES``), the models and
the input are copied into a temporary folder first and the worker runs there with the device's
Python; LCE models run with ``lce_benchmark_model`` on a device (no LCE wheel exists for ARM).
Every option means the same on every target. A tiny ONNX model measured on this host:

    >>> import pathlib, tempfile
    >>> from onnx import TensorProto, helper
    >>> from devices.bench import benchmark
    >>> info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 64]) for n in ("x", "y")]
    >>> graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", info[:1], info[1:])
    >>> model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18)])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "relu.onnx"
    >>> _ = path.write_bytes(model.SerializeToString())
    >>> report = benchmark([path], runs=5, warmup=1)
    >>> [(r["model_name"], r["runtime"], r["status"], r["runs"]) for r in report.results]
    [('relu', 'onnxruntime', 'ok', 5)]
    >>> report = benchmark([path], device="rpi4", host="pi@raspberrypi.local")  # doctest: +SKIP

How it measures, and why:

- Every (model, runtime, threads, kernel) configuration runs in a FRESH worker process, so imports,
  caches and other models never pollute its memory figures or its timings.
- With several configurations the runs are split into ``rounds``: round 1 measures A, B, C..., round
  2 measures A, B, C... again, each time in a new process, and the latencies are pooled
  (``runtime.record.merge_rounds``). A machine that slows down (another job, thermal throttling)
  then slows every configuration alike, and the ratio against the first model stays meaningful.
- A worker that crashes or exceeds ``timeout_s`` gives a record with status "error" or "timeout";
  the other configurations are still measured. A file that is no model at all is refused up front.
- The accuracy of each model comes from ``accuracy`` (``{model path: top-1}``), else from its
  deploy metadata (``formats.metadata``); nothing else is looked up.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices import counting, lce_benchmark, native_library
from devices.check import probe
from devices.errors import DevicesError
from devices.profiles import load_profile
from devices.remote import RemoteFolder
from devices.target import Target, open_target
from devices.transport import RemoteTimeout
from formats.errors import FormatError
from formats.files import check_writable, write_atomic
from formats.models import read_metadata
from formats.tflite import read_tflite
from runtime import engines
from runtime.errors import BenchError
from runtime.record import add_ratios, collect_warnings, merge_rounds, new_record
from runtime.report import BenchReport
from runtime.worker import package_root, system_facts, worker_files

LCE_TOOL = "lce_benchmark_model"
LCE_RUNTIMES = ("lce", LCE_TOOL)
FACT_KEYS = ("architecture", "os_bits", "cores", "glibc", "python", "model", "kernel")
Input = str | os.PathLike | np.ndarray | None  # "random" (or None), a .npy file, or an array


@dataclass(frozen=True)
class Config:
    """One configuration to measure: a model with one runtime, thread count and LCE kernel."""

    index: int  # of its model, in the order given
    model: str  # the path as given
    runtime: str  # as the record names it: lce, litert, onnxruntime, native or lce_benchmark_model
    threads: int
    kernel: str | None  # LCE's binary conv kernel, or the native runtime's kernel set
    first: bool  # its model's first configuration (the one whose output is kept)


@dataclass(frozen=True)
class Settings:
    """How every worker measures (the same for all configurations)."""

    runs: int  # per round
    warmup: int
    xnnpack: bool
    timeout_s: float
    profile: bool
    device: str
    emulated: bool
    env: Mapping[str, str]
    count_instructions: bool = False  # run each worker under the emulated Pi's instruction counter


# ---- what to measure ----------------------------------------------------------------------------


def _as_tuple(value: Any) -> tuple:
    if isinstance(value, str | bytes | os.PathLike | int):
        return (value,)
    return tuple(value)


def plan(
    models: Sequence[str | os.PathLike],
    runtime: str,
    threads: Sequence[int],
    lce_kernels: Sequence[str],
    *,
    lce_tool: bool = False,
    native_kernels: Sequence[str] = ("auto",),
) -> list[Config]:
    """The configurations to measure, model-major; validates every model and option up front.

    ``lce_tool``: LCE models run with lce_benchmark_model (a device) instead of the lce runtime.
    ``native_kernels``: the kernel sets the native runtime is measured with.
    """
    if not models:
        raise BenchError("no model given")
    if not threads:
        raise BenchError("threads must name at least one thread count", parameter="threads")
    for count in threads:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BenchError(f"threads must be integers >= 1, got {count!r}", parameter="threads")
    for kernel in lce_kernels:
        if kernel not in engines.LCE_KERNELS:
            raise BenchError(f"unknown LCE kernel {kernel!r}; choose from: {', '.join(engines.LCE_KERNELS)}")
    for kernel in native_kernels:
        if kernel not in engines.NATIVE_KERNELS:
            raise BenchError(
                f"unknown native kernel {kernel!r}; choose from: {', '.join(engines.NATIVE_KERNELS)}",
                parameter="native_kernel",
            )
    configs: list[Config] = []
    for index, model in enumerate(models):
        content, name = engines.read_model(model)
        resolved = engines.check_runtime(content, name, runtime)
        if lce_tool and resolved == "lce":
            resolved = LCE_TOOL
        kernels = (
            lce_kernels if resolved in LCE_RUNTIMES else native_kernels if resolved == "native" else (None,)
        )
        for count in threads:
            for kernel in kernels:
                first = not configs or configs[-1].index != index
                configs.append(Config(index, str(model), resolved, count, kernel, first))
    return configs


def worker_argv(python: str, model: str, config: Config, settings: Settings, *, input_path: str | None,
                output_path: str | None) -> list[str]:  # fmt: skip
    """The command line of one worker (``python -m runtime.worker``), on any target."""
    argv = [python, "-m", "runtime.worker", model, "--runtime", config.runtime,
            "--threads", str(config.threads), "--runs", str(settings.runs), "--warmup", str(settings.warmup),
            "--xnnpack" if settings.xnnpack else "--no-xnnpack", "--device", settings.device]  # fmt: skip
    if config.runtime == "native":
        argv += ["--native-kernel", config.kernel or "auto"]
    else:
        argv += ["--lce-kernel", config.kernel or "default"]
    if settings.emulated:
        argv.append("--emulated")
    if input_path:
        argv += ["--input", input_path]
    if output_path:
        argv += ["--output", output_path]
    if settings.profile:
        argv.append("--profile")
    return argv


def worker_result(done: subprocess.CompletedProcess[str], record: dict[str, Any]) -> dict[str, Any]:
    """The worker's JSON record (its last line starting with "{"), else ``record`` saying why not."""
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        with contextlib.suppress(ValueError):
            return json.loads(lines[-1])
    code = done.returncode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal has no name
            name = str(-code)
        cause = f"worker died with signal {name}"
    else:
        cause = f"worker exited with code {code}"
    last = [line for line in done.stderr.strip().splitlines() if line.strip()]
    record["error"] = cause + (f": {last[-1].strip()[:300]}" if last else "")
    return record


def lce_tool_result(
    done: subprocess.CompletedProcess[str], record: dict[str, Any], profile: bool
) -> dict[str, Any]:
    """``record`` filled from lce_benchmark_model's output, or saying why it is not."""
    output = done.stdout + "\n" + done.stderr
    try:
        parsed = lce_benchmark.parse_output(output)
    except DevicesError as error:
        record["error"] = f"exit {done.returncode}: {error}"
        return record
    if done.returncode != 0:
        record["error"] = f"{LCE_TOOL} exited with {done.returncode}"
        return record
    lce_benchmark.fill_record(record, parsed)
    if profile:
        record["profile"] = lce_benchmark.parse_profile(output, record["runs"])
    return record


# ---- where the workers run ------------------------------------------------------------------------


class Here:
    """This machine: the installed worker with this Python, on the model files where they are."""

    def __init__(self, target: Target):
        self.transport = target.transport
        self.python = sys.executable

    def model(self, config: Config) -> str:
        return config.model

    def input(self, path: Path | None) -> str | None:
        return str(path) if path else None

    def output(self, config: Config, local: Path) -> str:
        return str(local)  # the worker writes it in place

    def collect(self, produced: str, local: Path) -> None:
        pass

    def run(self, argv: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
        # PYTHONSAFEPATH: the current folder never shadows the installed packages (Python >= 3.11).
        path = os.pathsep.join(p for p in (str(package_root()), os.environ.get("PYTHONPATH")) if p)
        env = {"PYTHONSAFEPATH": "1", "PYTHONPATH": path, **settings.env}
        command = "exec " + shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), *argv])
        return self.transport.run(command, timeout=settings.timeout_s, check=False)

    def stop(self) -> None:
        pass  # the transport killed the worker (an exec'd child) at the timeout


class There:
    """A device: the worker's files, the models and the input copied into one temporary folder."""

    def __init__(self, folder: RemoteFolder, python: str, lce_tool: str | None, scratch: Path,
                 architecture: str | None = None, *, markers: bool = False):  # fmt: skip
        self.folder, self.python, self.lce_tool, self.scratch = folder, python, lce_tool, scratch
        self._models: dict[int, str] = {}
        self._input: str | None = None
        self._lce_inputs: dict[int, tuple[str, str]] = {}
        # The native library goes along when it is built for the device (_open_place cross-compiles it
        # when a native model or a count needs it); without it the native runtime there says `make native`.
        for name, path in worker_files(architecture).items():
            folder.put(path, name)
        if markers:  # the counted worker (runtime.native.markers) around the same worker
            folder.put(package_root() / "runtime" / "native" / "markers.py", "runtime/native/markers.py")

    def counts(self, config: Config) -> str:
        return counting.remote_count_path(self.folder.path, config.index)

    def fetch_counts(self, produced: str, timed_runs: int) -> dict[str, Any]:
        local = self.scratch / "counts.json"
        self.folder.get(produced, local)
        return counting.summarize(counting.parse(local.read_text()), timed_runs)

    def model(self, config: Config) -> str:
        if config.index not in self._models:  # the user's file name, quoted everywhere
            self._models[config.index] = self.folder.put(
                config.model, f"m{config.index}/{Path(config.model).name}"
            )
        return self._models[config.index]

    def input(self, path: Path | None) -> str | None:
        if path and self._input is None:
            self._input = self.folder.put(path, "input.npy")
        return self._input

    def lce_input(self, config: Config, path: Path) -> tuple[str, str]:
        """(input tensor name, raw file on the device) for lce_benchmark_model's --input_layer_value_files."""
        if config.index not in self._lce_inputs:
            array = np.load(path, allow_pickle=False)
            model = read_tflite(config.model)
            tensor = model.tensors[model.inputs[0]]
            if tuple(array.shape) != tensor.shape:
                raise BenchError(
                    f"input of shape {tuple(array.shape)} does not fit the model's input {tensor.shape}"
                )
            if any(mark in tensor.name for mark in ":,"):
                raise BenchError(f"{LCE_TOOL} cannot be given an input for a tensor named {tensor.name!r}")
            raw = self.scratch / f"input{config.index}.raw"  # the tool reads raw little-endian values
            raw.write_bytes(np.asarray(array, dtype=np.dtype(tensor.dtype).newbyteorder("<")).tobytes())
            self._lce_inputs[config.index] = (tensor.name, self.folder.put(raw, f"m{config.index}/input.raw"))
        return self._lce_inputs[config.index]

    def output(self, config: Config, local: Path) -> str:
        return self.folder.remote(f"m{config.index}/output.npy")

    def collect(self, produced: str, local: Path) -> None:
        fetched = self.scratch / "output.npy"
        self.folder.get(produced, fetched)
        write_atomic(local, fetched.read_bytes())

    def run(self, argv: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
        return self.folder.run(argv, timeout=settings.timeout_s, env=dict(settings.env))

    def stop(self) -> None:
        self.folder.kill()


def measure(place: Here | There, config: Config, settings: Settings, *, input_path: Path | None,
            output: Path | None) -> dict[str, Any]:  # fmt: skip
    """One configuration in one fresh process at ``place``: always a record (ok, error or timeout)."""
    record = new_record(config.model, config.runtime, config.threads, config.kernel, settings.xnnpack,
                        settings.runs, settings.warmup, settings.device, settings.emulated)  # fmt: skip
    model = place.model(config)
    if config.runtime == LCE_TOOL:
        if not place.lce_tool:
            record["error"] = f"{LCE_TOOL} is not on the device's PATH; pass --lce-benchmark-binary"
            return record
        try:
            value_file = place.lce_input(config, input_path) if input_path else None
        except BenchError as error:
            record["error"] = str(error)
            return record
        argv = lce_benchmark.benchmark_argv(
            place.lce_tool, model, threads=config.threads, runs=settings.runs, warmup=settings.warmup,
            xnnpack=settings.xnnpack, kernel=config.kernel or "default", input_file=value_file,
            profile=settings.profile,
        )  # fmt: skip
        argv = [place.python, "-c", lce_benchmark.RSS_WRAPPER, *argv]
    else:
        produced = place.output(config, output) if output else None
        argv = worker_argv(place.python, model, config, settings, input_path=place.input(input_path),
                           output_path=produced)  # fmt: skip
    counts = None
    if settings.count_instructions and isinstance(place, There):
        counts = place.counts(config)
        argv = counting.counted_argv(argv, counts)
    try:
        done = place.run(argv, settings)
    except RemoteTimeout:
        place.stop()
        return record | {
            "status": "timeout",
            "error": f"no result within {settings.timeout_s:g} s; worker killed",
        }
    if config.runtime == LCE_TOOL:
        return lce_tool_result(done, record, settings.profile)
    measured = worker_result(done, record)
    for key in ("model", "model_name", "model_size_bytes", "device", "emulated"):  # as on this host
        measured[key] = record[key]
    if output and measured["status"] == "ok":
        place.collect(produced, output)
        measured["output_npy"] = str(output)
    if counts is not None and measured["status"] == "ok" and isinstance(place, There):
        try:
            summary = place.fetch_counts(counts, settings.runs)
        except DevicesError as error:
            return measured | {"status": "error", "error": f"instruction count: {error}"}
        measured["instructions"] = summary.pop("instructions")
        measured["instruction_counts"] = summary
    return measured


# ---- the benchmark -------------------------------------------------------------------------------


def remote_system(records: list[dict[str, Any]], device: str, host_facts: dict[str, Any]) -> dict[str, Any]:
    """The report's ``system`` from the ``device_facts`` of a device's records."""
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


def _check_options(runs: int, warmup: int, timeout_s: float, rounds: int | None) -> None:
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise BenchError(f"runs must be >= 1, got {runs}", parameter="runs")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise BenchError(f"warmup must be >= 0, got {warmup}", parameter="warmup")
    if not timeout_s > 0:
        raise BenchError(f"timeout_s must be positive, got {timeout_s}", parameter="timeout_s")
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
        raise BenchError(f"rounds must be >= 1, got {rounds}", parameter="rounds")


def _accuracies(models: Sequence[str], given: Mapping[Any, float] | None) -> dict[str, float | None]:
    """Each model's accuracy: the one given, else its deploy metadata's, else None."""
    given = {str(model): value for model, value in (given or {}).items()}
    for model, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise BenchError(
                f"accuracy of {model} must be a number in [0, 1], got {value!r}", parameter="accuracy"
            )
    found: dict[str, float | None] = {}
    for model in models:
        if model in given:
            found[model] = float(given[model])
            continue
        try:
            found[model] = read_metadata(model).accuracy
        except FormatError:  # a malformed metadata entry: the benchmark still stands
            found[model] = None
    return found


@contextlib.contextmanager
def _input_file(data: Input, scratch: Path) -> Iterator[Path | None]:
    if data is None or (isinstance(data, str) and data == "random"):
        yield None
    elif isinstance(data, np.ndarray):
        path = scratch / "input.npy"
        np.save(path, data)
        yield path
    elif isinstance(data, str | os.PathLike):
        if not Path(data).is_file():
            raise BenchError(f"input file not found: {data}", parameter="input")
        yield Path(data)
    else:
        raise BenchError(f"input must be 'random', a .npy file or a numpy array, got {type(data).__name__}",
                         parameter="input")  # fmt: skip


def _open_place(target: Target, scratch: Path, stack: contextlib.ExitStack, *, remote_tmp: str,
                remote_python: str | None, lce_benchmark_binary: str | os.PathLike | None,
                say: Callable[[str], None], native: bool = False,
                count_instructions: bool = False) -> tuple[Here | There, dict[str, Any] | None]:  # fmt: skip
    """Where the workers run, and the device's facts (None on this machine). ``native``: a
    configuration runs the native runtime, whose library is then built for the device first."""
    if target.local:
        if lce_benchmark_binary is not None:
            raise DevicesError("lce_benchmark_binary is for a remote device (LCE models run in the lce "
                               "runtime on this machine)", parameter="lce_benchmark_binary")  # fmt: skip
        return Here(target), None
    say(f"probing {target.description}")
    facts = probe(target.transport)
    if lce_benchmark_binary is not None:
        lce_benchmark.check_binary_fits(Path(lce_benchmark_binary), facts["architecture"])
    if count_instructions:
        counting.check_installed(target.transport)
    if native or count_instructions:  # the markers of a count live in the native library too
        native_library.build_library(facts["architecture"] or "unknown", log=say)
    folder = stack.enter_context(RemoteFolder(target.transport, remote_tmp))
    say(f"copying to {target.description}:{folder.path}")
    lce_tool = facts["runtimes"].get(LCE_TOOL)
    if lce_benchmark_binary is not None:
        lce_tool = folder.put(lce_benchmark_binary, LCE_TOOL)
        target.transport.run(f"chmod +x {shlex.quote(lce_tool)}", timeout=60)
    python = remote_python or facts.get("python_path") or "python3"
    if (native or count_instructions) and remote_python is None:  # the worker imports numpy
        modules = next(
            (p.get("modules", {}) for p in facts.get("pythons", []) if p.get("python") == python), {}
        )
        if not modules.get("numpy"):
            raise DevicesError(
                f"{target.description}: the benchmark worker needs numpy on the device and {python} has none: "
                "run `edgebnn devices setup DEVICE --host ...` first (it installs numpy and the runtimes offline)"
            )
    device_facts = {key: facts.get(key) for key in FACT_KEYS} | {"host": target.description}
    there = There(folder, python, lce_tool, scratch, facts.get("architecture"), markers=count_instructions)
    return there, device_facts


def _check_counting(target: Target, configs: list[Config]) -> None:
    """Instruction counts need the emulated Pi's counter, one thread and a Python worker."""
    if target.local or not target.emulated:
        raise DevicesError(
            f"--count-instructions works on the emulated Pi only (--device rpi4 --host emulator), not on "
            f"{target.description}: a real CPU has no exact instruction counter here",
            parameter="count_instructions",
        )
    if any(config.threads != 1 for config in configs):
        raise DevicesError("--count-instructions needs --threads 1 (counts are taken single-threaded)",
                           parameter="count_instructions")  # fmt: skip
    if any(config.runtime == LCE_TOOL for config in configs):
        raise DevicesError(f"--count-instructions cannot count {LCE_TOOL} (LCE models): convert them with "
                           "--target native, or count the float twin", parameter="count_instructions")  # fmt: skip


def benchmark_on(
    target: Target,
    models: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    device: str = "host",
    remote_tmp: str = "",
    runtime: str = "auto",
    threads: Sequence[int] | int = (1,),
    runs: int = 100,
    warmup: int = 10,
    lce_kernel: Sequence[str] | str = "default",
    native_kernel: Sequence[str] | str = "auto",
    xnnpack: bool = True,
    input: Input = "random",  # noqa: A002 - the documented argument name
    timeout_s: float = 300.0,
    rounds: int | None = None,
    profile: bool = False,
    accuracy: Mapping[Any, float] | None = None,
    output_dir: str | os.PathLike | None = None,
    remote_python: str | None = None,
    lce_benchmark_binary: str | os.PathLike | None = None,
    worker_env: Mapping[str, str] | None = None,
    count_instructions: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """``benchmark`` on an open ``target`` (see ``benchmark`` for the options)."""
    say = progress or (lambda message: None)
    models, threads, lce_kernels = _as_tuple(models), _as_tuple(threads), _as_tuple(lce_kernel)
    native_kernels = _as_tuple(native_kernel)
    _check_options(runs, warmup, timeout_s, rounds)
    if lce_benchmark_binary is not None and not Path(lce_benchmark_binary).is_file():
        raise DevicesError(
            f"lce_benchmark_binary not found: {lce_benchmark_binary}", parameter="lce_benchmark_binary"
        )
    configs = plan(
        models, runtime, threads, lce_kernels, lce_tool=not target.local, native_kernels=native_kernels
    )
    if count_instructions:
        _check_counting(target, configs)
        rounds = rounds or 1  # the count is exact: one round says it all
    rounds = min(rounds if rounds is not None else (1 if len(configs) == 1 else 3), runs)
    settings = Settings(math.ceil(runs / rounds), warmup, xnnpack, timeout_s, profile, device, target.emulated,
                        dict(worker_env or {}), count_instructions)  # fmt: skip
    outputs: dict[int, Path] = {}  # model index -> where its output is kept
    if output_dir is not None:
        for config in configs:
            if config.first and config.runtime != LCE_TOOL:
                outputs[config.index] = check_writable(
                    Path(output_dir) / f"{Path(config.model).stem}.{config.runtime}.npy"
                )

    per_config: list[list[dict[str, Any]]] = [[] for _ in configs]
    with tempfile.TemporaryDirectory(prefix="edgebnn-bench-") as folder, contextlib.ExitStack() as stack:
        scratch = Path(folder)
        input_path = stack.enter_context(_input_file(input, scratch))
        place, device_facts = _open_place(target, scratch, stack, remote_tmp=remote_tmp, remote_python=remote_python,
                                          lce_benchmark_binary=lce_benchmark_binary, say=say,
                                          native=any(c.runtime == "native" for c in configs),
                                          count_instructions=count_instructions)  # fmt: skip
        failure: str | None = None  # after a lost connection or a full disk, the rest is not run
        for round_index in range(rounds):
            for i, config in enumerate(configs):
                if per_config[i] and per_config[i][-1]["status"] != "ok":
                    continue  # it failed once: do not crash or hang again
                if failure is None:
                    say(f"{Path(config.model).name}: {config.runtime}, {config.threads} thread(s)")
                    output = outputs.get(config.index) if config.first and round_index == 0 else None
                    try:
                        record = measure(place, config, settings, input_path=input_path, output=output)
                    except DevicesError as error:
                        failure = str(error)
                        record = new_record(config.model, config.runtime, config.threads, config.kernel, xnnpack,
                                            settings.runs, warmup, device, target.emulated) | {"error": failure}  # fmt: skip
                else:
                    record = new_record(config.model, config.runtime, config.threads, config.kernel, xnnpack,
                                        settings.runs, warmup, device, target.emulated)  # fmt: skip
                    record["error"] = f"not run: {failure}"
                if device_facts is not None:
                    record["device_facts"] = device_facts
                per_config[i].append(record)
                if on_record:
                    on_record(record)

    results = [merge_rounds(records) for records in per_config]
    found = _accuracies([c.model for c in configs if c.first], accuracy)
    for record in results:
        record["accuracy"] = found[record["model"]]
    add_ratios(results)
    host_facts = system_facts()
    if target.local:
        system = host_facts | {"device": device, "emulated": target.emulated}
    else:
        system = remote_system(results, device, host_facts)
    settings_used = {
        "runtime": runtime, "threads": list(threads), "runs": runs, "warmup": warmup, "rounds": rounds,
        "lce_kernel": list(lce_kernels), "native_kernel": list(native_kernels), "xnnpack": xnnpack,
        "timeout_s": timeout_s, "profile": profile, "count_instructions": count_instructions,
        "input": "random" if input_path is None else "array" if isinstance(input, np.ndarray) else "file",
    }  # fmt: skip
    return BenchReport(system, results, settings_used, collect_warnings(results))


def benchmark(
    models: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    device: str = "host",
    host: str | None = None,
    port: int | None = None,
    identity: str | None = None,
    known_hosts: str | None = None,
    accept_new_host_key: bool = False,
    device_file: str | None = None,
    **options: Any,
) -> BenchReport:
    """Measure every (model, runtime, threads, LCE kernel) configuration on a target; the report.

    Where: ``device`` names the device profile (``"host"``: this machine) and ``host`` how to reach
    it (``USER@ADDRESS``, ``adb:SERIAL``, ``emulator[:NAME]``, or ``local``, the default for
    ``device="host"``); ``port``, ``identity``, ``known_hosts`` and ``accept_new_host_key`` are
    the SSH settings (``devices.target.open_target``), ``device_file`` a profile TOML file.

    What (``options``, passed on to ``benchmark_on``): ``runtime`` "auto" picks each model's runtime
    from its content (``native`` for .ebnn; ``runtime="native"`` also runs .tflite files, translated
    on load); ``threads``, ``lce_kernel`` (LCE models) and ``native_kernel`` (the native runtime's
    kernel sets: auto, scalar, avx2, avx512) list what to measure; ``runs``
    timed invocations are split over ``rounds`` (default 1 for a single configuration, else 3)
    after ``warmup`` untimed ones per process; ``xnnpack`` toggles TFLite's delegate; ``input`` is
    "random" (seeded normal noise in the model's input shape), a .npy file or an array;
    ``timeout_s`` bounds each worker; ``profile`` asks for per-op times where the runtime has them;
    ``accuracy`` maps model paths to their test accuracy (else their deploy metadata says it);
    ``output_dir`` keeps each model's output for ``input`` as ``<stem>.<runtime>.npy`` there (not
    from lce_benchmark_model); ``remote_python`` and ``lce_benchmark_binary`` (pushed and run for
    LCE models) are for a device; ``worker_env`` is added to each worker's environment;
    ``count_instructions`` (the emulated Pi only, one thread) runs each worker under the QEMU
    instruction counter (``devices.counting``) and fills the records' ``instructions`` (guest
    instructions of one inference) and ``instruction_counts`` (the details, per op for native);
    ``on_record`` is called after every worker and ``progress`` with what happens (progress display).
    """
    if host is None:
        if device != "host":
            raise DevicesError(f"host is required for device {device!r} (USER@ADDRESS, adb:SERIAL, local or "
                               "emulator)", parameter="host")  # fmt: skip
        host = "local"
    remote_tmp = ""
    if device != "host":
        profile = load_profile(device, device_file)
        device, remote_tmp = profile.name, profile.remote_tmp
    elif host != "local":
        raise DevicesError(f"host {host!r} is not this machine: name its device profile (device=...)",
                           parameter="host")  # fmt: skip
    with open_target(host, port=port, identity=identity, known_hosts=known_hosts,
                     accept_new_host_key=accept_new_host_key) as target:  # fmt: skip
        return benchmark_on(target, models, device=device, remote_tmp=remote_tmp, **options)
