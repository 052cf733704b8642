"""LCE ``.tflite`` -> native ``.ebnn``: how the native runtime runs LCE models (translate on load).

``translate_tflite(content)`` reads the flatbuffer with the one TF-free reader (``formats.tflite``)
and writes the same graph with ``formats.ebnn.ModelBuilder``; the engine (``runtime.engines``,
runtime ``native``) loads the bytes with ``runtime.native.NativeModel``. Nothing is written to disk
and TensorFlow is never imported. A model with an op it cannot translate is a BenchError naming
the op; int8 (quantised) models are refused.

    >>> from runtime.translate import translate_tflite
    >>> ebnn = translate_tflite(open("bnn.tflite", "rb").read())  # doctest: +SKIP
    >>> from formats.ebnn import read
    >>> [op.op for op in read(ebnn).ops][:3]  # doctest: +SKIP
    ['CONV2D', 'QUANTIZE', 'BCONV2D']

What each TFLite op becomes (semantics of LCE 0.16, ``larq_compute_engine/core/bconv2d``):

- ``LceQuantize`` -> QUANTIZE (bit 1 iff x < 0), ``LceDequantize`` -> DEQUANTIZE. LCE's bit-packed
  int32 tensors ``[1, H, W, ceil(C / 32)]`` are BITS tensors ``[1, H, W, C]`` (the same words).
- ``LceBconv2d`` -> BCONV2D: the OHWI bit-packed filter words as they are; groups =
  ``ceil(channels_in / 32) / filter words``; ``padding`` VALID (no pads) or SAME (TF-SAME pads) with
  ``pad_values`` 1 (one-padding) or 0 (zero-padding); strides, dilations. Float output:
  ``float(clamp(dot)) * post_activation_multiplier + post_activation_bias`` where the fused
  activation is a clamp of the dot product (RELU [0, K], RELU_N1_TO_1 [-1, 1], RELU6 [0, 6]).
  Bit output (int32 output, ``thresholds``): LCE writes 1 where ``popcount > t``, i.e.
  ``dot < K - 2t`` (``formats.ebnn.lce_thresholds``).
- ``LceBMaxPool2d`` -> BMAXPOOL2D (padded cells ignored, as in LCE).
- Builtins: CONV_2D (grouped too), DEPTHWISE_CONV_2D (filter ``[1, KH, KW, C*m]`` -> groups = C),
  FULLY_CONNECTED, ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, CONCATENATION, MAX_POOL_2D,
  AVERAGE_POOL_2D, MEAN, SUM, REDUCE_MAX, PAD, PADV2, MIRROR_PAD (reflect), RELU, RELU6,
  RELU_N1_TO_1, RELU_0_TO_1, PRELU, LEAKY_RELU, RESHAPE, SQUEEZE, EXPAND_DIMS, SOFTMAX, TRANSPOSE,
  DEQUANTIZE of float16 constants, the float binarizer ``SELECT_V2(x >= 0, 1, -1)`` (QUANTIZE +
  DEQUANTIZE). Fused activations become output clamps. A zero PAD that only feeds a convolution
  becomes its pads, a -inf PADV2 that only feeds a max-pool its pool pads, and a STRIDED_SLICE that
  only crops the end of a convolution's output (edgebnn's converter emits one where LCE would
  otherwise mistake explicit pads for SAME) shrinks that convolution's bottom/right pads.
"""

from __future__ import annotations

import math

import numpy as np

from formats.ebnn import ModelBuilder, Tensor, lce_thresholds, same_pads, words_per_row
from formats.errors import FormatError
from formats.tflite import OperatorInfo, TFLiteModel, read_tflite
from runtime.errors import BenchError

