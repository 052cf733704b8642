"""``curves.png`` of a run: loss, accuracy and flip rate per epoch, drawn from ``metrics.jsonl`` rows
(the per-epoch test accuracy is ``None`` since the test set scores only the best epoch: not drawn).

>>> import pathlib, tempfile
>>> from trainer.curves import write_curves
>>> row = {"epoch": 1, "phase": "joint", "ce": 0.9, "aux": 0.0, "train_acc": 0.6, "val_acc": None,
...        "test_acc": 0.7, "flip_rate": 0.01}
>>> path = pathlib.Path(tempfile.mkdtemp()) / "curves.png"
>>> write_curves(path, [row, {**row, "epoch": 2, "ce": 0.7}])
>>> path.read_bytes()[:4]
b'\\x89PNG'
"""

from __future__ import annotations

import io
import math
import os

from formats.files import write_atomic


def write_curves(path: str | os.PathLike, history: list[dict]) -> None:
    """Loss, accuracy and flip rate per epoch as one PNG (matplotlib, Agg backend), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure, (loss_ax, acc_ax, flip_ax) = plt.subplots(1, 3, figsize=(13, 3.6))
    loss_ax.plot(epochs, [row["ce"] for row in history], marker=".", label="cross-entropy")
    if any(row.get("kd") for row in history):  # with a teacher: the distillation term
        loss_ax.plot(epochs, [row.get("kd", 0.0) for row in history], marker=".", label="distillation (KL)")
    loss_ax.set_title("training loss")
    if any(row["aux"] for row in history):  # LNS: its summed aux loss has another scale, own axis
        aux_ax = loss_ax.twinx()
        aux_ax.plot(epochs, [row["aux"] for row in history], marker=".", ls="--", color="tab:green")
        aux_ax.set_ylabel("LNS aux loss (dashed)", color="tab:green")
    for key, label in (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")):
        values = [row[key] for row in history]
        if any(v is not None for v in values):
            acc_ax.plot(epochs, [math.nan if v is None else 100 * v for v in values], marker=".", label=label)
    acc_ax.set_title("top-1 accuracy (%)")
    flip_ax.plot(epochs, [100 * row["flip_rate"] for row in history], marker=".", color="tab:red")
    flip_ax.set_title("binary weights flipped per epoch (%)")
    warmup_end = max((row["epoch"] for row in history if row["phase"] == "warmup"), default=0)
    for axis in (loss_ax, acc_ax, flip_ax):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if warmup_end:
            axis.axvspan(0.5, warmup_end + 0.5, color="grey", alpha=0.12, label="mapping warm-up")
    loss_ax.legend(fontsize=8)
    acc_ax.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())
