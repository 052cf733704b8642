"""The benchmark record: one (model, runtime, threads[, kernel]) configuration, as ``runtime/schema.json`` says.

The one place that builds records and computes what is derived from them: summary statistics,
the merge of the rounds of one configuration, the ratios against the first model, the warnings
and the labels that tables and plots print. The worker (on this host or on a device) and the
benchmark orchestration (``devices/bench.py``) both use it.

    >>> from runtime.record import add_ratios, config_label, merge_rounds, new_record, validate
    >>> first = new_record("bnn.tflite", "lce", threads=1, kernel="default", xnnpack=True, runs=2, warmup=1)
    >>> first["status"], first["median_ms"]                       # every field, none measured yet
    ('error', None)
    >>> rounds = [first | {"status": "ok", "latencies_ms": [2.0, 4.0]}, first | {"status": "ok", "latencies_ms": [3.0]}]
    >>> bnn = merge_rounds(rounds)
    >>> bnn["runs"], bnn["rounds"], bnn["median_ms"]
    (3, 2, 3.0)
    >>> cnn = new_record("cnn.onnx", "onnxruntime", 1, None, None, 3, 1) | {"status": "ok", "median_ms": 6.0}
    >>> add_ratios([bnn, cnn])
    >>> cnn["ratio"], cnn["baseline"], config_label(cnn)
    (2.0, 'bnn · lce · 1t', 'cnn · onnxruntime · 1t')
    >>> system = {"cpu_model": "any", "architecture": "x86_64", "os": "Linux", "os_bits": 64, "cores": 2,
    ...           "engines": {}, "date": "2026-01-01"}
    >>> validate({"schema": "edgebnn-bench/1", "system": system, "results": [bnn, cnn]})

This module needs only the standard library, numpy and ``runtime.engines`` (it ships with the
worker); ``validate`` imports ``jsonschema``, which only the host needs.
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from runtime import engines
from runtime.errors import BenchError

SCHEMA_ID = "edgebnn-bench/1"
SCHEMA_PATH = Path(__file__).with_name("schema.json")
CV_WARN = 0.05  # above this coefficient of variation a median is not trustworthy to a few percent
STATISTICS = ("min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "std_ms", "cv", "throughput_ips")


def summarize(latencies_ms: list[float], batch: int = 1) -> dict[str, float | None]:
    """Warm latency statistics as in the benchmark schema (percentiles with linear interpolation)."""
    if not latencies_ms:
        return dict.fromkeys(STATISTICS)
    values = np.asarray(latencies_ms, dtype=np.float64)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return {
        "min_ms": float(values.min()),
        "median_ms": float(np.median(values)),
        "mean_ms": mean,
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "std_ms": std,
        "cv": std / mean if mean > 0 else 0.0,
        "throughput_ips": batch * 1000.0 / mean if mean > 0 else None,
    }


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def new_record(model: str, runtime: str, threads: int, kernel: str | None, xnnpack: bool | None,
               runs: int, warmup: int, device: str = "host", emulated: bool = False) -> dict[str, Any]:  # fmt: skip
    """A record with every schema field, the measured ones still None (status "error" until done).

    ``kernel`` is kept for the LCE runtimes (their binary conv kernel) and the native one (its
    kernel set: the requested one, replaced by the set in use once measured); ``xnnpack`` for the
    TFLite ones (null otherwise).
    """
    path = Path(model)
    lce = runtime in ("lce", "lce_benchmark_model")
    if lce:
        kernel = kernel or "default"
    elif runtime == "native":
        kernel = kernel if kernel in engines.NATIVE_KERNELS else "auto"
    else:
        kernel = None
    return {
        "model": str(model),
        "model_name": path.stem,
        "runtime": runtime,
        "runtime_version": engines.runtime_version(runtime) if runtime in engines.RUNTIMES else None,
        "threads": threads,
        "kernel": kernel,
        "xnnpack": xnnpack if lce or runtime == "litert" else None,
        "runs": runs,
        "warmup": warmup,
        **dict.fromkeys(("import_ms", "load_ms", "first_ms")),
        **summarize([]),
        **dict.fromkeys(("rss_before_mb", "rss_after_load_mb", "peak_rss_mb")),
        "model_size_bytes": engines.model_size_bytes(path) if path.is_file() else None,
        "device": device,
        "emulated": emulated,
        "status": "error",
        "error": None,
        "latencies_ms": [],
        "profile": None,
        # guest instructions of one inference on the emulated Pi (devices.counting), when counted
        "instructions": None,
        "instruction_counts": None,
        "input_shape": None,
        "imported_tensorflow": None,
        "date": now(),
    }


def _median(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.median(values) if values else None


def _pooled_moments(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean, min and standard deviation of all runs from each round's own (runtimes that report no
    single latencies, like ``lce_benchmark_model``)."""
    counts = [r["runs"] for r in records]
    total = sum(counts)
    mean = sum(n * r["mean_ms"] for n, r in zip(counts, records, strict=True)) / total
    std = None
    if all(r.get("std_ms") is not None for r in records) and total > 1:
        spread = sum(
            (n - 1) * r["std_ms"] ** 2 + n * (r["mean_ms"] - mean) ** 2
            for n, r in zip(counts, records, strict=True)
        )
        std = math.sqrt(spread / (total - 1))
    lows = [r["min_ms"] for r in records if r.get("min_ms") is not None]
    return {
        **summarize([]),
        "mean_ms": mean,
        "min_ms": min(lows) if lows else None,
        "std_ms": std,
        "cv": std / mean if std is not None and mean > 0 else None,
        "throughput_ips": 1000.0 / mean if mean > 0 else None,
    }