SAME, VALID = 0, 1  # tflite Padding
ACTIVATIONS = {0: (-math.inf, math.inf), 1: (0.0, math.inf), 2: (-1.0, 1.0), 3: (0.0, 6.0)}
DOT_CLAMPS = {
    0: {},
    1: {"clamp_min": 0},
    2: {"clamp_min": -1, "clamp_max": 1},
    3: {"clamp_min": 0, "clamp_max": 6},
}
ELEMENTWISE = {
    "ADD": "ADD",
    "SUB": "SUB",
    "MUL": "MUL",
    "DIV": "DIV",
    "MAXIMUM": "MAXIMUM",
    "MINIMUM": "MINIMUM",
}
CLIPS = {"RELU": (0.0, math.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0), "RELU_0_TO_1": (0.0, 1.0)}
REDUCTIONS = {"MEAN": "MEAN", "SUM": "REDUCE_SUM", "REDUCE_MAX": "REDUCE_MAX"}
CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def translate_tflite(content: bytes, name: str = "<bytes>") -> bytes:
    """The ``.ebnn`` bytes of a float32 (LCE or stock) ``.tflite`` model; BenchError if it cannot be."""
    try:
        model = read_tflite(content, label=name)
    except FormatError:
        raise BenchError(f"{name} is not a valid .tflite flatbuffer (truncated or corrupt)") from None
    metadata = None
    try:
        from formats.tflite import read_deploy_metadata as read_metadata

        metadata = read_metadata(content, name)
    except (FormatError, ImportError):
        metadata = None  # the metadata never stops a model from running
    return Translator(model, name, metadata).run()


