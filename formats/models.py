"""Any model file edgebnn reads: its kind and its deploy metadata, whatever the format.

    >>> from formats.models import read_metadata
    >>> read_metadata(b"EBNN")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    formats.errors.FormatError: model bytes is not a valid .ebnn model: ...

The one dispatcher over the format modules (``formats.kinds`` sniffs, ``formats.metadata`` reads
ONNX ``metadata_props``, ``formats.tflite`` the ``edgebnn`` buffer, ``formats.ebnn`` the METADATA
section of a validated native model); each of them knows only its own format.
"""

from __future__ import annotations

import os
from pathlib import Path

from formats import ebnn, tflite
from formats.errors import FormatError
from formats.kinds import kind_of_bytes
from formats.metadata import DeployMetadata, read_onnx


def read_metadata(model: str | os.PathLike | bytes) -> DeployMetadata:
    """The deploy metadata of a model file or its bytes, whatever its kind (formats.kinds).

    ONNX: ``metadata_props`` (the weights are not loaded); .tflite: the ``edgebnn`` buffer; .ebnn:
    its METADATA section (the whole file is validated first). A model without metadata gives an
    empty ``DeployMetadata()``; a malformed one is a FormatError naming it.
    """
    if isinstance(model, bytes | bytearray):
        content, source = bytes(model), "model bytes"
    else:
        source = str(model)
        try:
            content = Path(model).read_bytes()
        except OSError as error:
            raise FormatError(f"cannot read {source}: {error.strerror or error}") from None
    kind = kind_of_bytes(content[:8])
    if kind == "tflite":
        return tflite.read_deploy_metadata(content, source)
    if kind == "onnx":
        import onnx

        try:
            proto = onnx.load_model_from_string(content)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise FormatError(f"{source} is not a valid ONNX model") from None
        return read_onnx(proto, source)
    if kind == "ebnn":
        return ebnn.read(content, source=source).deploy_metadata or DeployMetadata()
    raise FormatError(f"{source}: no deploy metadata reader for {kind or 'this kind of file'}")
