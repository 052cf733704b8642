"""The pipeline's ``report.md``: every number in it is read from the artifacts the stages wrote.

Sources: each training run's ``metrics.jsonl``, the stage summaries (conversion audit, verification
on the test set) and ``bench.json`` (runtime/schema.json). Plots: ``training.png`` (curves of the
three training runs) and ``tradeoff.png`` (accuracy, latency and size of each deployable file).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import platform
from pathlib import Path
from typing import Any

from formats.files import write_atomic
from trainer.paired_stats import paired_difference

RUN_LABELS = {"baseline": "baseline BNN", "finetune": "plain fine-tuning (control)", "lns": "LNS fine-tuning"}


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _save_figure(figure: Any, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_atomic(path, buffer.getvalue())


def plot_training(histories: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Validation accuracy and flip rate per epoch; fine-tuning epochs continue after the baseline's.

    The test set is scored once per run, for the best-validation checkpoint (the report's table), so
    the per-epoch curve is validation accuracy.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (accuracy_axis, flip_axis) = plt.subplots(1, 2, figsize=(11, 4))
    offset = len(histories.get("baseline", []))
    for name, history in histories.items():
        if not history:
            continue
        start = 0 if name == "baseline" else offset
        epochs = [start + row["epoch"] for row in history]
        accuracy = [
            (e, 100 * row["val_acc"])
            for e, row in zip(epochs, history, strict=True)
            if row.get("val_acc") is not None
        ]
        if accuracy:
            accuracy_axis.plot(*zip(*accuracy, strict=True), marker="o", label=RUN_LABELS[name])
        flips = [
            (e, 100 * row["flip_rate"])
            for e, row in zip(epochs, history, strict=True)
            if row.get("flip_rate") is not None
        ]
        if flips:
            flip_axis.plot(*zip(*flips, strict=True), marker="o", label=RUN_LABELS[name])
    accuracy_axis.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy per epoch")
    flip_axis.set(
        xlabel="epoch", ylabel="binary weights flipped (%)", title="flip rate per epoch", yscale="log"
    )
    for axis in (accuracy_axis, flip_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)


def plot_tradeoff(rows: list[dict[str, Any]], latencies: dict[str, float], path: Path) -> None:
    """Three panels side by side: test accuracy and file size per file, median latency per runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    labels = [row["label"] for row in rows]
    panels = (
        ("test accuracy (%)", labels, [100 * (row["accuracy"] or 0) for row in rows], "{:.2f}"),
        ("median latency, 1 thread, this host (ms)", list(latencies), list(latencies.values()), "{:.3f}"),
        ("file size (KB)", labels, [row["bytes"] / 1024 for row in rows], "{:.0f}"),
    )
    for axis, (title, names, values, fmt) in zip(axes, panels, strict=True):
        bars = axis.bar(names, values, color=[f"C{index}" for index in range(len(values))])
        axis.set_title(title, fontsize=10, pad=12)
        axis.tick_params(axis="x", labelsize=8, rotation=15)
        for bar, value in zip(bars, values, strict=True):
            axis.annotate(fmt.format(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=8)  # fmt: skip
    axes[0].set_ylim(max(0, min(panels[0][2], default=0) - 5), 101)
    figure.tight_layout()
    _save_figure(figure, path)
    plt.close(figure)


def _bench_rows(bench: dict[str, Any]) -> list[str]:
    lines = [
        "| model file | runtime | threads | median ms | p90 ms | min ms | CV | peak RSS MB | x first |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in bench["results"]:
        runtime = r["runtime"] + (f" ({r['kernel']})" if r.get("kernel") else "")
        if r["status"] != "ok":
            lines.append(
                f"| {Path(r['model']).name} | {runtime} | {r['threads']} | {r['status']}: {r['error']} |||||"
            )
            continue
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        lines.append(
            f"| {Path(r['model']).name} | {runtime} | {r['threads']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | "
            f"{r['min_ms']:.3f} | {100 * r['cv']:.1f}% | {r['peak_rss_mb']:.1f} | {ratio} |"
        )
    return lines


def native_speedups(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """Per thread count: the native engine's median beside LCE's fastest kernel, LiteRT (the float
    twin) and ONNX Runtime, and how many times faster native is than each (their median / native's).
    Each other runtime counts with its fastest configuration at this thread count or fewer (LCE's
    binary kernels use one thread: a second one only adds contention), so the ratios are conservative."""
    ok = [r for r in bench["results"] if r["status"] == "ok" and r.get("median_ms")]
    rows = []
    for threads in sorted({r["threads"] for r in ok}):
        at = [r for r in ok if r["threads"] <= threads]
        native = [r for r in ok if r["runtime"] == "native" and r["threads"] == threads]
        if not native:
            continue
        best = {}
        for runtime in ("lce", "litert", "onnxruntime"):
            candidates = [r for r in at if r["runtime"] == runtime]
            if candidates:
                best[runtime] = min(candidates, key=lambda r: r["median_ms"])
        mine = min(native, key=lambda r: r["median_ms"])
        row = {"threads": threads, "native_ms": mine["median_ms"], "native_kernel": mine.get("kernel")}
        for runtime, record in best.items():
            row[f"{runtime}_ms"] = record["median_ms"]
            row[f"x_{runtime}"] = record["median_ms"] / mine["median_ms"]
            if runtime == "lce":
                row["lce_kernel"] = record.get("kernel")
        rows.append(row)
    return rows


def _native_rows(bench: dict[str, Any]) -> list[str]:
    rows = native_speedups(bench)
    if not rows:
        return []

    def cell(row: dict[str, Any], runtime: str) -> str:
        if f"{runtime}_ms" not in row:
            return "- | -"
        return f"{row[f'{runtime}_ms']:.3f} | {row[f'x_{runtime}']:.2f}x"

    lines = [
        "### The native engine against LCE and the float model",
        "",
        "edgebnn's own runtime (`runtime/native`) on the `.ebnn` file: its median beside LCE's fastest "
        "kernel on the same network, the float twin in LiteRT and the ONNX model in ONNX Runtime, each "
        "at its fastest with this many threads or fewer. `x` = their median / native's (above 1: native "
        "is faster).",
        "",
        "| threads | native ms (kernel) | LCE fastest ms | x LCE | LiteRT float ms | x LiteRT | ONNX Runtime ms | x ORT |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['threads']} | {row['native_ms']:.3f} ({row['native_kernel']}) | {cell(row, 'lce')} | "
            f"{cell(row, 'litert')} | {cell(row, 'onnxruntime')} |"
        )
    return [*lines, ""]


def _warmup_text(config: Any, lns: dict[str, Any]) -> str:
    """How LNS's mapping networks were warmed up, as measured when the record is there."""
    parts = []
    record = lns.get("mapping_warmup")
    if record:
        lowest = min(record["agreement"].values(), default=1.0)
        parts.append(
            f"data-free mapping warm-up: {record['steps']} steps, {record['seconds']:.1f} s, lowest "
            f"per-layer agreement with sign(W) {100 * lowest:.2f}%"
        )
    if config.finetune.warmup_mapping_epochs:
        parts.append(f"{config.finetune.warmup_mapping_epochs} mapping-only epochs on data")
    return " + ".join(parts) or "no mapping warm-up"


def _paired_lines(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """The paired LNS - plain fine-tuning test-accuracy difference and what one seed can say."""
    lns, control = summaries.get("lns", {}), summaries.get("finetune", {})
    if lns.get("test_acc") is None or control.get("test_acc") is None:
        return ["No control run (control = false): no paired LNS-versus-fine-tuning difference."]
    difference = paired_difference([100 * lns["test_acc"]], [100 * control["test_acc"]])
    return [
        f"**Paired difference, LNS minus plain fine-tuning (test accuracy, same seed): "
        f"{difference.mean:+.2f} points.** What this can say: "
        f"{difference.note}. For scale: the multi-seed study (`benchmarks/lns_fmnist.py`, README; "
        "a reduced budget) measured +0.32 points (per-seed std 0.12, 95% interval +0.04 to +0.61) "
        "at alpha 1, rho 0.005.",
    ]


def write_report(config: Any, out: Path, summaries: dict[str, dict[str, Any]]) -> Path:
    """Write ``out/report.md`` (+ plots) from the stage summaries and artifacts; returns its path."""
    histories = {
        name: _history(out / name) for name in ("baseline", "lns", "finetune") if (out / name).exists()
    }
    plot_training(histories, out / "training.png")
    bench = json.loads((out / "bench.json").read_text())
    verify = summaries["verify"]
    convert = summaries["convert"]
    onnx_name = f"{config.model}.onnx"
    files = [
        ("LCE (bit-packed)", f"{config.model}-lce.tflite", "lce"),
        ("float TFLite", f"{config.model}-float.tflite", "tflite"),
        ("ONNX", onnx_name, None),
        ("native (.ebnn)", f"{config.model}.ebnn", "native"),
    ]
    files = [f for f in files if (out / f[1]).exists()]

    deploy_rows = []
    for label, name, target in files:
        accuracy = verify["onnx"]["accuracy"] if target is None else verify[name]["accuracy"]
        size = (out / name).stat().st_size
        deploy_rows.append(
            {"label": label, "name": name, "bytes": size, "accuracy": accuracy, "target": target}
        )
    latencies = {
        r["runtime"] + (f" ({r['kernel']})" if r.get("kernel") else ""): r["median_ms"]
        for r in bench["results"]
        if r["threads"] == 1 and r["status"] == "ok"
    }
    plot_tradeoff(deploy_rows, latencies, out / "tradeoff.png")

    system = bench["system"]
    lines = [
        f"# edgebnn report: {config.model} on {config.data}",
        "",
        f"Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by `edgebnn pipeline` "
        f"on {system.get('cpu_model', platform.processor())} ({system.get('cores')} cores, {platform.system()}). "
        "Every figure below was measured in this run; rerun `make demo` (or `edgebnn pipeline`) to reproduce it.",
        "",
        "## Training",
        "",
        f"W1/A1 `{config.model}` (first conv and classifier in full precision), seed {config.seed}. "
        f"Baseline: {config.baseline.epochs} epochs, {config.baseline.optimizer}, lr {config.baseline.lr}. "
        f"Fine-tuning from the baseline's best checkpoint: LNS with alpha={config.alpha}, rho={config.rho} "
        f"({_warmup_text(config, summaries.get('lns', {}))}, then {config.finetune.epochs} joint epochs at "
        f"lr {config.finetune.lr}) versus plain fine-tuning with the same joint epochs, schedule, seed and "
        "data order.",
        "",
        "| run | binarizer | epochs | best epoch | val acc | test acc (best val) | last flip rate | train time |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, history in histories.items():
        stage = summaries.get(name, {})
        last_flip = history[-1].get("flip_rate") if history else None
        binarizer = "lns" if name == "lns" else "ste"
        lines.append(
            f"| {RUN_LABELS[name]} | {binarizer} | {len(history)} | {stage.get('best_epoch', '-')} | "
            f"{_pct(stage.get('best_val_acc'))} | {_pct(stage.get('test_acc'))} | "
            f"{'-' if last_flip is None else f'{100 * last_flip:.3f}%'} | {stage.get('seconds', 0):.0f} s |"
        )
    lines += ["", *_paired_lines(summaries), ""]
    lines += [
        "![training curves](training.png)",
        "",
        f"## Deployment ({verify['samples']} test images, deployed run: {config.deploy})",
        "",
        "| file | size KB | test accuracy | top-1 agreement with ONNX Runtime | max abs diff | ops |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in deploy_rows:
        name = row["name"]
        if row["target"] is None:
            lines.append(
                f"| {name} | {row['bytes'] / 1024:.1f} | {_pct(row['accuracy'])} | reference | - | ONNX |"
            )
            continue
        check = verify[name]
        ops = ", ".join(f"{op} x{count}" for op, count in convert[row["target"]]["ops"].items())
        lines.append(
            f"| {name} | {row['bytes'] / 1024:.1f} | {_pct(row['accuracy'])} | {_pct(check['agreement'])} | "
            f"{check['max_abs_diff']:.2e} | {ops} |"
        )
    lce_bytes, float_bytes = deploy_rows[0]["bytes"], deploy_rows[1]["bytes"]
    audit_line = f"Audit: {convert['lce']['headline']}"
    if "native" in convert:
        audit_line += f"; {convert['native']['headline']} in the native .ebnn"
    lines += [
        "",
        f"{audit_line}. The LCE file is {float_bytes / lce_bytes:.1f}x smaller than "
        "the float TFLite file of the same network.",
        "",
        "## Latency and memory on this host",
        "",
        "Each configuration ran in a fresh worker process, the files interleaved in rounds; `x first` is "
        "the ratio of the median to the first file's at the same thread count. LCE has no optimised "
        "binary kernels for x86: these figures say nothing about ARM speed (see `edgebnn estimate` and "
        "`edgebnn bench --device` for a Raspberry Pi).",
        "",
        *_bench_rows(bench),
        "",
        *_native_rows(bench),
        "![latency](bench.png)",
        "",
        "![accuracy, latency and size](tradeoff.png)",
        "",
    ]
    report_path = out / "report.md"
    write_atomic(report_path, "\n".join(lines).encode())
    return report_path
