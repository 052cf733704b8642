"""The files of a run folder besides the checkpoints' payloads: the folder itself, ``metrics.jsonl``,
``curves.png``, the end-of-run test record in ``best.pt``/``last.pt``, and the line printed per epoch.

    >>> import pathlib, tempfile
    >>> from trainer.run_files import prepare_run_dir, summary_line
    >>> run = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> prepare_run_dir(run, resume=False)
    >>> run.is_dir()
    True
    >>> row = {"epoch": 1, "phase": "joint", "loss": 0.5, "ce": 0.5, "kd": 0.0, "aux": 0.0, "train_acc": 0.8,
    ...        "val_acc": 0.75, "flip_rate": 0.01, "lr": 1e-3, "images_per_s": 100.0, "epoch_time_s": 2.0}
    >>> summary_line(row, total_epochs=2)
    'epoch 1/2 joint: loss 0.5000 (ce 0.5000, aux 0) train 80.00% val 75.00% flips 1.000% lr 0.001 100 img/s 2.0 s'
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from formats.files import write_atomic
from trainer import checkpoint as ckpt_io
from trainer.curves import write_curves
from trainer.errors import TrainerError


@contextlib.contextmanager
def removed_if_left_empty(run_dir: str | os.PathLike) -> Iterator[None]:
    """Remove ``run_dir`` again when the body fails and leaves it empty, if it did not exist before
    (a run refused for bad data or options must not leave an empty run folder behind)."""
    run_dir = Path(run_dir)
    existed = run_dir.exists()
    try:
        yield
    except BaseException:
        if not existed and run_dir.is_dir() and not any(run_dir.iterdir()):
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        raise


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Create the run folder (the loop owns it) and check it can be written before any work."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise TrainerError(f"--out {run_dir}: not a writable folder ({error.strerror or error})") from None
    if not resume and (run_dir / "last.pt").exists():
        raise TrainerError(
            f"--out {run_dir} already holds a run (last.pt); continue it with --resume or choose another --out"
        )


def write_history(metrics_path: Path, curves_path: Path, history: list[dict]) -> None:
    """``metrics.jsonl`` (one row per epoch, rewritten from the in-memory history, so it always
    matches the checkpoint) and ``curves.png``."""
    rows = "".join(json.dumps(row, allow_nan=False) + "\n" for row in history)
    write_atomic(metrics_path, rows.encode())
    write_curves(curves_path, history)


def record_best_test(best_path: Path, last_path: Path, best: dict) -> None:
    """Write the test accuracy of the best-validation weights into ``best.pt`` and ``last.pt``.

    The test set is scored once per run, for the best checkpoint only: ``best.pt``'s ``metrics``
    get ``test_acc`` (what export records as the model's accuracy); ``last.pt`` keeps ``best`` (the
    loop state) and ``metrics["best_test_acc"]`` in step with it.
    """
    for path in (best_path, last_path):
        payload = ckpt_io.with_best_test(
            ckpt_io.load_checkpoint(path), best, best_checkpoint=path == best_path
        )
        ckpt_io.save_checkpoint(path, payload)


def summary_line(m: dict, total_epochs: int) -> str:
    """The one line printed per epoch (validation only: the test set is scored at the end)."""
    val = "-" if m["val_acc"] is None else f"{100 * m['val_acc']:.2f}%"
    kd = f", kd {m['kd']:.4f}" if m.get("kd") else ""
    return (
        f"epoch {m['epoch']}/{total_epochs} {m['phase']}: loss {m['loss']:.4f} "
        f"(ce {m['ce']:.4f}{kd}, aux {m['aux']:.4g}) train {100 * m['train_acc']:.2f}% val {val} "
        f"flips {100 * m['flip_rate']:.3f}% lr {m['lr']:.3g} "
        f"{m['images_per_s']:.0f} img/s {m['epoch_time_s']:.1f} s"
    )


def warmup_line(record: dict) -> str:
    """What the data-free mapping warm-up did, in one line."""
    lowest = min(record["agreement"].values(), default=1.0)
    return (
        f"mapping warm-up: {record['steps']} steps, {record['seconds']:.1f} s, lowest agreement "
        f"with sign(W) {100 * lowest:.2f}%"
        + ("" if record["reached"] else f" (target {100 * record['target']:.1f}% not reached)")
    )


def best_line(best: dict) -> str:
    """The best-validation epoch with its validation and (scored once) test accuracy."""
    return f"best epoch {best['epoch']}: val {percent(best['val_acc'])}, test {percent(best['test_acc'])}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
