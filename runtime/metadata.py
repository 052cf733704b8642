"""What a model says about itself: test accuracy for the accuracy-vs-latency chart.

Looked up, first hit wins:

1. ONNX ``metadata_props["edgebnn.accuracy"]`` (written by ``trainer/export.py``);
2. a .tflite metadata buffer named ``edgebnn.accuracy`` (a number as text), or ``edgebnn`` (a JSON
   object with ``"accuracy"``);
3. a sidecar JSON next to the model, ``<stem>.json``, with ``"accuracy"`` or ``"edgebnn.accuracy"``
   (so ``fmnist-bnn.tflite`` and ``fmnist-bnn.onnx`` share ``fmnist-bnn.json``).

    >>> from runtime.metadata import model_accuracy
    >>> model_accuracy("runs/fmnist-bnn.onnx")
    0.915
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime import engines


def _as_accuracy(value: object) -> float | None:
    try:
        accuracy = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return accuracy if 0.0 <= accuracy <= 1.0 else None


def onnx_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file (weights are not loaded)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - metadata is optional; a bad file is reported by the worker
        return {}
    return {prop.key: prop.value for prop in model.metadata_props}


def _from_tflite(content: bytes) -> float | None:
    try:
        entries = engines.tflite_metadata(content)
    except engines.BenchError:
        return None
    if "edgebnn.accuracy" in entries:
        return _as_accuracy(entries["edgebnn.accuracy"].rstrip(b"\0").decode("utf-8", "replace"))
    if "edgebnn" in entries:
        try:
            return _as_accuracy(json.loads(entries["edgebnn"].rstrip(b"\0")).get("accuracy"))
        except (ValueError, AttributeError):
            return None
    return None


def _from_sidecar(path: Path) -> float | None:
    sidecar = path.with_suffix(".json")
    if sidecar == path or not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return _as_accuracy(data.get("accuracy", data.get("edgebnn.accuracy")))


def model_accuracy(model: str | Path) -> float | None:
    """Test top-1 accuracy in [0, 1] recorded for a model, or None."""
    path = Path(model)
    if not path.is_file():
        return None
    content = path.read_bytes()
    accuracy = None
    if content[4:8] == engines.TFLITE_IDENTIFIER:
        accuracy = _from_tflite(content)
    elif path.suffix == ".onnx":
        accuracy = _as_accuracy(onnx_metadata(path).get("edgebnn.accuracy"))
    return accuracy if accuracy is not None else _from_sidecar(path)
