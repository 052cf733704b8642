"""The native model file (``.ebnn``): a builder that writes it and a reader that validates it.

The byte layout, the op set and every rule are in docs/native-format.md; producers (the ONNX
converter, the LCE ``.tflite`` translation) use only this module's API. Pure numpy + stdlib.

    >>> import numpy as np
    >>> from formats.ebnn import ModelBuilder, read
    >>> builder = ModelBuilder()
    >>> x = builder.add_input((1, 6, 6, 40), name="input")
    >>> bits = builder.add_op("QUANTIZE", [x], name="binarize")
    >>> signs = np.where(np.random.default_rng(0).standard_normal((8, 3, 3, 40)) >= 0, 1.0, -1.0)
    >>> filt = builder.add_constant(signs, dtype="bits", name="conv.filter")
    >>> y = builder.add_op("BCONV2D", [bits, filt], pad_top=1, pad_bottom=1, pad_left=1, pad_right=1,
    ...                    clamp_min=0, name="conv")
    >>> builder.set_outputs([y])
    >>> info = read(builder.to_bytes())
    >>> [op.op for op in info.ops], info.tensors[y.index].shape
    (['QUANTIZE', 'BCONV2D'], (1, 6, 6, 8))
    >>> info.ops[1].params["clamp_min"], info.ops[1].params["stride_h"]   # defaults filled in
    (0, 1)
    >>> np.array_equal(unpack_bits(info.tensors[filt.index].data, 40), signs)
    True
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from formats.errors import FormatError
from formats.metadata import DeployMetadata

MAGIC = b"EBNN"
VERSION = (1, 0)
HEADER_SIZE = 64
SECTION_ENTRY_SIZE = 32
TENSOR_RECORD_SIZE = 48
OP_HEADER_SIZE = 16
PARAM_SIZE = 8
DATA_ALIGNMENT = 64
CHECKSUM_OFFSET = 24
ABSENT = 0xFFFFFFFF
MAX_RANK = 4
MAX_ELEMENTS = 2**31 - 1
MAX_TENSORS = 1 << 20
MAX_OPS = 1 << 20
MAX_GRAPH_IO = 16
MAX_SECTIONS = 64
MAX_PARAMS = 64
MAX_INPUTS = 64

SECTIONS = {"TENSORS": 1, "OPS": 2, "GRAPH": 3, "DATA": 4, "METADATA": 5, "STRINGS": 6}
SECTION_NAMES = {code: name for name, code in SECTIONS.items()}
DTYPES = {"f32": 1, "bits": 2, "i32": 3}
DTYPE_NAMES = {code: name for name, code in DTYPES.items()}
INT32, FLOAT32 = 1, 2
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class ParamSpec:
    id: int
    type: int  # INT32 or FLOAT32
    default: int | float | None  # None: required
    low: float = -math.inf
    high: float = math.inf


def _i(pid: int, default: int | None, low: int = INT32_MIN, high: int = INT32_MAX) -> ParamSpec:
    return ParamSpec(pid, INT32, default, low, high)


def _f(pid: int, default: float | None) -> ParamSpec:
    return ParamSpec(pid, FLOAT32, default)


PARAMS: dict[str, ParamSpec] = {
    "stride_h": _i(1, 1, 1, 65535),
    "stride_w": _i(2, 1, 1, 65535),
    "dilation_h": _i(3, 1, 1, 65535),
    "dilation_w": _i(4, 1, 1, 65535),
    "pad_top": _i(5, 0, 0, 65535),
    "pad_bottom": _i(6, 0, 0, 65535),
    "pad_left": _i(7, 0, 0, 65535),
    "pad_right": _i(8, 0, 0, 65535),
    "pad_value": _i(9, 1, 0, 1),
    "groups": _i(10, 1, 1, 65535),
    "clamp_min": _i(11, INT32_MIN),
    "clamp_max": _i(12, INT32_MAX),
    "out_min": _f(13, -math.inf),
    "out_max": _f(14, math.inf),
    "kernel_h": _i(15, None, 1, 65535),
    "kernel_w": _i(16, None, 1, 65535),
    "count_include_pad": _i(17, 0, 0, 1),
    "axis": _i(18, None, 1, MAX_RANK - 1),
    "axes": _i(19, None, 2, (1 << MAX_RANK) - 2),
    "mode": _i(20, 0, 0, 2),
    "value": _f(21, 0.0),
    "beta": _f(22, 1.0),
    **{f"perm_{i}": _i(23 + i, None, 0, MAX_RANK - 1) for i in range(MAX_RANK)},
    **{f"pad_before_{i}": _i(27 + i, 0, 0, 65535) for i in range(MAX_RANK)},
    **{f"pad_after_{i}": _i(31 + i, 0, 0, 65535) for i in range(MAX_RANK)},
}
PARAM_NAMES = {spec.id: name for name, spec in PARAMS.items()}

CONV_GEOMETRY = (
    "stride_h",
    "stride_w",
    "dilation_h",
    "dilation_w",
    "pad_top",
    "pad_bottom",
    "pad_left",
    "pad_right",
)
POOL_GEOMETRY = (
    "kernel_h",
    "kernel_w",
    "stride_h",
    "stride_w",
    "pad_top",
    "pad_bottom",
    "pad_left",
    "pad_right",
)
OUT_CLAMP = ("out_min", "out_max")


@dataclass(frozen=True)
class OpSpec:
    code: int
    inputs: tuple[str, ...]  # names; a trailing "?" marks an optional input, "*" a variable count
    params: tuple[str, ...]


OPS: dict[str, OpSpec] = {
    "QUANTIZE": OpSpec(1, ("x", "multiplier?", "bias?"), ()),
    "DEQUANTIZE": OpSpec(2, ("x",), ()),
    "BCONV2D": OpSpec(
        3,
        ("x", "filter", "multiplier?", "bias?", "threshold?"),
        (*CONV_GEOMETRY, "pad_value", "groups", "clamp_min", "clamp_max", *OUT_CLAMP),
    ),
    "BMAXPOOL2D": OpSpec(4, ("x",), POOL_GEOMETRY),
    "CONV2D": OpSpec(5, ("x", "filter", "bias?"), (*CONV_GEOMETRY, "groups", *OUT_CLAMP)),
    "DENSE": OpSpec(6, ("x", "weights", "bias?"), OUT_CLAMP),
    "ADD": OpSpec(7, ("a", "b"), OUT_CLAMP),
    "SUB": OpSpec(8, ("a", "b"), OUT_CLAMP),
    "MUL": OpSpec(9, ("a", "b"), OUT_CLAMP),
    "DIV": OpSpec(10, ("a", "b"), OUT_CLAMP),
    "MAXIMUM": OpSpec(11, ("a", "b"), OUT_CLAMP),
    "MINIMUM": OpSpec(12, ("a", "b"), OUT_CLAMP),
    "CONCAT": OpSpec(13, ("x*",), ("axis",)),
    "MAXPOOL2D": OpSpec(14, ("x",), POOL_GEOMETRY),
    "AVGPOOL2D": OpSpec(15, ("x",), (*POOL_GEOMETRY, "count_include_pad")),
    "MEAN": OpSpec(16, ("x",), ("axes",)),
    "REDUCE_MAX": OpSpec(17, ("x",), ("axes",)),
    "REDUCE_SUM": OpSpec(18, ("x",), ("axes",)),
    "PAD": OpSpec(
        19,
        ("x",),
        (
            *(f"pad_before_{i}" for i in range(MAX_RANK)),
            *(f"pad_after_{i}" for i in range(MAX_RANK)),
            "value",
            "mode",
        ),
    ),
    "CLIP": OpSpec(20, ("x",), OUT_CLAMP),
    "PRELU": OpSpec(21, ("x", "slope"), ()),
    "RESHAPE": OpSpec(22, ("x",), ()),
    "TRANSPOSE": OpSpec(23, ("x",), tuple(f"perm_{i}" for i in range(MAX_RANK))),
    "SOFTMAX": OpSpec(24, ("x",), ("beta",)),
    "SIGN": OpSpec(25, ("x",), ()),
}
OP_NAMES = {spec.code: name for name, spec in OPS.items()}
ELEMENTWISE = ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM")


# --- bits ---------------------------------------------------------------------------------------


def words_per_row(length: int) -> int:
    return -(-int(length) // 32)


def pack_bits(values: np.ndarray) -> np.ndarray:
    """+-1 values (or any floats: bit 1 iff ``x < 0``) packed along the last axis into uint32 words.

    >>> pack_bits(np.array([1.0, -1.0, -1.0, 0.0, -0.0]))
    array([6], dtype=uint32)
    """
    values = np.asarray(values)
    if values.ndim < 1:
        raise FormatError("bits need at least one axis")
    length = values.shape[-1]
    words = words_per_row(length)
    negative = np.zeros((*values.shape[:-1], words * 32), dtype=np.uint8)
    negative[..., :length] = values < 0
    bits = negative.reshape(*values.shape[:-1], words, 32).astype(np.uint64)
    weights = np.left_shift(np.uint64(1), np.arange(32, dtype=np.uint64))
    return (bits * weights).sum(axis=-1).astype(np.uint32)


def unpack_bits(words: np.ndarray, length: int) -> np.ndarray:
    """The +-1 float32 values of ``length`` elements per row of packed ``words``.

    >>> unpack_bits(np.array([6], dtype=np.uint32), 3)
    array([ 1., -1., -1.], dtype=float32)
    """
    words = np.asarray(words, dtype=np.uint32)
    shifts = np.arange(32, dtype=np.uint32)
    bits = (words[..., None] >> shifts) & 1
    bits = bits.reshape(*words.shape[:-1], words.shape[-1] * 32)[..., :length]
    return np.where(bits == 1, -1.0, 1.0).astype(np.float32)


# --- thresholds of a binary conv with bit output -------------------------------------------------


def bit_output_thresholds(
    multiplier: np.ndarray,
    bias: np.ndarray,
    clamp_min: int = INT32_MIN,
    clamp_max: int = INT32_MAX,
    out_min: float = -math.inf,
    out_max: float = math.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """``(threshold, flip)`` so that BCONV2D's bit output equals binarizing its float output.

    The float output is ``y = clamp(clamp(dot) * multiplier + bias, out_min, out_max)`` (float32)
    and the binarizer writes bit 1 iff ``y < 0``. For channels with ``flip[o]`` the producer must
    negate the filter of channel ``o`` (then ``dot`` changes sign, as LCE does for a negative
    multiplier); the bit is then ``dot < threshold[o]``.

    >>> threshold, flip = bit_output_thresholds(np.array([2.0, -1.0, 0.0]), np.array([-3.0, 1.0, -1.0]))
    >>> threshold.tolist(), flip.tolist()        # 2*dot-3 < 0 <=> dot < 2; -dot+1 < 0 <=> -dot < -1
    ([2, -1, 2147483647], [False, True, False])
    """
    multiplier = np.asarray(multiplier, dtype=np.float32).reshape(-1)
    bias = np.asarray(bias, dtype=np.float32).reshape(-1)
    if multiplier.shape != bias.shape:
        raise FormatError("bit_output_thresholds: multiplier and bias need one value per output channel")
    thresholds = np.empty(multiplier.shape, dtype=np.int64)
    flips = multiplier < 0
    for o, (m, b) in enumerate(zip(multiplier, bias, strict=True)):
        thresholds[o] = _threshold(np.float32(m), np.float32(b), clamp_min, clamp_max, out_min, out_max)
    return thresholds.astype(np.int32), flips


def _threshold(m: np.float32, b: np.float32, lo: int, hi: int, out_min: float, out_max: float) -> int:
    if out_min >= 0:  # the output is clamped to >= 0: always +1
        return INT32_MIN
    if out_max < 0:
        return INT32_MAX
    if m == 0:
        return INT32_MAX if b < 0 else INT32_MIN
    if m < 0:  # the producer flips the filter: dot' = -dot, clamp range mirrored
        m, lo, hi = -m, -hi if hi != INT32_MAX else INT32_MIN, -lo if lo != INT32_MIN else INT32_MAX

    def negative(c: int) -> bool:  # exactly the runtime's float32 arithmetic
        with np.errstate(over="ignore"):
            return bool(np.float32(np.float32(c) * m) + b < 0)

    # y(c) is non-decreasing in c: the negative c are a prefix c < t; find t near -b/m.
    guess = -float(b) / float(m)
    if not math.isfinite(guess) or guess > 2**31:
        t = INT32_MAX
    elif guess < -(2**31):
        t = INT32_MIN
    else:
        t = int(math.ceil(guess))
        while t > INT32_MIN and negative(t - 1) is False:
            t -= 1
        while t < INT32_MAX and negative(t):
            t += 1
    # clamp(dot) < t  <=>  dot < t when lo < t <= hi; always when t > hi; never when t <= lo.
    if t > hi:
        return INT32_MAX
    if t <= lo:
        return INT32_MIN
    return t


def fold_bconv_output(
    weight_scale: np.ndarray,
    bn_scale: np.ndarray | None = None,
    bn_shift: np.ndarray | None = None,
    relu_before_bn: bool = False,
    relu_after_bn: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, int | float]]:
    """``(multiplier, bias, params)`` of a BCONV2D with float output for the ONNX pattern
    ``[Relu](BN(scale * [Relu](dot)))`` (``scale`` > 0 per output channel: the +-a weights).

    ``relu(a * dot) = a * relu(dot)`` for ``a > 0``, so a Relu before the BatchNorm is a clamp of
    ``dot`` (``clamp_min = 0``); a Relu after it is ``out_min = 0``.

    >>> m, b, params = fold_bconv_output(np.array([0.5]), np.array([2.0]), np.array([-1.0]), relu_before_bn=True)
    >>> m.tolist(), b.tolist(), params
    ([1.0], [-1.0], {'clamp_min': 0})
    """
    scale = np.asarray(weight_scale, dtype=np.float64).reshape(-1)
    if np.any(scale <= 0):
        raise FormatError("fold_bconv_output: weight scales must be positive (+-a weights, a > 0)")
    multiplier = scale * (np.asarray(bn_scale, np.float64).reshape(-1) if bn_scale is not None else 1.0)
    bias = np.asarray(bn_shift, np.float64).reshape(-1) if bn_shift is not None else np.zeros_like(scale)
    params: dict[str, int | float] = {}
    if relu_before_bn:
        params["clamp_min"] = 0
    if relu_after_bn:
        params["out_min"] = 0.0
    return multiplier.astype(np.float32), np.broadcast_to(bias, multiplier.shape).astype(np.float32), params


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one axis: what LCE's and TFLite's ``padding=SAME`` mean.

    >>> same_pads(14, 3, 2), same_pads(7, 3, 1)
    ((0, 1), (1, 1))
    """
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def lce_thresholds(lce_threshold: np.ndarray, k: int) -> np.ndarray:
    """LCE's bit-output thresholds (bit = ``accum > t``, ``accum = (K - dot) / 2``) as BCONV2D's.

    >>> lce_thresholds(np.array([4, -1, 2**31 - 1]), k=9).tolist()
    [1, 2147483647, -2147483648]
    """
    out = []
    for t in np.asarray(lce_threshold, dtype=np.int64).reshape(-1):
        if t < 0:
            out.append(INT32_MAX)  # accum >= 0 > t: always bit 1
        elif t >= k:
            out.append(INT32_MIN)  # accum <= K <= t: never
        else:
            out.append(int(k - 2 * t))  # accum > t <=> K - dot > 2t <=> dot < K - 2t
    return np.array(out, dtype=np.int32)