class Translator:
    def __init__(self, model: TFLiteModel, name: str, metadata) -> None:
        self.model, self.name = model, name
        self.builder = ModelBuilder(metadata if metadata is not None and metadata.to_dict() else None)
        self.values: dict[int, Tensor] = {}  # tflite tensor index -> builder tensor
        self.arrays: dict[int, np.ndarray] = {}  # constants made here (DEQUANTIZE of float16)
        self.channels: dict[int, int] = {}  # bit-packed tensors: the true channel count
        self.consumers: dict[int, list[int]] = {}
        for position, op in enumerate(model.operators):
            for index in op.inputs:
                if index >= 0:
                    self.consumers.setdefault(index, []).append(position)
        self.skip: set[int] = set()
        self.folded_pads: dict[
            int, tuple[int, tuple[int, int, int, int]]
        ] = {}  # pad output -> (source, pads)
        self.aliases: dict[int, int] = {}  # a folded STRIDED_SLICE output -> its convolution's output

    # ------------------------------------------------------------------------------- helpers

    def fail(self, op: OperatorInfo, message: str) -> BenchError:
        return BenchError(f"{self.name}: the native runtime cannot run this model: {op.name}: {message}")

    def tensor_info(self, index: int):
        return self.model.tensors[index]

    def array(self, index: int) -> np.ndarray | None:
        if index in self.arrays:
            return self.arrays[index]
        return self.tensor_info(index).array() if index >= 0 else None

    def const(self, op: OperatorInfo, index: int, what: str) -> np.ndarray:
        value = self.array(index)
        if value is None:
            raise self.fail(op, f"{what} must be a constant")
        return value

    def add(self, op: OperatorInfo, kind: str, inputs, **params) -> Tensor:
        try:
            return self.builder.add_op(kind, inputs, name=self.label(op), **params)
        except FormatError as error:
            raise self.fail(op, str(error)) from None

    def constant(self, op: OperatorInfo, array: np.ndarray, dtype: str = "f32") -> Tensor:
        try:
            return self.builder.add_constant(np.asarray(array), dtype=dtype)
        except FormatError as error:
            raise self.fail(op, str(error)) from None

    def label(self, op: OperatorInfo) -> str:
        name = self.tensor_info(op.outputs[0]).name.split(";")[0]
        return name or op.name

    def float_input(self, op: OperatorInfo, position: int) -> Tensor:
        """An op's float input: an activation, or a constant written into the file."""
        index = op.inputs[position]
        index = self.aliases.get(index, index)
        if index in self.values:
            if self.values[index].dtype != "f32":
                raise self.fail(op, f"input {position} is bit-packed where a float tensor is expected")
            return self.values[index]
        value = self.array(index)
        if value is None:
            raise self.fail(op, f"input tensor {index} is not produced by any op")
        if value.dtype != np.float32:
            raise self.fail(op, f"{value.dtype} tensors are not supported (float32 models only)")
        tensor = self.constant(op, value.astype(np.float32))
        self.values[index] = tensor
        return tensor

    def bits_input(self, op: OperatorInfo, position: int) -> Tensor:
        """An op's bit-packed input (a float one is binarized first, as older LCE models expect)."""
        index = op.inputs[position]
        tensor = self.values.get(index)
        if tensor is None:
            raise self.fail(op, f"input tensor {index} is not produced by any op")
        if tensor.dtype == "f32":
            tensor = self.add(op, "QUANTIZE", [tensor])
        return tensor

    def set(self, op: OperatorInfo, tensor: Tensor, shape_check: bool = True) -> None:
        index = op.outputs[0]
        expected = self.tensor_info(index).shape
        if shape_check and tensor.dtype == "f32" and tuple(expected) != tuple(tensor.shape):
            if math.prod(expected) != math.prod(tensor.shape):
                raise self.fail(op, f"computed shape {list(tensor.shape)}, the model says {list(expected)}")
            tensor = self.add(op, "RESHAPE", [tensor], output_shape=tuple(expected))
        self.values[index] = tensor

    def clip_after(self, op: OperatorInfo, tensor: Tensor, activation: int) -> Tensor:
        low, high = self.activation(op, activation)
        if (low, high) == (-math.inf, math.inf):
            return tensor
        return self.add(op, "CLIP", [tensor], **_clamp(low, high))

    def activation(self, op: OperatorInfo, code: int) -> tuple[float, float]:
        if code not in ACTIVATIONS:
            raise self.fail(op, f"fused activation {code} is not supported (NONE, RELU, RELU_N1_TO_1, RELU6)")
        return ACTIVATIONS[code]

    def sole_consumer(self, index: int) -> OperatorInfo | None:
        users = self.consumers.get(index, [])
        if len(users) != 1 or index in self.model.outputs:
            return None
        return self.model.operators[users[0]]

    # ---------------------------------------------------------------------------------- driver

    def run(self) -> bytes:
        model = self.model
        if len(model.inputs) != 1:
            raise BenchError(f"{self.name}: only single-input models are supported")
        info = self.tensor_info(model.inputs[0])
        if info.dtype is not np.float32:
            raise BenchError(
                f"{self.name}: the native runtime runs float32 models; this one takes {np.dtype(info.dtype).name} "
                "input (an int8 model?): convert with --target lce or --target native"
            )
        if not info.shape or info.shape[0] != 1:
            raise BenchError(
                f"{self.name}: the native runtime runs models with batch size 1, got {list(info.shape)}"
            )
        self.values[model.inputs[0]] = self.builder.add_input(info.shape, name=info.name or "input")
        self.plan_folds()
        for position, op in enumerate(model.operators):
            if position in self.skip:
                continue
            handler = OPS.get(op.name)
            if handler is None:
                supported = ", ".join(sorted(OPS))
                raise self.fail(op, f"op not supported; the native runtime translates: {supported}")
            handler(self, op)
        outputs = []
        for index in model.outputs:
            index = self.aliases.get(index, index)
            tensor = self.values.get(index)
            if tensor is None or tensor.dtype != "f32":
                raise BenchError(f"{self.name}: output tensor {index} is not a float32 activation")
            outputs.append(tensor)
        try:
            self.builder.set_outputs(outputs)
            return self.builder.to_bytes()
        except FormatError as error:
            raise BenchError(f"{self.name}: cannot translate to the native format: {error}") from None

    def plan_folds(self) -> None:
        """PAD -> conv / max-pool pads, conv -> STRIDED_SLICE crops (decided before anything is emitted)."""
        operators = self.model.operators
        for position, op in enumerate(operators):
            if op.name not in ("PAD", "PADV2") or len(op.inputs) < 2:
                continue
            user = self.sole_consumer(op.outputs[0])
            paddings = self.array(op.inputs[1])
            if (
                user is None
                or paddings is None
                or paddings.shape != (4, 2)
                or user.inputs[0] != op.outputs[0]
            ):
                continue
            paddings = paddings.astype(int)
            if paddings[0].any() or paddings[3].any() or paddings.min() < 0:
                continue
            value = 0.0
            if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
                constant = self.array(op.inputs[2])
                if constant is None:
                    continue
                value = float(np.asarray(constant).reshape(-1)[0])
            pads = (int(paddings[1, 0]), int(paddings[1, 1]), int(paddings[2, 0]), int(paddings[2, 1]))
            if (user.name in CONVS and value == 0.0) or (user.name == "MAX_POOL_2D" and value <= -3.0e38):
                self.folded_pads[op.outputs[0]] = (op.inputs[0], pads)
                self.skip.add(position)
        for position, op in enumerate(operators):
            if op.name == "STRIDED_SLICE" and self._crop_of(op) is not None:
                producer = self._producer(op.inputs[0])
                if producer is not None and operators[producer].name in CONVS:
                    self.skip.add(position)
                    self.aliases[op.outputs[0]] = op.inputs[0]

    def _producer(self, index: int) -> int | None:
        for position, op in enumerate(self.model.operators):
            if index in op.outputs:
                return position
        return None

    def _crop_of(self, op: OperatorInfo) -> tuple[int, int] | None:
        """(rows, cols) kept by a STRIDED_SLICE that only crops the end of H and W, else None."""
        options = op.builtin_options
        if len(op.inputs) != 4 or any(
            options.get(k) for k in ("ellipsisMask", "newAxisMask", "shrinkAxisMask")
        ):
            return None
        if self.sole_consumer(op.inputs[0]) is None:
            return None
        shape = self.tensor_info(op.inputs[0]).shape
        arrays = [self.array(i) for i in op.inputs[1:]]
        if len(shape) != 4 or any(a is None or a.size != 4 for a in arrays):
            return None
        begin, end, strides = (a.astype(int).reshape(-1) for a in arrays)
        begin_mask, end_mask = int(options.get("beginMask", 0)), int(options.get("endMask", 0))
        kept = []
        for axis in range(4):
            start = 0 if begin_mask >> axis & 1 else int(begin[axis])
            stop = shape[axis] if end_mask >> axis & 1 else int(end[axis])
            stop = stop + shape[axis] if stop < 0 else min(stop, shape[axis])
            if start != 0 or strides[axis] != 1 or stop < 1:
                return None
            kept.append(stop)
        if kept[0] != shape[0] or kept[3] != shape[3]:
            return None
        return kept[1], kept[2]


