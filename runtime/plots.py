"""PNG charts of benchmark results (matplotlib, Agg backend: no display needed).

Left: the latency of every configuration as a box (25-75 %, whiskers 5-95 %) over all timed runs.
Right, when some models carry an accuracy (their deploy metadata, or the ``accuracy`` given to the
benchmark): accuracy versus median latency, marker area proportional to the model file size, like
the larq-zoo chart.

    >>> import tempfile, pathlib
    >>> from runtime.plots import plot_results
    >>> from runtime.record import merge_rounds, new_record
    >>> bnn = merge_rounds([new_record("bnn.tflite", "lce", 1, "default", True, 4, 1)
    ...                     | {"status": "ok", "latencies_ms": [1.0, 1.2, 1.1, 1.3]}])
    >>> system = {"cpu_model": "any", "architecture": "x86_64", "device": "host"}
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "bench.png"
    >>> plot_results(system, [bnn], path)
    >>> path.read_bytes()[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

from formats.files import write_atomic
from runtime.record import config_label, runtime_label


def plot_results(
    system: Mapping[str, Any], results: Sequence[dict[str, Any]], path: str | os.PathLike
) -> None:
    """Write the charts of ``results`` (records of ``runtime/record.py``) measured on ``system``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in results if r["status"] == "ok" and r.get("latencies_ms")]
    with_accuracy = [r for r in measured if r.get("accuracy") is not None]
    columns = 2 if with_accuracy else 1
    height = max(2.5, 0.45 * len(measured) + 1.5)
    fig, axes = plt.subplots(1, columns, figsize=(7 * columns, height), squeeze=False)
    try:
        _latency_boxes(axes[0][0], measured)
        if with_accuracy:
            _accuracy_vs_latency(axes[0][1], with_accuracy)
        title = f"{system.get('device', 'host')}: {system['cpu_model']} ({system['architecture']})"
        if system.get("emulated"):
            title += " - EMULATED"
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    write_atomic(path, buffer.getvalue())


def _latency_boxes(ax, records: list[dict]) -> None:
    if not records:
        ax.text(0.5, 0.5, "no successful measurement", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    records = records[::-1]  # first configuration on top
    ax.boxplot(
        [r["latencies_ms"] for r in records],
        orientation="horizontal",
        whis=(5, 95),
        showfliers=False,
        tick_labels=[config_label(r) for r in records],
        medianprops={"color": "tab:red"},
    )
    ax.set_xlabel("latency per inference (ms), box 25-75 %, whiskers 5-95 %")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)


def _accuracy_vs_latency(ax, records: list[dict]) -> None:
    """One point per model: its fastest measured configuration."""
    fastest: dict[str, dict] = {}
    for r in records:
        if r["model"] not in fastest or r["median_ms"] < fastest[r["model"]]["median_ms"]:
            fastest[r["model"]] = r
    points = list(fastest.values())
    largest = max(r["model_size_bytes"] or 0 for r in points) or 1
    area = [40 + 800 * (r["model_size_bytes"] or 0) / largest for r in points]  # marker area ~ model size
    ax.scatter([r["median_ms"] for r in points], [100 * r["accuracy"] for r in points], s=area, alpha=0.6,
               edgecolors="k")  # fmt: skip
    for r in points:
        ax.annotate(
            f"{r['model_name']}\n{runtime_label(r)}, {r['threads']}t, {r['model_size_bytes'] / 1024:.0f} KB",
            (r["median_ms"], 100 * r["accuracy"]),
            fontsize=7,
            xytext=(8, 8),
            textcoords="offset points",
        )
    ax.set_xlabel("median latency (ms), fastest configuration of each model")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title("accuracy vs latency (marker area ~ model size)", fontsize=9)
    ax.margins(y=0.25)
    ax.set_xlim(0, 1.4 * max(r["median_ms"] for r in points))  # room for the labels on the right
    ax.grid(alpha=0.3)
