"""What kind of model file this is, judged from its first bytes: the one place that sniffs files.

    >>> from formats.kinds import kind_of_bytes
    >>> kind_of_bytes(b"\\x1c\\x00\\x00\\x00TFL3....")
    'tflite'
    >>> kind_of_bytes(b"EBNN\\x01\\x00\\x00\\x00")
    'ebnn'
    >>> kind_of_bytes(b"PK\\x03\\x04....")
    'checkpoint'

=============  =====================================================================
``tflite``     a TFLite flatbuffer: file identifier ``TFL3`` at bytes 4..8
``ebnn``       an edgebnn native model: magic ``EBNN`` at byte 0 (docs/native-format.md)
``checkpoint`` a ``torch.save`` zip archive (``PK\\x03\\x04``)
``onnx``       an ONNX ModelProto: field 1 (ir_version, a varint) first, tag byte ``0x08``
=============  =====================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

from formats.errors import FormatError

TFLITE_IDENTIFIER = b"TFL3"
EBNN_MAGIC = b"EBNN"
ZIP_MAGIC = b"PK\x03\x04"
KINDS = ("tflite", "ebnn", "checkpoint", "onnx")
DESCRIPTIONS = {
    "tflite": "a .tflite model",
    "ebnn": "a native .ebnn model",
    "checkpoint": "an edgebnn checkpoint (.pt)",
    "onnx": "an ONNX model",
}
HEAD_BYTES = 8


def kind_of_bytes(head: bytes) -> str | None:
    """The kind of a file from its first ``HEAD_BYTES`` bytes, or None when it is none of ``KINDS``."""
    if head[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    if head[:4] == EBNN_MAGIC:
        return "ebnn"
    if head[:4] == ZIP_MAGIC:
        return "checkpoint"
    if head[:1] == b"\x08":
        return "onnx"
    return None


def kind_of_file(path: str | os.PathLike, allowed: tuple[str, ...] = KINDS) -> str:
    """The kind of the model file at ``path``; FormatError naming it when missing or not ``allowed``."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path} does not exist or is not a file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as error:
        raise FormatError(f"cannot read {path}: {error.strerror or error}") from None
    kind = kind_of_bytes(head)
    if kind not in allowed:
        expected = " or ".join(DESCRIPTIONS[k] for k in allowed)
        found = "an empty file" if not head else DESCRIPTIONS[kind] if kind else "not a model file"
        raise FormatError(f"{path} is {found}; expected {expected}")
    return kind
