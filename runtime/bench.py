"""Benchmark .tflite and .onnx models on this machine: one fresh worker process per measurement.

    >>> from runtime.bench import benchmark
    >>> report = benchmark(["bnn.tflite", "float.tflite", "cnn.onnx"], threads=(1, 2), lce_kernel=("default", "indirect"))
    >>> report.print(); report.write_json("bench.json"); report.plot("bench.png")

How it measures, and why:

- Every (model, runtime, threads, kernel) configuration runs in a FRESH ``python runtime/worker.py``
  process, so imports, caches and other models never pollute its memory figures or its timings.
- With several configurations the runs are split into ``rounds``: round 1 measures A, B, C..., round
  2 measures A, B, C... again, each time in a new process, and the latencies are pooled. A machine
  that slows down (another job, thermal throttling) then slows every configuration alike, and the
  ratio against the first model stays meaningful.
- A worker that crashes or exceeds ``timeout_s`` gives a record with status "error" or "timeout";
  the other configurations are still measured.
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime import engines
from runtime.errors import BenchError
from runtime.metadata import model_accuracy
from runtime.report import CV_WARN, BenchReport, config_label
from runtime.worker import base_record, summarize, system_facts

WORKER = Path(__file__).with_name("worker.py")


def _as_tuple(value: Any) -> tuple:
    if isinstance(value, str | bytes | os.PathLike):
        return (value,)
    return tuple(value)


def plan(
    models: Sequence[str | os.PathLike], runtime: str, threads: Sequence[int], lce_kernels: Sequence[str]
) -> list[dict[str, Any]]:
    """The configurations to measure, model-major; validates every model and option up front."""
    if not models:
        raise BenchError("no model given")
    for count in threads:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BenchError(f"threads must be integers >= 1, got {count!r}")
    for kernel in lce_kernels:
        if kernel not in engines.LCE_KERNELS:
            raise BenchError(f"unknown LCE kernel {kernel!r}; choose from: {', '.join(engines.LCE_KERNELS)}")
    if runtime != "auto" and runtime not in engines.RUNTIMES:
        raise BenchError(f"unknown runtime {runtime!r}; choose one of: auto, {', '.join(engines.RUNTIMES)}")
    configs = []
    for model in models:
        content, name = engines.read_model(model)
        resolved = engines.check_runtime(content, name, runtime)
        for count in threads:
            for kernel in lce_kernels if resolved == "lce" else (None,):
                configs.append({"model": str(model), "runtime": resolved, "threads": count, "kernel": kernel})
    return configs


def run_worker(
    config: dict[str, Any],
    runs: int,
    warmup: int,
    xnnpack: bool,
    input_path: str | None,
    timeout_s: float,
    profile: bool,
) -> dict[str, Any]:
    """Measure one configuration in a new process; always returns a record (status ok/error/timeout)."""
    kernel = config["kernel"] or "default"
    argv = [sys.executable, str(WORKER), config["model"], "--runtime", config["runtime"],
            "--threads", str(config["threads"]), "--runs", str(runs), "--warmup", str(warmup),
            "--lce-kernel", kernel, "--xnnpack" if xnnpack else "--no-xnnpack"]  # fmt: skip
    if input_path:
        argv += ["--input", input_path]
    if profile:
        argv.append("--profile")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        record = base_record(
            config["model"], config["runtime"], config["threads"], kernel, xnnpack, runs, warmup
        )
        record.update(status="timeout", error=f"no result within {timeout_s:g} s; worker killed")
        return record
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        try:
            return json.loads(lines[-1])
        except ValueError:
            pass
    record = base_record(config["model"], config["runtime"], config["threads"], kernel, xnnpack, runs, warmup)
    if done.returncode < 0:
        cause = f"worker died with signal {signal.Signals(-done.returncode).name}"
    else:
        cause = f"worker exited with code {done.returncode}"
    last = [line for line in done.stderr.strip().splitlines() if line.strip()]
    record["error"] = cause + (f": {last[-1].strip()}" if last else "")
    return record


def merge_rounds(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the rounds of one configuration: latencies concatenated, load/first as medians, peak as max."""
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        return failed[0] | {"rounds": len(records)}
    merged = dict(records[0])
    latencies = [t for r in records for t in r["latencies_ms"]]
    batch = records[0]["input_shape"][0] if records[0].get("input_shape") else 1
    merged.update(summarize(latencies, batch=batch))
    merged["latencies_ms"] = latencies
    merged["runs"] = len(latencies)
    merged["rounds"] = len(records)
    for key in ("import_ms", "load_ms", "first_ms", "rss_before_mb", "rss_after_load_mb"):
        merged[key] = statistics.median(r[key] for r in records)
    merged["peak_rss_mb"] = max(r["peak_rss_mb"] for r in records)
    merged["imported_tensorflow"] = any(r.get("imported_tensorflow") for r in records)
    return merged


