"""The one .tflite reader (and metadata writer), without TensorFlow: operators, tensors, buffers.

It uses the flatbuffers code generated from the TFLite schema that ships with ``ai_edge_litert``
(``schema_py_generated``, imported on first use; no TensorFlow, no interpreter). A device that has
a TFLite runtime without that package raises ImportError here; ``runtime.engines`` then falls back
to looking for the LCE op names in the bytes.

    >>> import flatbuffers
    >>> from formats.tflite import custom_ops, metadata_buffers, read_tflite, schema, with_metadata
    >>> model = schema().ModelT()                 # the smallest valid model: no ops, no tensors
    >>> model.version, model.buffers, model.subgraphs = 3, [schema().BufferT()], [schema().SubGraphT()]
    >>> builder = flatbuffers.Builder(0)
    >>> _ = builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    >>> empty = bytes(builder.Output())
    >>> custom_ops(empty), read_tflite(empty).operators
    ([], [])
    >>> tagged = with_metadata(empty, "edgebnn", b'{"accuracy": 0.9}')
    >>> metadata_buffers(tagged)
    {'edgebnn': b'{"accuracy": 0.9}'}

``read_tflite`` unpacks the whole model (the audit, the cost model); ``custom_ops`` and
``metadata_buffers`` read only what they need (the benchmark worker, the deploy metadata).
``with_metadata`` re-packs the model with one named metadata buffer added or replaced; every byte
vector is aligned to 16 bytes, as the schema asks of ``Buffer.data`` (``force_align: 16``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from formats.errors import FormatError
from formats.metadata import TFLITE_BUFFER_NAME, DeployMetadata

IDENTIFIER = b"TFL3"  # the flatbuffer file identifier of the TFLite schema, bytes 4..8
BUFFER_ALIGNMENT = 16

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
    builtin_options: dict = field(default_factory=dict)  # a builtin op's options (camelCase fields)


@dataclass
class TFLiteModel:
    size: int
    tensors: list[TensorInfo]
    operators: list[OperatorInfo]
    inputs: list[int]
    outputs: list[int]
    description: str = ""


def schema():
    """The generated TFLite schema module; ImportError where ``ai_edge_litert`` is not installed."""
    from ai_edge_litert import schema_py_generated  # flatbuffers code only, no TensorFlow

    return schema_py_generated


def builtin_names() -> dict[int, str]:
    return {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}


def load_bytes(source: bytes | str | os.PathLike, what: str = "TFLite model") -> tuple[bytes, str]:
    """The bytes of ``source`` (bytes or a path) and a label for messages."""
    if isinstance(source, bytes | bytearray):
        return bytes(source), f"{what} bytes"
    path = Path(source)
    try:
        return path.read_bytes(), str(path)
    except OSError as error:
        raise FormatError(f"cannot read {what} {path}: {error.strerror or error}") from None


def _check_identifier(data: bytes, label: str) -> None:
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise FormatError(f"{label} is not a TFLite flatbuffer (no 'TFL3' identifier)")


def _corrupt(label: str, error: Exception | None = None) -> FormatError:
    reason = f" ({error})" if error is not None else ""
    return FormatError(f"{label} is a corrupt or truncated TFLite flatbuffer{reason}")


def read_tflite(source: bytes | str | os.PathLike, label: str | None = None) -> TFLiteModel:
    """Parse a .tflite file (bytes or path); FormatError if it is not a valid flatbuffer.

    ``label`` names the file in messages when ``source`` holds its bytes (default: the path)."""
    data, default_label = load_bytes(source)
    label = label or default_label
    _check_identifier(data, label)
    try:
        model = schema().ModelT.InitFromPackedBuf(data, 0)
        subgraph = model.subgraphs[0]
        names = builtin_names()
        codes = []
        for code in model.operatorCodes or []:
            if code.customCode:
                codes.append((code.customCode.decode(), True))
            else:
                codes.append((names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN"), False))
        tensors = []
        for index, tensor in enumerate(subgraph.tensors or []):
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
        for op in subgraph.operators or []:
            referenced = [
                *(op.inputs if op.inputs is not None else []),
                *(op.outputs if op.outputs is not None else []),
            ]
            if any(not -1 <= int(index) < len(tensors) for index in referenced):
                raise _corrupt(label, IndexError("an operator names a tensor that does not exist"))
            if not 0 <= op.opcodeIndex < len(codes):
                raise _corrupt(label, IndexError("an operator names an operator code that does not exist"))
            name, custom = codes[op.opcodeIndex]
            options = {}
            if custom and op.customOptions is not None and len(op.customOptions):
                options = _flexbuffer(bytes(np.asarray(op.customOptions, dtype=np.uint8)))
            builtin = vars(op.builtinOptions) if op.builtinOptions is not None else {}
            operators.append(
                OperatorInfo(name, custom, list(op.inputs), list(op.outputs), options, dict(builtin))
            )
        inputs = list(subgraph.inputs) if subgraph.inputs is not None else []
        outputs = list(subgraph.outputs) if subgraph.outputs is not None else []
        if any(not 0 <= int(index) < len(tensors) for index in inputs + outputs):
            raise _corrupt(label, IndexError("a model input or output names a tensor that does not exist"))
    except (ImportError, FormatError):
        raise
    except Exception as error:  # truncated or corrupt flatbuffers raise struct/index errors
        raise _corrupt(label, error) from None
    description = (model.description or b"").decode(errors="replace")
    return TFLiteModel(len(data), tensors, operators, inputs, outputs, description)


def _flexbuffer(data: bytes) -> dict:
    from flatbuffers import flexbuffers

    try:
        decoded = flexbuffers.Loads(data)
    except Exception:  # options we cannot decode are not needed for the audit
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _root(data: bytes, label: str):
    """The lazily read ``Model`` table, after the checks that catch a truncated file early."""
    _check_identifier(data, label)
    if not 8 <= int.from_bytes(data[0:4], "little") < len(data):
        raise _corrupt(label)
    return schema().Model.GetRootAs(data, 0)


def _vector_length(length: int, data: bytes, label: str) -> int:
    if length > len(data) // 4:  # every entry of a vector of tables is a 4-byte offset
        raise _corrupt(label)
    return length


def custom_ops(data: bytes, label: str = "TFLite model") -> list[str]:
    """Names of the custom operators a .tflite model uses (``Model.operator_codes[].custom_code``)."""
    model = _root(data, label)
    try:
        codes = (
            model.OperatorCodes(i) for i in range(_vector_length(model.OperatorCodesLength(), data, label))
        )
        return [code.CustomCode().decode("utf-8", "replace") for code in codes if code.CustomCode()]
    except FormatError:
        raise
    except Exception as error:  # noqa: BLE001 - any decoding failure means a corrupt file
        raise _corrupt(label, error) from None


def metadata_buffers(data: bytes, label: str = "TFLite model") -> dict[str, bytes]:
    """The named metadata entries of a .tflite model: ``Model.metadata[].name`` -> its buffer's bytes."""
    model = _root(data, label)
    entries: dict[str, bytes] = {}
    try:
        buffers = _vector_length(model.BuffersLength(), data, label)
        for i in range(_vector_length(model.MetadataLength(), data, label)):
            entry = model.Metadata(i)
            index = entry.Buffer()
            if index >= buffers:
                raise _corrupt(label)
            buffer = model.Buffers(index)
            if buffer.Offset() > 1:  # stored after the flatbuffer (models over 2 GB)
                content = data[buffer.Offset() : buffer.Offset() + buffer.Size()]
            else:
                content = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
            entries[(entry.Name() or b"").decode("utf-8", "replace")] = content
    except FormatError:
        raise
    except Exception as error:  # noqa: BLE001
        raise _corrupt(label, error) from None
    return entries