def _clamp(low: float, high: float) -> dict[str, float]:
    params = {}
    if low != -math.inf:
        params["out_min"] = float(low)
    if high != math.inf:
        params["out_max"] = float(high)
    return params


def _padding(kind: int, size_hw, kernel, strides, dilations) -> tuple[int, int, int, int]:
    if kind == VALID:
        return 0, 0, 0, 0
    top, bottom = same_pads(size_hw[0], kernel[0], strides[0], dilations[0])
    left, right = same_pads(size_hw[1], kernel[1], strides[1], dilations[1])
    return top, bottom, left, right


def _geometry(strides, dilations, pads) -> dict[str, int]:
    return dict(
        stride_h=strides[0], stride_w=strides[1], dilation_h=dilations[0], dilation_w=dilations[1],
        pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3],
    )  # fmt: skip


# ------------------------------------------------------------------------------------ LCE ops


def lce_quantize(t: Translator, op: OperatorInfo) -> None:
    x = t.float_input(op, 0)
    t.values[op.outputs[0]] = t.add(op, "QUANTIZE", [x])
    t.channels[op.outputs[0]] = x.shape[-1]


def lce_dequantize(t: Translator, op: OperatorInfo) -> None:
    x = t.bits_input(op, 0)
    t.set(op, t.add(op, "DEQUANTIZE", [x]))


