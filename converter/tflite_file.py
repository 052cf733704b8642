"""Read a .tflite flatbuffer without TensorFlow: operators, tensors, constant buffers.

Uses the flatbuffers schema code that ships with ``ai_edge_litert`` (no TensorFlow import), so the
runtime stage can reuse it for its cost model.

    >>> from converter.tflite_file import read_tflite
    >>> model = read_tflite(open("model.tflite", "rb").read())  # doctest: +SKIP
    >>> [op.name for op in model.operators][:3]  # doctest: +SKIP
    ['LceQuantize', 'LceBconv2d', 'MAX_POOL_2D']
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converter.errors import ConverterError

# TFLite TensorType enum -> numpy dtype (the ones a BNN uses).
DTYPES = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
}


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: type | None
    data: bytes | None  # constant contents, None for activations

    def array(self) -> np.ndarray | None:
        if self.data is None or self.dtype is None:
            return None
        return np.frombuffer(self.data, dtype=self.dtype).reshape(self.shape)


@dataclass
class OperatorInfo:
    name: str  # builtin name (CONV_2D) or custom code (LceBconv2d)
    custom: bool
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)  # decoded custom options (LCE ops use flexbuffers)


@dataclass
class TFLiteModel:
    size: int
    tensors: list[TensorInfo]
    operators: list[OperatorInfo]
    inputs: list[int]
    outputs: list[int]
    description: str = ""


def _schema():
    from ai_edge_litert import schema_py_generated  # flatbuffers code only, no TensorFlow

    return schema_py_generated


def builtin_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def load_bytes(source: bytes | str | os.PathLike, what: str = "TFLite model") -> tuple[bytes, str]:
    """The bytes of ``source`` (bytes or a path) and a label for messages."""
    if isinstance(source, bytes | bytearray):
        return bytes(source), f"{what} bytes"
    path = Path(source)
    try:
        return path.read_bytes(), str(path)
    except OSError as error:
        raise ConverterError(f"cannot read {what} {path}: {error.strerror or error}") from None


def read_tflite(source: bytes | str | os.PathLike) -> TFLiteModel:
    """Parse a .tflite file (bytes or path); ConverterError if it is not a valid flatbuffer."""
    data, label = load_bytes(source)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ConverterError(f"{label} is not a TFLite flatbuffer (no 'TFL3' identifier)")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        subgraph = model.subgraphs[0]
        names = builtin_names()
        codes = []
        for code in model.operatorCodes:
            if code.customCode:
                codes.append((code.customCode.decode(), True))
            else:
                codes.append((names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN"), False))
        tensors = []
        for index, tensor in enumerate(subgraph.tensors):
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            contents = None
            if buffer is not None and buffer.data is not None and len(buffer.data):
                contents = bytes(np.asarray(buffer.data, dtype=np.uint8))
            elif buffer is not None and buffer.size:  # large models keep buffers after the flatbuffer
                contents = data[buffer.offset : buffer.offset + buffer.size]
            shape = tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()
            tensors.append(
                TensorInfo(index, (tensor.name or b"").decode(), shape, DTYPES.get(tensor.type), contents)
            )
        operators = []
        for op in subgraph.operators:
            name, custom = codes[op.opcodeIndex]
            options = {}
            if custom and op.customOptions is not None and len(op.customOptions):
                options = _flexbuffer(bytes(np.asarray(op.customOptions, dtype=np.uint8)))
            operators.append(OperatorInfo(name, custom, list(op.inputs), list(op.outputs), options))
    except ConverterError:
        raise
    except Exception as error:  # truncated or corrupt flatbuffers raise struct/index errors
        raise ConverterError(f"{label} is a corrupt or truncated TFLite flatbuffer ({error})") from None
    description = (model.description or b"").decode(errors="replace")
    return TFLiteModel(
        len(data), tensors, operators, list(subgraph.inputs), list(subgraph.outputs), description
    )


def _flexbuffer(data: bytes) -> dict:
    from flatbuffers import flexbuffers

    try:
        decoded = flexbuffers.Loads(data)
    except Exception:  # options we cannot decode are not needed for the audit
        return {}
    return decoded if isinstance(decoded, dict) else {}