# --- tensors, ops and the model ------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    """A handle of a tensor in a ``ModelBuilder`` (its index in the tensor table)."""

    index: int
    dtype: str
    shape: tuple[int, ...]


@dataclass
class TensorInfo:
    index: int
    name: str
    dtype: str  # "f32" | "bits" | "i32"
    shape: tuple[int, ...]
    constant: bool
    data: np.ndarray | None = None  # constants: float32 / int32 values, or uint32 words for bits


@dataclass
class OpInfo:
    index: int
    op: str
    name: str
    inputs: list[int | None]  # None: an absent optional input
    outputs: list[int]
    params: dict[str, int | float]  # every parameter of the op, defaults filled in
    explicit: frozenset[str] = frozenset()  # the parameters written in the file


@dataclass
class ModelInfo:
    version: tuple[int, int]
    tensors: list[TensorInfo]
    ops: list[OpInfo]
    inputs: list[int]
    outputs: list[int]
    metadata: bytes = b""
    checksum: int = 0

    @property
    def deploy_metadata(self) -> DeployMetadata | None:
        return DeployMetadata.from_json(self.metadata, "ebnn metadata") if self.metadata else None

    def binary_macs(self) -> int:
        """Binary multiply-accumulates per sample (BCONV2D), for reports."""
        total = 0
        for op in self.ops:
            if op.op == "BCONV2D":
                out = self.tensors[op.outputs[0]].shape
                filt = self.tensors[op.inputs[1]].shape
                total += math.prod(out) * math.prod(filt[1:])
        return total