def lce_bconv2d(t: Translator, op: OperatorInfo) -> None:
    options = op.options
    x = t.bits_input(op, 0)
    filters = t.const(op, op.inputs[1], "the filter")
    if filters.dtype != np.int32 or filters.ndim != 4:
        raise t.fail(op, "expects a bit-packed int32 OHWI filter")
    channels_in = int(options.get("channels_in", x.shape[-1]))
    if channels_in != x.shape[-1]:
        raise t.fail(op, f"channels_in {channels_in} does not match its input's {x.shape[-1]} channels")
    out_channels, kh, kw, words = filters.shape
    total_words = words_per_row(channels_in)
    if words == total_words:
        groups = 1
    elif words and total_words % words == 0:
        groups = total_words // words
    else:
        raise t.fail(op, f"filter words {words} do not fit {channels_in} input channels")
    group_channels = channels_in // groups
    strides = (int(options.get("stride_height", 1)), int(options.get("stride_width", 1)))
    dilations = (int(options.get("dilation_height_factor", 1)), int(options.get("dilation_width_factor", 1)))
    _, h, w, _ = x.shape
    pads = _padding(int(options.get("padding", VALID)), (h, w), (kh, kw), strides, dilations)
    params = _geometry(strides, dilations, pads)
    params.update(pad_value=int(options.get("pad_values", 0)) if any(pads) else 1, groups=groups)
    try:
        packed = t.builder.add_packed_bits(
            filters.view(np.uint32), group_channels, name=t.label(op) + ".filter"
        )
    except FormatError as error:
        raise t.fail(op, str(error)) from None
    activation = int(options.get("fused_activation_function", 0))
    output_type = t.tensor_info(op.outputs[0]).dtype
    if output_type is np.int32:  # bit-packed output: the thresholds include any fused activation
        thresholds = t.const(op, op.inputs[4], "thresholds")
        k = kh * kw * group_channels
        threshold = t.constant(op, lce_thresholds(thresholds, k), "i32")
        tensor = t.add(op, "BCONV2D", [x, packed, None, None, threshold], output_dtype="bits", **params)
        t.values[op.outputs[0]] = tensor
        t.channels[op.outputs[0]] = out_channels
        return
    if output_type is not np.float32:
        raise t.fail(op, "int8 output is not supported (float32 models only)")
    if activation not in DOT_CLAMPS:
        raise t.fail(op, f"fused activation {activation} is not supported")
    inputs = [x, packed, None, None]
    for slot, position in ((2, 2), (3, 3)):
        if len(op.inputs) > position and op.inputs[position] >= 0:
            inputs[slot] = t.constant(
                op, t.const(op, op.inputs[position], "post activation values").astype(np.float32)
            )
    t.set(op, t.add(op, "BCONV2D", inputs, **params, **DOT_CLAMPS[activation]))


def lce_bmaxpool(t: Translator, op: OperatorInfo) -> None:
    options = op.options
    x = t.bits_input(op, 0)
    kernel = (int(options["filter_height"]), int(options["filter_width"]))
    strides = (int(options.get("stride_height", 1)), int(options.get("stride_width", 1)))
    pads = _padding(int(options.get("padding", VALID)), x.shape[1:3], kernel, strides, (1, 1))
    params = dict(kernel_h=kernel[0], kernel_w=kernel[1], stride_h=strides[0], stride_w=strides[1],
                  pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3])  # fmt: skip
    t.values[op.outputs[0]] = t.add(op, "BMAXPOOL2D", [x], **params)
    t.channels[op.outputs[0]] = x.shape[-1]


# -------------------------------------------------------------------------------- builtin ops


def _conv_source(t: Translator, op: OperatorInfo) -> tuple[Tensor, tuple[int, int, int, int]]:
    index = op.inputs[0]
    if index in t.folded_pads:
        source, pads = t.folded_pads[index]
        fake = OperatorInfo(op.name, False, [source], op.outputs)
        return t.float_input(fake, 0), pads
    return t.float_input(op, 0), (0, 0, 0, 0)