def add_ratios(results: list[dict[str, Any]]) -> None:
    """``ratio`` = median / median of the first model's matching configuration (same threads, and the
    same runtime and kernel where the first model has them)."""
    if not results:
        return
    first_model = results[0]["model"]
    baselines = [r for r in results if r["model"] == first_model and r["status"] == "ok"]
    for record in results:
        record["ratio"] = record["baseline"] = None
        if record["status"] != "ok":
            continue
        same_threads = [b for b in baselines if b["threads"] == record["threads"]]
        exact = [
            b for b in same_threads if (b["runtime"], b["kernel"]) == (record["runtime"], record["kernel"])
        ]
        candidates = exact or same_threads
        if candidates and candidates[0]["median_ms"]:
            record["ratio"] = record["median_ms"] / candidates[0]["median_ms"]
            record["baseline"] = config_label(candidates[0])


def benchmark(
    models: Sequence[str | os.PathLike] | str | os.PathLike,
    runtime: str = "auto",
    threads: Sequence[int] | int = (1,),
    runs: int = 100,
    warmup: int = 10,
    lce_kernel: Sequence[str] | str = "default",
    xnnpack: bool = True,
    input: str | np.ndarray = "random",  # noqa: A002 - the documented argument name
    timeout_s: float = 300.0,
    rounds: int | None = None,
    profile: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> BenchReport:
    """Measure every (model, runtime, threads, LCE kernel) configuration and return the report.

    ``runtime="auto"`` picks each model's runtime from its content. ``rounds`` defaults to 1 for a
    single configuration and 3 otherwise; ``runs`` timed invocations are split over the rounds.
    ``input`` is "random" (seeded normal noise in the model's input shape) or an array.
    ``on_record`` is called after every worker (progress display).
    """
    models = _as_tuple(models)
    threads = _as_tuple(threads) if not isinstance(threads, int) else (threads,)
    lce_kernels = _as_tuple(lce_kernel)
    if runs < 1 or warmup < 0:
        raise BenchError(f"--runs must be >= 1 and --warmup >= 0 (got {runs} and {warmup})")
    if timeout_s <= 0:
        raise BenchError(f"--timeout must be positive, got {timeout_s}")
    configs = plan(models, runtime, threads, lce_kernels)
    rounds = rounds if rounds is not None else (1 if len(configs) == 1 else 3)
    if rounds < 1:
        raise BenchError(f"rounds must be >= 1, got {rounds}")
    rounds = min(rounds, runs)
    runs_per_round = math.ceil(runs / rounds)
    if isinstance(input, str) and input != "random":
        raise BenchError(f"input must be 'random' or a numpy array, got {input!r}")

    system = system_facts() | {"device": "host", "emulated": False}
    with tempfile.TemporaryDirectory(prefix="edgebnn-bench-") as scratch:
        input_path = None
        if isinstance(input, np.ndarray):
            input_path = os.path.join(scratch, "input.npy")
            np.save(input_path, input)
        per_config: list[list[dict[str, Any]]] = [[] for _ in configs]
        for _ in range(rounds):
            for i, config in enumerate(configs):
                if per_config[i] and per_config[i][-1]["status"] != "ok":
                    continue  # it failed once: do not crash or hang again
                record = run_worker(config, runs_per_round, warmup, xnnpack, input_path, timeout_s, profile)
                per_config[i].append(record)
                if on_record:
                    on_record(record)

    results = [merge_rounds(records) for records in per_config]
    accuracies = {model: model_accuracy(model) for model in {c["model"] for c in configs}}
    for record in results:
        record["accuracy"] = accuracies.get(record["model"])
    add_ratios(results)
    settings = {
        "runtime": runtime, "threads": list(threads), "runs": runs, "warmup": warmup, "rounds": rounds,
        "lce_kernel": list(lce_kernels), "xnnpack": xnnpack,
        "input": "random" if input_path is None else "array", "timeout_s": timeout_s, "profile": profile,
    }  # fmt: skip
    return BenchReport(system, results, settings, collect_warnings(results))


def collect_warnings(results: list[dict[str, Any]]) -> list[str]:
    """Failed configurations one by one; noisy ones (cv above 5 %) in one line."""
    warnings = [f"{config_label(r)}: {r['status']}: {r['error']}" for r in results if r["status"] != "ok"]
    noisy = [r for r in results if r["status"] == "ok" and r["cv"] is not None and r["cv"] > CV_WARN]
    if noisy:
        listing = ", ".join(f"{config_label(r)} ({100 * r['cv']:.0f}%)" for r in noisy)
        warnings.append(
            f"latency varies by more than {100 * CV_WARN:.0f}% (cv) in {len(noisy)} of {len(results)} "
            f"configurations: {listing}. The machine is noisy: trust medians and ratios more than means, "
            "or measure again with more runs on an idle machine."
        )
    return warnings