def _aligned_builder(size: int):
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):
        """Aligns every byte vector to ``BUFFER_ALIGNMENT`` (the schema's ``force_align`` on Buffer.data)."""

        def StartVector(self, elemSize, numElems, alignment):  # noqa: N802, N803 - flatbuffers' names
            if elemSize == 1:
                alignment = max(alignment, BUFFER_ALIGNMENT)
            return super().StartVector(elemSize, numElems, alignment)

    return AlignedBuilder(size)


def with_metadata(data: bytes, name: str, content: bytes, label: str = "TFLite model") -> bytes:
    """``data`` re-packed with the metadata entry ``name`` holding ``content`` (added, or replaced).

    The graph, its tensors and their buffers are copied unchanged (the converter's tests check that
    the rewritten model computes the same outputs).
    """
    _check_identifier(data, label)
    module = schema()
    try:
        model = module.ModelT.InitFromPackedBuf(data, 0)
    except Exception as error:  # noqa: BLE001
        raise _corrupt(label, error) from None
    if any(buffer.offset > 1 for buffer in model.buffers or []):
        raise FormatError(
            f"{label} keeps its buffers outside the flatbuffer (over 2 GB): cannot add metadata"
        )
    buffer = module.BufferT()
    buffer.data = np.frombuffer(bytes(content), dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    entries = list(model.metadata or [])
    existing = [entry for entry in entries if (entry.name or b"").decode("utf-8", "replace") == name]
    if existing:
        model.buffers[existing[0].buffer] = buffer
    else:
        entry = module.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers)
        model.buffers.append(buffer)
        entries.append(entry)
    model.metadata = entries
    builder = _aligned_builder(len(data) + len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


# --- deploy metadata (the ``edgebnn`` buffer, formats/metadata.py) -------------------------------


def read_deploy_metadata(flatbuffer: bytes, source: str = "TFLite model") -> DeployMetadata:
    """The deploy metadata of a .tflite flatbuffer (its ``edgebnn`` buffer; empty when it has none)."""
    content = metadata_buffers(flatbuffer, source).get(TFLITE_BUFFER_NAME)
    return DeployMetadata.from_json(content, source) if content is not None else DeployMetadata()


def write_deploy_metadata(flatbuffer: bytes, meta: DeployMetadata, source: str = "TFLite model") -> bytes:
    """``flatbuffer`` with ``meta`` as its ``edgebnn`` metadata buffer (an earlier one is replaced)."""
    return with_metadata(flatbuffer, TFLITE_BUFFER_NAME, meta.to_json(), source)