def conv_2d(t: Translator, op: OperatorInfo) -> None:
    options = op.builtin_options
    x, extra = _conv_source(t, op)
    filters = t.const(op, op.inputs[1], "the filter")
    if filters.dtype != np.float32:
        raise t.fail(op, f"{filters.dtype} weights are not supported (float32 models only)")
    if op.name == "DEPTHWISE_CONV_2D":
        _, kh, kw, out_channels = filters.shape
        filters = filters.reshape(kh, kw, out_channels).transpose(2, 0, 1)[..., None]
        groups = x.shape[-1]
    else:
        out_channels, kh, kw, group_in = filters.shape
        if x.shape[-1] % group_in:
            raise t.fail(op, f"filter input depth {group_in} does not divide {x.shape[-1]} channels")
        groups = x.shape[-1] // group_in
    strides = (int(options.get("strideH", 1)), int(options.get("strideW", 1)))
    dilations = (int(options.get("dilationHFactor", 1)), int(options.get("dilationWFactor", 1)))
    _, h, w, _ = x.shape
    pads = _padding(int(options.get("padding", VALID)), (h + extra[0] + extra[1], w + extra[2] + extra[3]),
                    (kh, kw), strides, dilations)  # fmt: skip
    pads = tuple(p + q for p, q in zip(pads, extra, strict=True))
    output = op.outputs[0]
    user = t.sole_consumer(output)
    if user is not None and user.name == "STRIDED_SLICE" and t.aliases.get(user.outputs[0]) == output:
        rows, cols = t._crop_of(user)
        pads = _crop_pads(t, op, (h, w), (kh, kw), strides, dilations, pads, (rows, cols))
    inputs = [x, t.constant(op, filters.astype(np.float32))]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(t.constant(op, t.const(op, op.inputs[2], "the bias").astype(np.float32)))
    low, high = t.activation(op, int(options.get("fusedActivationFunction", 0)))
    tensor = t.add(
        op, "CONV2D", inputs, groups=groups, **_geometry(strides, dilations, pads), **_clamp(low, high)
    )
    if user is not None and t.aliases.get(user.outputs[0]) == output:
        t.values[output] = tensor  # the slice's output is this tensor (aliases)
        return
    t.set(op, tensor)


def _crop_pads(t, op, hw, kernel, strides, dilations, pads, kept) -> tuple[int, int, int, int]:
    """Pads whose output keeps exactly the first ``kept`` rows and columns of the uncropped output."""
    result = list(pads)
    for axis, (before, after) in enumerate(((0, 1), (2, 3))):
        effective = (kernel[axis] - 1) * dilations[axis] + 1
        size = hw[axis] + pads[before] + pads[after]
        out = (size - effective) // strides[axis] + 1
        new_after = pads[after] - (out - kept[axis]) * strides[axis]
        if (
            new_after < 0
            or (hw[axis] + pads[before] + new_after - effective) // strides[axis] + 1 != kept[axis]
        ):
            raise t.fail(op, "a STRIDED_SLICE after it that is not an end crop of its output")
        result[after] = new_after
    return tuple(result)


def fully_connected(t: Translator, op: OperatorInfo) -> None:
    options = op.builtin_options
    x = t.float_input(op, 0)
    weights = t.const(op, op.inputs[1], "the weights")
    if weights.dtype != np.float32 or weights.ndim != 2 or int(options.get("weightsFormat", 0)) != 0:
        raise t.fail(op, "float32 [N, K] weights only")
    if math.prod(x.shape) != weights.shape[1]:
        raise t.fail(
            op, f"an input of {math.prod(x.shape)} values for weights {list(weights.shape)}: one row only"
        )
    inputs = [x, t.constant(op, weights)]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(t.constant(op, t.const(op, op.inputs[2], "the bias").astype(np.float32)))
    low, high = t.activation(op, int(options.get("fusedActivationFunction", 0)))
    t.set(op, t.add(op, "DENSE", inputs, **_clamp(low, high)))


def elementwise(t: Translator, op: OperatorInfo) -> None:
    a, b = t.float_input(op, 0), t.float_input(op, 1)
    low, high = t.activation(op, int(op.builtin_options.get("fusedActivationFunction", 0)))
    t.set(op, t.add(op, ELEMENTWISE[op.name], [a, b], **_clamp(low, high)))