def merge_rounds(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the rounds of one configuration: latencies concatenated, load/first as medians, peak as max."""
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        return failed[0] | {"rounds": len(records)}
    merged = dict(records[0])
    latencies = [t for r in records for t in r.get("latencies_ms") or []]
    if latencies:
        batch = records[0]["input_shape"][0] if records[0].get("input_shape") else 1
        merged.update(summarize(latencies, batch=batch))
        merged["runs"] = len(latencies)
    elif len(records) > 1:
        merged.update(_pooled_moments(records))
        merged["runs"] = sum(r["runs"] for r in records)
    merged["latencies_ms"] = latencies
    merged["rounds"] = len(records)
    for key in ("import_ms", "load_ms", "first_ms", "rss_before_mb", "rss_after_load_mb"):
        merged[key] = _median(records, key)
    peaks = [r["peak_rss_mb"] for r in records if r.get("peak_rss_mb") is not None]
    merged["peak_rss_mb"] = max(peaks) if peaks else None
    if any(r.get("imported_tensorflow") is not None for r in records):
        merged["imported_tensorflow"] = any(r.get("imported_tensorflow") for r in records)
    return merged


def add_ratios(results: list[dict[str, Any]]) -> None:
    """``ratio`` = median / median of the first model's matching configuration (same threads, and the
    same runtime and kernel where the first model has them); None where a median is missing."""
    if not results:
        return
    first_model = results[0]["model"]
    baselines = [r for r in results if r["model"] == first_model and r["status"] == "ok"]
    for record in results:
        record["ratio"] = record["baseline"] = None
        if record["status"] != "ok" or not record.get("median_ms"):
            continue
        same_threads = [b for b in baselines if b["threads"] == record["threads"] and b.get("median_ms")]
        exact = [
            b for b in same_threads if (b["runtime"], b["kernel"]) == (record["runtime"], record["kernel"])
        ]
        candidates = exact or same_threads
        if candidates:
            record["ratio"] = record["median_ms"] / candidates[0]["median_ms"]
            record["baseline"] = config_label(candidates[0])


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


def runtime_label(record: dict[str, Any]) -> str:
    """``runtime[kernel, no-xnnpack]``: the runtime with its non-default flags."""
    runtime = record["runtime"]
    flags = []
    if record.get("kernel") not in (None, "default"):
        flags.append(record["kernel"])
    if record.get("xnnpack") is False:
        flags.append("no-xnnpack")
    if flags:
        runtime += f"[{', '.join(flags)}]"
    return runtime


def config_label(record: dict[str, Any]) -> str:
    """``model · runtime[flags] · Nt``: how warnings and plots name a configuration."""
    return f"{record['model_name']} · {runtime_label(record)} · {record['threads']}t"


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate(document: dict[str, Any]) -> None:
    """Raise BenchError if ``document`` does not follow runtime/schema.json."""
    import jsonschema

    try:
        jsonschema.validate(document, load_schema())
    except jsonschema.ValidationError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise BenchError(
            f"benchmark report does not follow runtime/schema.json at {where}: {error.message}"
        ) from None
