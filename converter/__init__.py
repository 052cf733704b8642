"""Conversion of binary networks: ONNX -> Larq Compute Engine / TFLite / native .ebnn bytes, audit, embedding.

    >>> import converter
    >>> flatbuffer = converter.convert("model.onnx", input_shape=(1, 28, 28))  # doctest: +SKIP
    >>> print(converter.audit(flatbuffer).headline)  # doctest: +SKIP
    >>> ebnn = converter.convert("model.onnx", target="native")  # no TensorFlow  # doctest: +SKIP

The names below are imported on first use so that ``import converter`` stays cheap. Checking a
converted model against its source runs models, so it is the runtime's: ``runtime.verify.verify``.
The converter imports ``formats`` only (never the trainer or the runtime).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "convert": "converter.conversion",
    "convert_with_report": "converter.conversion",
    "audit": "converter.audit",
    "summarize_onnx": "converter.audit",
    "embed_c": "converter.embed",
    "lower_native": "converter.native",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'converter' has no attribute {name!r}")