def concatenation(t: Translator, op: OperatorInfo) -> None:
    inputs = [t.float_input(op, i) for i in range(len(op.inputs))]
    rank = len(inputs[0].shape)
    axis = int(op.builtin_options.get("axis", 0)) % rank
    if axis == 0:
        raise t.fail(op, "concatenation along the batch axis")
    tensor = t.add(op, "CONCAT", inputs, axis=axis)
    t.set(op, t.clip_after(op, tensor, int(op.builtin_options.get("fusedActivationFunction", 0))))


def pool(t: Translator, op: OperatorInfo) -> None:
    options = op.builtin_options
    index = op.inputs[0]
    extra = (0, 0, 0, 0)
    if index in t.folded_pads:
        source, extra = t.folded_pads[index]
        x = t.float_input(OperatorInfo(op.name, False, [source], op.outputs), 0)
    else:
        x = t.float_input(op, 0)
    kernel = (int(options["filterHeight"]), int(options["filterWidth"]))
    strides = (int(options.get("strideH", 1)), int(options.get("strideW", 1)))
    _, h, w, _ = x.shape
    pads = _padding(int(options.get("padding", VALID)), (h + extra[0] + extra[1], w + extra[2] + extra[3]),
                    kernel, strides, (1, 1))  # fmt: skip
    pads = tuple(p + q for p, q in zip(pads, extra, strict=True))
    params = dict(kernel_h=kernel[0], kernel_w=kernel[1], stride_h=strides[0], stride_w=strides[1],
                  pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3])  # fmt: skip
    kind = "MAXPOOL2D" if op.name == "MAX_POOL_2D" else "AVGPOOL2D"  # TF SAME averages what is inside
    tensor = t.add(op, kind, [x], **params)
    t.set(op, t.clip_after(op, tensor, int(options.get("fusedActivationFunction", 0))))


def reduction(t: Translator, op: OperatorInfo) -> None:
    x = t.float_input(op, 0)
    axes = t.const(op, op.inputs[1], "the axes").astype(int).reshape(-1)
    rank = len(x.shape)
    axes = sorted({int(a) % rank for a in axes})
    if 0 in axes:
        raise t.fail(op, "a reduction over the batch axis")
    shape = t.tensor_info(op.outputs[0]).shape
    keep = bool(op.builtin_options.get("keepDims", False))
    kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    removed = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    output_shape = kept if keep else removed
    if not output_shape or math.prod(output_shape) != math.prod(shape):
        raise t.fail(op, f"output shape {list(shape)}")
    tensor = t.add(op, REDUCTIONS[op.name], [x], axes=sum(1 << a for a in axes), output_shape=output_shape)
    t.set(op, tensor)


def pad(t: Translator, op: OperatorInfo) -> None:
    x = t.float_input(op, 0)
    paddings = t.const(op, op.inputs[1], "the paddings").astype(int).reshape(-1, 2)
    value, mode = 0.0, 0
    if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = float(np.asarray(t.const(op, op.inputs[2], "the pad value")).reshape(-1)[0])
    if op.name == "MIRROR_PAD":
        if int(op.builtin_options.get("mode", 0)) != 0:
            raise t.fail(op, "SYMMETRIC mirror padding (REFLECT only)")
        mode = 1
    if paddings.min() < 0 or paddings[0].any():
        raise t.fail(op, "pads on the batch axis or negative pads")
    params = {f"pad_before_{i}": int(p) for i, p in enumerate(paddings[:, 0]) if p}
    params |= {f"pad_after_{i}": int(p) for i, p in enumerate(paddings[:, 1]) if p}
    t.set(op, t.add(op, "PAD", [x], value=value, mode=mode, **params))


def clip(t: Translator, op: OperatorInfo) -> None:
    low, high = CLIPS[op.name]
    t.set(op, t.add(op, "CLIP", [t.float_input(op, 0)], **_clamp(low, high)))