def _storage_bytes(dtype: str, shape: Sequence[int]) -> int:
    if dtype == "bits":
        return 4 * math.prod(shape[:-1]) * words_per_row(shape[-1])
    return 4 * math.prod(shape)


def _checked_shape(shape: Iterable[int], what: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise FormatError(f"{what}: shape {shape!r} is not a list of integers") from None
    if len(shape) > MAX_RANK or any(d < 1 or d > 0xFFFFFFFF for d in shape):
        raise FormatError(f"{what}: shape {list(shape)} must have at most {MAX_RANK} positive sizes")
    if math.prod(shape) > MAX_ELEMENTS:
        raise FormatError(f"{what}: shape {list(shape)} has more than 2^31-1 elements")
    return shape


class ModelBuilder:
    """Builds one ``.ebnn`` model: inputs, constants, ops (shapes inferred), outputs, metadata."""

    def __init__(self, metadata: DeployMetadata | bytes | str | None = None) -> None:
        self._tensors: list[dict[str, Any]] = []
        self._ops: list[dict[str, Any]] = []
        self._inputs: list[int] = []
        self._outputs: list[int] = []
        self._metadata = b""
        if metadata is not None:
            self.set_metadata(metadata)

    # --- tensors

    def _add_tensor(self, dtype: str, shape: tuple[int, ...], name: str, data: bytes | None) -> Tensor:
        index = len(self._tensors)
        self._tensors.append({"dtype": dtype, "shape": shape, "name": name or "", "data": data})
        return Tensor(index, dtype, shape)

    def add_input(self, shape: Sequence[int], name: str = "input") -> Tensor:
        """A float32 graph input of one sample (``shape[0] == 1``, e.g. NHWC ``(1, 28, 28, 1)``)."""
        shape = _checked_shape(shape, f"input {name!r}")
        if not shape or shape[0] != 1:
            raise FormatError(f"input {name!r}: shape {list(shape)} must start with the batch size 1")
        tensor = self._add_tensor("f32", shape, name, None)
        self._inputs.append(tensor.index)
        return tensor

    def add_constant(self, array: np.ndarray, dtype: str = "f32", name: str = "") -> Tensor:
        """A constant: ``f32`` and ``i32`` values as given; ``bits`` from +-1 values (bit 1 iff
        ``x < 0``), packed along the last axis here. Already packed words: ``add_packed_bits``."""
        if dtype not in DTYPES:
            raise FormatError(f"constant {name!r}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        array = np.asarray(array)
        shape = _checked_shape(array.shape, f"constant {name!r}")
        if dtype == "f32":
            data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        elif dtype == "i32":
            if array.size and (array.min() < INT32_MIN or array.max() > INT32_MAX):
                raise FormatError(f"constant {name!r}: values do not fit int32")
            data = np.ascontiguousarray(array, dtype="<i4").tobytes()
        else:
            if not shape:
                raise FormatError(f"constant {name!r}: bits need at least one axis")
            data = np.ascontiguousarray(pack_bits(array), dtype="<u4").tobytes()
        return self._add_tensor(dtype, shape, name, data)

    def add_packed_bits(self, words: np.ndarray, length: int, name: str = "") -> Tensor:
        """A bits constant from already packed uint32 words (e.g. LCE's bit-packed filters)."""
        words = np.asarray(words)
        if words.ndim < 1 or words.shape[-1] != words_per_row(length):
            raise FormatError(
                f"constant {name!r}: {length} elements per row need {words_per_row(length)} words, "
                f"got shape {list(words.shape)}"
            )
        shape = _checked_shape((*words.shape[:-1], length), f"constant {name!r}")
        words = np.ascontiguousarray(words.astype(np.int64) & 0xFFFFFFFF, dtype="<u4")
        tail = length % 32
        if tail and np.any(words[..., -1] >> np.uint32(tail)):
            raise FormatError(f"constant {name!r}: the unused high bits of each row's last word must be 0")
        return self._add_tensor("bits", shape, name, words.tobytes())

    # --- ops

    def add_op(
        self,
        op: str,
        inputs: Sequence[Tensor | None],
        name: str = "",
        output_dtype: str | None = None,
        output_shape: Sequence[int] | None = None,
        **params: int | float,
    ) -> Tensor:
        """Append ``op`` (docs/native-format.md) and return its output tensor.

        The output shape and dtype are inferred; give ``output_shape`` for RESHAPE and the
        reductions, and ``output_dtype="bits"`` for a BCONV2D with bit output (threshold input).
        """
        spec = OPS.get(op)
        if spec is None:
            raise FormatError(f"unknown op {op!r}; choose one of {', '.join(OPS)}")
        label = f"op {len(self._ops)} ({op}{' ' + repr(name) if name else ''})"
        unknown = sorted(set(params) - set(spec.params))
        if unknown:
            raise FormatError(
                f"{label}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(spec.params) or 'none'}"
            )
        values = _params_with_defaults(spec, params, label)
        indices: list[int | None] = []
        for tensor in inputs:
            if tensor is None:
                indices.append(None)
            elif isinstance(tensor, Tensor) and 0 <= tensor.index < len(self._tensors):
                indices.append(tensor.index)
            else:
                raise FormatError(f"{label}: inputs must be Tensor handles of this builder, got {tensor!r}")
        while indices and indices[-1] is None:
            indices.pop()
        _check_input_count(spec, len(indices), label)
        described = [
            None
            if i is None
            else (self._tensors[i]["dtype"], self._tensors[i]["shape"], self._tensors[i]["data"] is not None)
            for i in indices
        ]
        if output_shape is not None:
            output_shape = _checked_shape(output_shape, label)
        dtype, shape = infer_output(op, described, values, label, output_dtype, output_shape)
        output = self._add_tensor(dtype, shape, name + ":0" if name else "", None)
        self._ops.append(
            {"op": op, "name": name, "inputs": indices, "outputs": [output.index], "params": dict(params)}
        )
        return output

    def set_outputs(self, outputs: Sequence[Tensor]) -> None:
        for tensor in outputs:
            if not isinstance(tensor, Tensor) or self._tensors[tensor.index]["data"] is not None:
                raise FormatError(f"graph outputs must be activations of this builder, got {tensor!r}")
            if tensor.dtype != "f32":
                raise FormatError(
                    f"graph output {tensor.index} must be float32 (add a DEQUANTIZE), got {tensor.dtype}"
                )
        self._outputs = [t.index for t in outputs]

    def set_metadata(self, metadata: DeployMetadata | bytes | str) -> None:
        if isinstance(metadata, DeployMetadata):
            self._metadata = metadata.to_json()
        elif isinstance(metadata, str):
            self._metadata = metadata.encode()
        else:
            self._metadata = bytes(metadata)
        try:
            json.loads(self._metadata.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise FormatError("ebnn metadata must be UTF-8 JSON (DeployMetadata.to_json())") from None

    # --- bytes

    def to_bytes(self) -> bytes:
        if not self._inputs or not self._outputs:
            raise FormatError("the model needs at least one input and one output (set_outputs)")
        strings = bytearray()
        string_index: dict[str, tuple[int, int]] = {}

        def string(text: str) -> tuple[int, int]:
            if not text:
                return 0, 0
            if text not in string_index:
                encoded = text.encode()
                string_index[text] = (len(strings), len(encoded))
                strings.extend(encoded)
            return string_index[text]

        data = bytearray()
        placed: dict[bytes, int] = {}
        tensor_records = bytearray(struct.pack("<II", len(self._tensors), 0))
        for tensor in self._tensors:
            offset, size = 0, 0
            if tensor["data"] is not None:
                blob = tensor["data"]
                if blob not in placed:
                    data.extend(b"\0" * (-len(data) % DATA_ALIGNMENT))
                    placed[blob] = len(data)
                    data.extend(blob)
                offset, size = placed[blob], len(blob)
            shape = tensor["shape"]
            dims = list(shape) + [0] * (MAX_RANK - len(shape))
            flags = 1 if tensor["data"] is not None else 0
            tensor_records += struct.pack(
                "<IIBBH4IIQQ",
                *string(tensor["name"]),
                DTYPES[tensor["dtype"]],
                len(shape),
                flags,
                *dims,
                0,
                offset,
                size,
            )
        op_records = bytearray(struct.pack("<II", len(self._ops), 0))
        for op in self._ops:
            spec = OPS[op["op"]]
            params = op["params"]
            op_records += struct.pack(
                "<HBBHHII",
                spec.code,
                len(op["inputs"]),
                len(op["outputs"]),
                len(params),
                0,
                *string(op["name"]),
            )
            op_records += struct.pack(
                f"<{len(op['inputs'])}I", *(ABSENT if i is None else i for i in op["inputs"])
            )
            op_records += struct.pack(f"<{len(op['outputs'])}I", *op["outputs"])
            for key in sorted(params, key=lambda k: PARAMS[k].id):
                param = PARAMS[key]
                if param.type == INT32:
                    op_records += struct.pack("<HHi", param.id, INT32, int(params[key]))
                else:
                    op_records += struct.pack("<HHf", param.id, FLOAT32, float(params[key]))
        graph = struct.pack(
            f"<II{len(self._inputs)}I{len(self._outputs)}I",
            len(self._inputs),
            len(self._outputs),
            *self._inputs,
            *self._outputs,
        )
        sections = [("TENSORS", bytes(tensor_records)), ("OPS", bytes(op_records)), ("GRAPH", graph)]
        if data:
            sections.append(("DATA", bytes(data)))
        if self._metadata:
            sections.append(("METADATA", self._metadata))
        if strings:
            sections.append(("STRINGS", bytes(strings)))
        table_offset = HEADER_SIZE
        cursor = table_offset + SECTION_ENTRY_SIZE * len(sections)
        body = bytearray()
        entries = bytearray()
        for kind, blob in sections:
            align = DATA_ALIGNMENT if kind == "DATA" else 8
            padding = -(cursor + len(body)) % align
            body += b"\0" * padding
            entries += struct.pack("<IIQQQ", SECTIONS[kind], 0, cursor + len(body), len(blob), 0)
            body += blob
        body += b"\0" * (-(cursor + len(body)) % 8)
        file_size = cursor + len(body)
        header = struct.pack(
            "<4sHHIIQIIQ24s", MAGIC, *VERSION, HEADER_SIZE, 0, file_size, 0, len(sections), table_offset, b""
        )
        content = bytearray(header + entries + body)
        struct.pack_into("<I", content, CHECKSUM_OFFSET, zlib.crc32(content))
        return bytes(content)


# --- shape inference (shared by the builder and the reader) ---------------------------------------

Described = tuple[str, tuple[int, ...], bool] | None  # (dtype, shape, is_constant) of an input


def _params_with_defaults(spec: OpSpec, given: Mapping[str, Any], label: str) -> dict[str, int | float]:
    values: dict[str, int | float] = {}
    for key in spec.params:
        param = PARAMS[key]
        if key in given:
            value = given[key]
            if param.type == INT32:
                if isinstance(value, bool) or not isinstance(value, int | np.integer):
                    raise FormatError(f"{label}: parameter {key} must be an integer, got {value!r}")
                value = int(value)
            else:
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float | np.number)
                    or math.isnan(value)
                ):
                    raise FormatError(f"{label}: parameter {key} must be a number, got {value!r}")
                value = float(np.float32(value))
            if not param.low <= value <= param.high:
                raise FormatError(
                    f"{label}: parameter {key} = {value} is out of range [{param.low:g}, {param.high:g}]"
                )
            values[key] = value
        elif param.default is not None:
            values[key] = param.default
    return values


def _check_input_count(spec: OpSpec, count: int, label: str) -> None:
    if spec.inputs == ("x*",):
        if not 1 <= count <= MAX_INPUTS:
            raise FormatError(f"{label}: needs 1 to {MAX_INPUTS} inputs, got {count}")
        return
    required = sum(1 for name in spec.inputs if not name.endswith("?"))
    if not required <= count <= len(spec.inputs):
        names = ", ".join(spec.inputs)
        raise FormatError(f"{label}: takes inputs ({names}), got {count}")


def _require(value: Any, key: str, label: str) -> Any:
    if value is None:
        raise FormatError(f"{label}: parameter {key} is required")
    return value


def _out_size(
    size: int, kernel: int, stride: int, dilation: int, before: int, after: int, label: str, axis: str
) -> int:
    effective = (kernel - 1) * dilation + 1
    padded = size + before + after
    if padded < effective:
        raise FormatError(
            f"{label}: the {axis} kernel ({effective} with dilation) is larger than the padded input ({padded})"
        )
    return (padded - effective) // stride + 1


def _broadcast(a: tuple[int, ...], b: tuple[int, ...], label: str) -> tuple[int, ...]:
    rank = max(len(a), len(b))
    a1, b1 = (1,) * (rank - len(a)) + a, (1,) * (rank - len(b)) + b
    out = []
    for x, y in zip(a1, b1, strict=True):
        if x != y and 1 not in (x, y):
            raise FormatError(f"{label}: shapes {list(a)} and {list(b)} do not broadcast")
        out.append(max(x, y))
    return tuple(out)


def infer_output(
    op: str,
    inputs: list[Described],
    p: Mapping[str, int | float],
    label: str,
    output_dtype: str | None = None,
    output_shape: tuple[int, ...] | None = None,
) -> tuple[str, tuple[int, ...]]:
    """``(dtype, shape)`` of ``op``'s output for these inputs and parameters, or FormatError."""

    def need(index: int, dtype: str, what: str, constant: bool | None = None, rank: int | None = None):
        item = inputs[index] if index < len(inputs) else None
        if item is None:
            raise FormatError(f"{label}: input {index} ({what}) is required")
        if item[0] != dtype:
            raise FormatError(f"{label}: input {index} ({what}) must be {dtype}, got {item[0]}")
        if constant is not None and item[2] != constant:
            raise FormatError(
                f"{label}: input {index} ({what}) must be {'a constant' if constant else 'an activation'}"
            )
        if rank is not None and len(item[1]) != rank:
            raise FormatError(
                f"{label}: input {index} ({what}) must have rank {rank}, got shape {list(item[1])}"
            )
        return item[1]

    def optional(index: int, dtype: str, what: str, shape: tuple[int, ...]) -> bool:
        item = inputs[index] if index < len(inputs) else None
        if item is None:
            return False
        # one value per channel: shape [n], or any shape of n elements that ends in n ([1, 1, 1, n])
        n = shape[-1]
        if item[0] != dtype or not item[1] or item[1][-1] != n or math.prod(item[1]) != n:
            raise FormatError(
                f"{label}: input {index} ({what}) must be {dtype} of shape [{shape[-1]}], got {item[0]} {list(item[1])}"
            )
        return True

    def activation_nhwc(index: int, dtype: str) -> tuple[int, ...]:
        shape = need(index, dtype, "x", constant=False, rank=4)
        return shape

    def check_clamp() -> None:
        if "out_min" in p and p["out_min"] > p["out_max"]:
            raise FormatError(f"{label}: out_min {p['out_min']} is larger than out_max {p['out_max']}")

    def conv_hw(h: int, w: int, kh: int, kw: int) -> tuple[int, int]:
        oh = _out_size(
            h, kh, p["stride_h"], p["dilation_h"], p["pad_top"], p["pad_bottom"], label, "vertical"
        )
        ow = _out_size(
            w, kw, p["stride_w"], p["dilation_w"], p["pad_left"], p["pad_right"], label, "horizontal"
        )
        return oh, ow

    def pool_hw(h: int, w: int) -> tuple[int, int]:
        kh, kw = (
            _require(p.get("kernel_h"), "kernel_h", label),
            _require(p.get("kernel_w"), "kernel_w", label),
        )
        oh = _out_size(h, kh, p["stride_h"], 1, p["pad_top"], p["pad_bottom"], label, "vertical")
        ow = _out_size(w, kw, p["stride_w"], 1, p["pad_left"], p["pad_right"], label, "horizontal")
        # every window must hold at least one input cell (padded cells are ignored)
        if (
            (oh - 1) * p["stride_h"] - p["pad_top"] >= h
            or (ow - 1) * p["stride_w"] - p["pad_left"] >= w
            or kh <= p["pad_top"]
            or kw <= p["pad_left"]
        ):
            raise FormatError(f"{label}: a pooling window lies entirely in the padding")
        return oh, ow

    result: tuple[str, tuple[int, ...]]
    if op == "QUANTIZE":
        shape = need(0, "f32", "x")
        if not shape:
            raise FormatError(f"{label}: x needs at least one axis")
        optional(1, "f32", "multiplier", shape)
        optional(2, "f32", "bias", shape)
        result = ("bits", shape)
    elif op == "DEQUANTIZE":
        result = ("f32", need(0, "bits", "x"))
    elif op == "BCONV2D":
        n, h, w, cin = activation_nhwc(0, "bits")
        o, kh, kw, cg = need(1, "bits", "filter", constant=True, rank=4)
        groups = p["groups"]
        if cin % groups or o % groups or cin // groups != cg:
            raise FormatError(
                f"{label}: filter [{o},{kh},{kw},{cg}] with groups={groups} does not fit {cin} input channels"
            )
        oh, ow = conv_hw(h, w, kh, kw)
        has_threshold = len(inputs) > 4 and inputs[4] is not None
        if has_threshold:
            optional(4, "i32", "threshold", (o,))
            if any(i < len(inputs) and inputs[i] is not None for i in (2, 3)):
                raise FormatError(f"{label}: bit output (threshold) takes no multiplier or bias")
            defaults = ("clamp_min", "clamp_max", "out_min", "out_max")
            if any(p[k] != PARAMS[k].default for k in defaults):
                raise FormatError(
                    f"{label}: bit output (threshold) takes no clamp_min/clamp_max/out_min/out_max"
                )
        else:
            optional(2, "f32", "multiplier", (o,))
            optional(3, "f32", "bias", (o,))
        if p["clamp_min"] > p["clamp_max"]:
            raise FormatError(
                f"{label}: clamp_min {p['clamp_min']} is larger than clamp_max {p['clamp_max']}"
            )
        check_clamp()
        dtype = "bits" if has_threshold else "f32"
        if output_dtype not in (None, dtype):
            raise FormatError(
                f"{label}: the output is {dtype} ({'with' if has_threshold else 'without'} a threshold input)"
            )
        result = (dtype, (1, oh, ow, o))
    elif op == "BMAXPOOL2D":
        n, h, w, c = activation_nhwc(0, "bits")
        result = ("bits", (1, *pool_hw(h, w), c))
    elif op in ("MAXPOOL2D", "AVGPOOL2D"):
        n, h, w, c = activation_nhwc(0, "f32")
        result = ("f32", (1, *pool_hw(h, w), c))
    elif op == "CONV2D":
        n, h, w, cin = activation_nhwc(0, "f32")
        o, kh, kw, cg = need(1, "f32", "filter", constant=True, rank=4)
        groups = p["groups"]
        if cin % groups or o % groups or cin // groups != cg:
            raise FormatError(
                f"{label}: filter [{o},{kh},{kw},{cg}] with groups={groups} does not fit {cin} input channels"
            )
        optional(2, "f32", "bias", (o,))
        check_clamp()
        result = ("f32", (1, *conv_hw(h, w, kh, kw), o))
    elif op == "DENSE":
        shape = need(0, "f32", "x")
        wshape = need(1, "f32", "weights", constant=True, rank=2)
        if math.prod(shape) != wshape[1]:
            raise FormatError(
                f"{label}: x has {math.prod(shape)} elements per sample, weights {list(wshape)} need {wshape[1]}"
            )
        optional(2, "f32", "bias", (wshape[0],))
        check_clamp()
        result = ("f32", (1, wshape[0]))
    elif op in ELEMENTWISE:
        a, b = need(0, "f32", "a"), need(1, "f32", "b")
        check_clamp()
        result = ("f32", _broadcast(a, b, label))
    elif op == "CONCAT":
        shapes = [need(i, "f32", f"x{i}") for i in range(len(inputs))]
        rank = len(shapes[0])
        axis = _require(p.get("axis"), "axis", label)
        if axis >= rank:
            raise FormatError(f"{label}: axis {axis} is out of range for rank {rank}")
        for shape in shapes[1:]:
            if len(shape) != rank or any(shape[i] != shapes[0][i] for i in range(rank) if i != axis):
                raise FormatError(
                    f"{label}: shapes {[list(s) for s in shapes]} do not concatenate on axis {axis}"
                )
        total = sum(s[axis] for s in shapes)
        result = ("f32", (*shapes[0][:axis], total, *shapes[0][axis + 1 :]))
    elif op in ("MEAN", "REDUCE_MAX", "REDUCE_SUM"):
        shape = need(0, "f32", "x")
        axes = _require(p.get("axes"), "axes", label)
        if axes & 1:
            raise FormatError(f"{label}: axes mask {axes} reduces axis 0 (the batch axis)")
        if axes >> len(shape):
            raise FormatError(f"{label}: axes mask {axes} names an axis beyond rank {len(shape)}")
        kept = tuple(1 if axes >> i & 1 else d for i, d in enumerate(shape))
        removed = tuple(d for i, d in enumerate(shape) if not axes >> i & 1)
        if output_shape is None:
            output_shape = kept
        if output_shape not in (kept, removed):
            raise FormatError(
                f"{label}: output shape {list(output_shape)} must be {list(kept)} or {list(removed)}"
            )
        result = ("f32", output_shape)
    elif op == "PAD":
        shape = need(0, "f32", "x")
        rank = len(shape)
        befores = [p[f"pad_before_{i}"] for i in range(MAX_RANK)]
        afters = [p[f"pad_after_{i}"] for i in range(MAX_RANK)]
        if any(befores[rank:]) or any(afters[rank:]) or befores[0] or afters[0]:
            raise FormatError(f"{label}: pads are only allowed on axes 1..{rank - 1}")
        if p["mode"] == 1 and any(
            max(befores[i], afters[i]) >= shape[i] for i in range(rank) if befores[i] or afters[i]
        ):
            raise FormatError(f"{label}: reflect pads must be smaller than the padded axis")
        result = ("f32", tuple(d + befores[i] + afters[i] for i, d in enumerate(shape)))
    elif op == "CLIP":
        check_clamp()
        result = ("f32", need(0, "f32", "x"))
    elif op == "PRELU":
        shape = need(0, "f32", "x")
        slope = need(1, "f32", "slope")
        if _broadcast(shape, slope, label) != shape:
            raise FormatError(f"{label}: slope {list(slope)} does not broadcast to x {list(shape)}")
        result = ("f32", shape)
    elif op == "RESHAPE":
        shape = need(0, "f32", "x")
        if output_shape is None or math.prod(output_shape) != math.prod(shape):
            raise FormatError(
                f"{label}: the output shape must hold the {math.prod(shape)} elements of {list(shape)}"
            )
        result = ("f32", output_shape)
    elif op == "TRANSPOSE":
        shape = need(0, "f32", "x")
        rank = len(shape)
        perm = [p.get(f"perm_{i}") for i in range(rank)]
        if any(v is None for v in perm) or sorted(perm) != list(range(rank)) or perm[0] != 0:
            raise FormatError(
                f"{label}: perm_0..perm_{rank - 1} must be a permutation of the axes keeping axis 0"
            )
        if any(f"perm_{i}" in p for i in range(rank, MAX_RANK)):
            raise FormatError(f"{label}: perm beyond rank {rank}")
        result = ("f32", tuple(shape[i] for i in perm))
    elif op in ("SOFTMAX", "SIGN"):
        shape = need(0, "f32", "x")
        if not shape:
            raise FormatError(f"{label}: x needs at least one axis")
        result = ("f32", shape)
    else:  # pragma: no cover - OPS and this function list the same ops
        raise FormatError(f"{label}: unknown op")
    if (
        output_shape is not None
        and op not in ("RESHAPE", "MEAN", "REDUCE_MAX", "REDUCE_SUM")
        and tuple(output_shape) != result[1]
    ):
        raise FormatError(
            f"{label}: output shape {list(output_shape)} does not match the computed {list(result[1])}"
        )
    if output_dtype is not None and output_dtype != result[0]:
        raise FormatError(f"{label}: the output is {result[0]}, not {output_dtype}")
    if not result[1] or result[1][0] != 1:
        raise FormatError(f"{label}: activations must keep the batch size 1 on axis 0, got {list(result[1])}")
    return result


# --- reader ------------------------------------------------------------------------------------


def read(data: bytes, verify_checksum: bool = True, source: str = "ebnn model") -> ModelInfo:
    """Parse and validate an ``.ebnn`` file; FormatError naming the first problem."""
    data = bytes(data)

    def fail(message: str) -> FormatError:
        return FormatError(f"{source}: {message}")

    if len(data) < HEADER_SIZE:
        if data[:4] != MAGIC[: len(data[:4])]:
            raise fail("not a native .ebnn model (no EBNN magic)")
        raise fail(f"truncated: {len(data)} bytes, the header alone is {HEADER_SIZE}")
    magic, major, minor, header_size, flags, file_size, checksum, count, table = struct.unpack_from(
        "<4sHHIIQIIQ", data
    )
    if magic != MAGIC:
        raise fail("not a native .ebnn model (no EBNN magic)")
    if major != VERSION[0]:
        newer = "newer than" if major > VERSION[0] else "older than"
        raise fail(f"format version {major}.{minor} is {newer} this reader's {VERSION[0]}.x: update edgebnn")
    if header_size != HEADER_SIZE or flags != 0:
        raise fail(f"bad header (size {header_size}, flags {flags})")
    if file_size > len(data):
        raise fail(f"truncated: the header says {file_size} bytes, got {len(data)}")
    if file_size < HEADER_SIZE:
        raise fail(f"bad file size {file_size}")
    data = data[:file_size]
    if verify_checksum:
        zeroed = data[:CHECKSUM_OFFSET] + b"\0\0\0\0" + data[CHECKSUM_OFFSET + 4 :]
        if zlib.crc32(zeroed) != checksum:
            raise fail("checksum mismatch: the file is corrupt")
    if data[40:64].strip(b"\0"):
        raise fail("reserved header bytes are not zero")
    if (
        not 1 <= count <= MAX_SECTIONS
        or table < HEADER_SIZE
        or table % 8
        or table + count * SECTION_ENTRY_SIZE > file_size
    ):
        raise fail(f"bad section table ({count} entries at {table})")
    sections: dict[str, bytes] = {}
    spans = [(0, HEADER_SIZE), (table, table + count * SECTION_ENTRY_SIZE)]
    for i in range(count):
        kind, sflags, offset, size, reserved = struct.unpack_from(
            "<IIQQQ", data, table + i * SECTION_ENTRY_SIZE
        )
        name = SECTION_NAMES.get(kind)
        if name is None:
            continue  # a section of a newer minor version
        align = DATA_ALIGNMENT if name == "DATA" else 8
        if (
            sflags
            or reserved
            or offset % align
            or offset < HEADER_SIZE
            or size > file_size
            or offset > file_size - size
        ):
            raise fail(f"section {name} is out of bounds or misaligned (offset {offset}, size {size})")
        if name in sections:
            raise fail(f"section {name} appears twice")
        for start, end in spans:
            if offset < end and start < offset + size:
                raise fail(f"section {name} overlaps another part of the file")
        spans.append((offset, offset + size))
        sections[name] = data[offset : offset + size]
    for name in ("TENSORS", "OPS", "GRAPH"):
        if name not in sections:
            raise fail(f"section {name} is missing")
    strings = sections.get("STRINGS", b"")
    blob = sections.get("DATA", b"")

    def name_at(offset: int, length: int, what: str) -> str:
        if length == 0:
            return ""
        if offset + length > len(strings):
            raise fail(f"{what}: name out of bounds of STRINGS")
        # names only label errors and profiles: bytes that are not UTF-8 are shown replaced
        return strings[offset : offset + length].decode("utf-8", errors="replace")

    section = sections["TENSORS"]
    if len(section) < 8:
        raise fail("TENSORS section is truncated")
    tensor_count = struct.unpack_from("<I", section)[0]
    if not 1 <= tensor_count <= MAX_TENSORS or len(section) != 8 + tensor_count * TENSOR_RECORD_SIZE:
        raise fail(f"TENSORS section holds {len(section)} bytes, not {tensor_count} tensors")
    tensors: list[TensorInfo] = []
    for index in range(tensor_count):
        name_offset, name_length, dtype, rank, tflags, *dims, reserved, offset, size = struct.unpack_from(
            "<IIBBH4IIQQ", section, 8 + index * TENSOR_RECORD_SIZE
        )
        what = f"tensor {index}"
        name = name_at(name_offset, name_length, what)
        if name:
            what += f" {name!r}"
        if dtype not in DTYPE_NAMES:
            raise fail(f"{what}: unknown dtype {dtype}")
        dtype_name = DTYPE_NAMES[dtype]
        if rank > MAX_RANK or tflags & ~1 or reserved or any(dims[rank:]) or any(d < 1 for d in dims[:rank]):
            raise fail(f"{what}: bad rank {rank} / dims {dims} / flags")
        shape = tuple(dims[:rank])
        if math.prod(shape) > MAX_ELEMENTS:
            raise fail(f"{what}: shape {list(shape)} has more than 2^31-1 elements")
        if dtype_name == "bits" and rank == 0:
            raise fail(f"{what}: bits need at least one axis")
        constant = bool(tflags & 1)
        array = None
        if constant:
            expected = _storage_bytes(dtype_name, shape)
            if size != expected or offset % DATA_ALIGNMENT or offset > len(blob) or size > len(blob) - offset:
                raise fail(
                    f"{what}: data (offset {offset}, size {size}) must be {expected} bytes, 64-aligned, inside DATA"
                )
            raw = blob[offset : offset + size]
            if dtype_name == "f32":
                array = np.frombuffer(raw, "<f4").reshape(shape)
            elif dtype_name == "i32":
                array = np.frombuffer(raw, "<i4").reshape(shape)
            else:
                array = np.frombuffer(raw, "<u4").reshape(*shape[:-1], words_per_row(shape[-1]))
        elif offset or size:
            raise fail(f"{what}: an activation has no data")
        tensors.append(TensorInfo(index, name, dtype_name, shape, constant, array))

    section = sections["OPS"]
    if len(section) < 8:
        raise fail("OPS section is truncated")
    op_count = struct.unpack_from("<I", section)[0]
    if op_count > MAX_OPS:
        raise fail(f"OPS section claims {op_count} ops")
    produced = [False] * tensor_count
    graph = sections["GRAPH"]
    if len(graph) < 8:
        raise fail("GRAPH section is truncated")
    n_in, n_out = struct.unpack_from("<II", graph)
    if (
        not 1 <= n_in <= MAX_GRAPH_IO
        or not 1 <= n_out <= MAX_GRAPH_IO
        or len(graph) != 8 + 4 * (n_in + n_out)
    ):
        raise fail(f"GRAPH section: bad counts ({n_in} inputs, {n_out} outputs, {len(graph)} bytes)")
    io = struct.unpack_from(f"<{n_in + n_out}I", graph, 8)
    inputs, outputs = list(io[:n_in]), list(io[n_in:])
    for index in io:
        if index >= tensor_count or tensors[index].constant or tensors[index].dtype != "f32":
            raise fail(f"graph input/output {index} must be a float32 activation")
    for index in inputs:
        if not tensors[index].shape or tensors[index].shape[0] != 1:
            raise fail(f"graph input {index} must have batch size 1 on axis 0")
        produced[index] = True
    cursor = 8
    ops: list[OpInfo] = []
    for index in range(op_count):
        if cursor + OP_HEADER_SIZE > len(section):
            raise fail(f"op {index}: record out of bounds of OPS")
        code, ni, no, np_, reserved, name_offset, name_length = struct.unpack_from(
            "<HBBHHII", section, cursor
        )
        op_name = OP_NAMES.get(code)
        label = f"op {index} ({op_name or code})"
        if op_name is None:
            raise fail(f"{label}: unknown opcode {code} (a newer format?)")
        name = name_at(name_offset, name_length, label)
        if name:
            label = f"op {index} ({op_name} {name!r})"
        size = OP_HEADER_SIZE + 4 * (ni + no) + PARAM_SIZE * np_
        if reserved or np_ > MAX_PARAMS or no != 1 or cursor + size > len(section):
            raise fail(f"{label}: bad record (inputs {ni}, outputs {no}, params {np_})")
        indices = struct.unpack_from(f"<{ni + no}I", section, cursor + OP_HEADER_SIZE)
        spec = OPS[op_name]
        given: dict[str, int | float] = {}
        base = cursor + OP_HEADER_SIZE + 4 * (ni + no)
        for j in range(np_):
            pid, ptype = struct.unpack_from("<HH", section, base + PARAM_SIZE * j)
            key = PARAM_NAMES.get(pid)
            if key is None or key not in spec.params:
                raise fail(f"{label}: parameter id {pid} ({key or 'unknown'}) does not belong to {op_name}")
            if ptype != PARAMS[key].type:
                raise fail(f"{label}: parameter {key} has the wrong type {ptype}")
            if key in given:
                raise fail(f"{label}: parameter {key} is given twice")
            fmt = "<i" if ptype == INT32 else "<f"
            given[key] = struct.unpack_from(fmt, section, base + PARAM_SIZE * j + 4)[0]
        cursor += size
        try:
            params = _params_with_defaults(spec, given, label)
        except FormatError as error:
            raise fail(str(error)) from None
        op_inputs: list[int | None] = []
        for i in indices[:ni]:
            if i == ABSENT:
                op_inputs.append(None)
                continue
            if i >= tensor_count:
                raise fail(f"{label}: input tensor {i} does not exist")
            if not tensors[i].constant and not produced[i]:
                raise fail(f"{label}: reads tensor {i} before it is produced")
            op_inputs.append(i)
        while op_inputs and op_inputs[-1] is None:
            op_inputs.pop()
        try:
            _check_input_count(spec, len(op_inputs), label)
            if spec.inputs == ("x*",) and None in op_inputs:
                raise FormatError(f"{label}: CONCAT inputs cannot be absent")
            for position, i in enumerate(op_inputs):
                if i is None and not spec.inputs[position].endswith("?"):
                    raise FormatError(f"{label}: input {position} ({spec.inputs[position]}) is required")
        except FormatError as error:
            raise fail(str(error)) from None
        out = indices[ni]
        if out >= tensor_count or tensors[out].constant or produced[out]:
            raise fail(f"{label}: output tensor {out} must be a new activation")
        described = [
            None if i is None else (tensors[i].dtype, tensors[i].shape, tensors[i].constant)
            for i in op_inputs
        ]
        try:
            dtype, shape = infer_output(
                op_name, described, params, label, tensors[out].dtype, tensors[out].shape
            )
        except FormatError as error:
            raise fail(str(error)) from None
        produced[out] = True
        ops.append(OpInfo(index, op_name, name, op_inputs, [out], params, frozenset(given)))
    if cursor != len(section):
        raise fail(f"OPS section has {len(section) - cursor} bytes after its last op")
    for index in outputs:
        if not produced[index]:
            raise fail(f"graph output {index} is never produced")
    return ModelInfo((major, minor), tensors, ops, inputs, outputs, sections.get("METADATA", b""), checksum)