def prelu(t: Translator, op: OperatorInfo) -> None:
    x = t.float_input(op, 0)
    if op.name == "LEAKY_RELU":
        slope = t.constant(op, np.array(float(op.builtin_options.get("alpha", 0.2)), np.float32))
    else:
        slope = t.float_input(op, 1)
    t.set(op, t.add(op, "PRELU", [x, slope]))


def reshape(t: Translator, op: OperatorInfo) -> None:
    x = t.float_input(op, 0)
    shape = t.tensor_info(op.outputs[0]).shape
    t.set(op, t.add(op, "RESHAPE", [x], output_shape=tuple(shape)), shape_check=False)


def softmax(t: Translator, op: OperatorInfo) -> None:
    beta = float(op.builtin_options.get("beta", 1.0))
    t.set(op, t.add(op, "SOFTMAX", [t.float_input(op, 0)], beta=beta))


def transpose(t: Translator, op: OperatorInfo) -> None:
    perm = t.const(op, op.inputs[1], "the permutation").astype(int).reshape(-1)
    if perm[0] != 0:
        raise t.fail(op, "moving the batch axis")
    t.set(
        op,
        t.add(op, "TRANSPOSE", [t.float_input(op, 0)], **{f"perm_{i}": int(p) for i, p in enumerate(perm)}),
    )


def dequantize(t: Translator, op: OperatorInfo) -> None:
    value = t.array(op.inputs[0])
    if value is None or value.dtype != np.float16:
        raise t.fail(
            op, "quantised (int8) models are not supported: convert with --target lce or --target native"
        )
    t.arrays[op.outputs[0]] = value.astype(np.float32)


def quantize(t: Translator, op: OperatorInfo) -> None:
    raise t.fail(
        op, "quantised (int8) models are not supported: convert with --target lce or --target native"
    )


def greater_equal(t: Translator, op: OperatorInfo) -> None:
    """``x >= 0`` that only feeds ``SELECT_V2(., 1, -1)``: the float form of the binarizer."""
    zero = t.array(op.inputs[1])
    users = [t.model.operators[p] for p in t.consumers.get(op.outputs[0], [])]
    if zero is None or np.any(zero != 0) or not users or any(u.name != "SELECT_V2" for u in users):
        raise t.fail(op, "only as the binarizer SELECT_V2(x >= 0, 1, -1)")
    t.values[op.outputs[0]] = t.add(op, "QUANTIZE", [t.float_input(op, 0)])


def select_v2(t: Translator, op: OperatorInfo) -> None:
    condition = t.values.get(op.inputs[0])
    on_true, on_false = t.array(op.inputs[1]), t.array(op.inputs[2])
    if (
        condition is None or condition.dtype != "bits" or on_true is None or on_false is None
        or np.any(on_true != 1.0) or np.any(on_false != -1.0)
    ):  # fmt: skip
        raise t.fail(op, "only as the binarizer SELECT_V2(x >= 0, 1, -1)")
    t.set(op, t.add(op, "DEQUANTIZE", [condition]))


OPS = {
    "LceQuantize": lce_quantize, "LceDequantize": lce_dequantize, "LceBconv2d": lce_bconv2d,
    "LceBMaxPool2d": lce_bmaxpool, "CONV_2D": conv_2d, "DEPTHWISE_CONV_2D": conv_2d,
    "FULLY_CONNECTED": fully_connected, **dict.fromkeys(ELEMENTWISE, elementwise),
    "CONCATENATION": concatenation, "MAX_POOL_2D": pool, "AVERAGE_POOL_2D": pool,
    **dict.fromkeys(REDUCTIONS, reduction), "PAD": pad, "PADV2": pad, "MIRROR_PAD": pad,
    **dict.fromkeys(CLIPS, clip), "PRELU": prelu, "LEAKY_RELU": prelu, "RESHAPE": reshape,
    "SQUEEZE": reshape, "EXPAND_DIMS": reshape, "SOFTMAX": softmax, "TRANSPOSE": transpose,
    "DEQUANTIZE": dequantize, "QUANTIZE": quantize, "GREATER_EQUAL": greater_equal, "SELECT_V2": select_v2,
}  # fmt: skip
