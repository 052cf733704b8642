"""ONNX (NCHW) -> a TensorFlow NHWC function written in the patterns LCE turns into binary ops.

Every ONNX node is lowered by a small function registered in ``LOWERINGS`` by op type. Values carry
their layout: 4-D activations live in NHWC ("nhwc"); a flattened NHWC activation ("flat_nhwc")
stays in NHWC order until a Gemm/MatMul, whose weight rows are permuted instead of moving data;
everything else is "plain" (same axes as in ONNX). Constants stay numpy arrays.

Binary convolutions (see ``converter.graph``) are emitted as LCE expects them:
``tf.where(x >= 0, 1, -1)`` -> [``tf.pad(..., constant_values=1)``] -> ``conv2d(VALID)`` with a
+-1 filter -> ``* a_o`` -> ``+ bias``; before a Relu that is its only consumer, ``* a_o`` moves
after the Relu (a_o > 0) so that LCE fuses the Relu too. LCE's fused one-padding always computes
TF-SAME geometry, so a one-padding that differs from SAME (e.g. PyTorch ``padding=1, stride=2``) is emitted as
``tf.pad(x_float, 1.0)`` before the binarizer instead: exact, still binary, slightly slower.

    >>> from converter.graph import analyze, load_onnx, prepare
    >>> from converter.lowering import lower
    >>> info = analyze(prepare(load_onnx("model.onnx"), (1, 28, 28)))  # doctest: +SKIP
    >>> module, function = lower(info)  # a tf.Module and its concrete function  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from converter.errors import ConverterError
from converter.graph import GraphInfo, graph_input


def import_tensorflow():
    """TensorFlow with Keras 2 (larq and LCE need it); imported lazily, only by the converter."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with native_stderr_silenced():  # CUDA-probe chatter of the C++ runtime on a CPU-only machine
        import tensorflow as tf

    return tf


@contextlib.contextmanager
def native_stderr_silenced():
    """Send file descriptor 2 (C++ logs) to /dev/null for a while; Python exceptions still propagate."""
    if os.environ.get("EDGEBNN_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class Value:
    """A lowered tensor: a tf.Tensor or numpy constant, and how its axes relate to ONNX's."""

    tensor: object
    layout: str = "plain"  # "plain" | "nhwc" | "flat_nhwc"
    chw: tuple[int, int, int] | None = None  # for flat_nhwc: the (C, H, W) it was flattened from

    @property
    def is_const(self) -> bool:
        return isinstance(self.tensor, np.ndarray)


Lowering = Callable[["Context", onnx.NodeProto], list[Value]]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*op_types: str) -> Callable[[Lowering], Lowering]:
    def register(function: Lowering) -> Lowering:
        for op_type in op_types:
            LOWERINGS[op_type] = function
        return function

    return register


class Context:
    """The values lowered so far plus helpers shared by the lowering functions."""

    def __init__(self, tf, info: GraphInfo):
        self.tf = tf
        self.info = info
        self.values: dict[str, Value] = {name: Value(array) for name, array in info.constants.items()}

    def get(self, name: str) -> Value:
        return self.values[name]

    def attrs(self, node: onnx.NodeProto) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def const(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
        value = self.values.get(node.input[index]) if index < len(node.input) else None
        if value is None or not value.is_const:
            raise ConverterError(f"{node.op_type} node '{node.name}': {what} must be a constant")
        return value.tensor

    def plain(self, value: Value):
        """The tensor in ONNX axis order (moves data: only where a consumer needs it)."""
        tf = self.tf
        if value.layout == "nhwc":
            return tf.transpose(value.tensor, [0, 3, 1, 2])
        if value.layout == "flat_nhwc":
            c, h, w = value.chw
            nhwc = tf.reshape(value.tensor, [-1, h, w, c])
            return tf.reshape(tf.transpose(nhwc, [0, 3, 1, 2]), [-1, c * h * w])
        return value.tensor

    def nhwc(self, value: Value, node: onnx.NodeProto):
        if value.layout != "nhwc":
            raise ConverterError(f"{node.op_type} node '{node.name}': expected a 4-D NCHW activation")
        return value.tensor


def _static_shape(tensor) -> list[int]:
    return [int(d) for d in tensor.shape]


def _const_like(array: np.ndarray, layout: str, dtype=np.float32) -> np.ndarray:
    """A broadcastable ONNX constant rearranged to meet an NHWC activation."""
    array = np.asarray(array)
    if layout == "nhwc" and array.size > 1:
        array = array.reshape((1,) * (4 - array.ndim) + array.shape).transpose(0, 2, 3, 1)
    return array.astype(dtype) if array.dtype.kind == "f" else array


def _align(ctx: Context, values: list[Value]) -> tuple[list, str, tuple | None]:
    """Operands of an elementwise op in one layout (constants rearranged, never activations moved)."""
    activations = [v for v in values if not v.is_const]
    layouts = {v.layout for v in activations if v.layout != "plain" or _rank(v) == 4}
    if layouts == {"nhwc"} and all(v.layout == "nhwc" or _rank(v) <= 1 for v in activations):
        layout = "nhwc"
    elif len({v.layout for v in activations}) == 1 and activations and activations[0].layout == "flat_nhwc":
        layout = "flat_nhwc"
    else:
        layout = "plain"
    chw = activations[0].chw if layout == "flat_nhwc" else None
    tensors = []
    for value in values:
        if value.is_const:
            array = value.tensor
            if layout == "flat_nhwc" and array.size > 1:
                raise ConverterError(
                    "elementwise op with a constant on a flattened activation is not supported"
                )
            tensors.append(_const_like(array, layout) if array.size > 1 else _const_like(array, "plain"))
        elif layout == "plain":
            tensors.append(ctx.plain(value))
        else:
            tensors.append(value.tensor)
    return tensors, layout, chw


def _rank(value: Value) -> int:
    return len(value.tensor.shape)


# ----------------------------------------------------------------------------------- elementwise


def _elementwise(function_name: str) -> Lowering:
    def lower_elementwise(ctx: Context, node: onnx.NodeProto) -> list[Value]:
        values = [ctx.get(name) for name in node.input]
        if all(v.is_const for v in values):  # left over by the folder: compute with numpy
            result = getattr(np, NUMPY_FUNCTIONS[function_name])(*[v.tensor for v in values])
            return [Value(np.asarray(result))]
        tensors, layout, chw = _align(ctx, values)
        tf = ctx.tf
        tensors = [tf.constant(t) if isinstance(t, np.ndarray) else t for t in tensors]
        return [Value(getattr(tf.math, function_name)(*tensors), layout, chw)]

    return lower_elementwise


NUMPY_FUNCTIONS = {
    "add": "add",
    "subtract": "subtract",
    "multiply": "multiply",
    "divide": "divide",
    "greater_equal": "greater_equal",
    "greater": "greater",
    "less": "less",
}
for _op, _function in [
    ("Add", "add"),
    ("Sub", "subtract"),
    ("Mul", "multiply"),
    ("Div", "divide"),
    ("GreaterOrEqual", "greater_equal"),
    ("Greater", "greater"),
    ("Less", "less"),
]:
    LOWERINGS[_op] = _elementwise(_function)


@lowering("Where")
def lower_where(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    tf = ctx.tf
    float_input = ctx.info.binarizers.get(node.output[0])
    if float_input is not None:  # the binarizer LCE recognises
        return [_binarize(ctx, ctx.get(float_input))]
    tensors, layout, chw = _align(ctx, [ctx.get(name) for name in node.input])
    return [Value(tf.where(*tensors), layout, chw)]


def _binarize(ctx: Context, value: Value) -> Value:
    tf = ctx.tf
    return Value(tf.where(value.tensor >= 0.0, 1.0, -1.0), value.layout, value.chw)


@lowering("Sign")
def lower_sign(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    float_input = ctx.info.binarizers.get(node.output[0])
    if float_input is not None:  # Sign(Sign(x) + c): same values as the where-binarizer
        return [_binarize(ctx, ctx.get(float_input))]
    value = ctx.get(node.input[0])
    return [Value(ctx.tf.sign(value.tensor), value.layout, value.chw)]


@lowering("Relu")
def lower_relu(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    value = ctx.get(node.input[0])
    result = ctx.tf.nn.relu(value.tensor)
    scales = _deferred_scales(ctx.info, node)
    if scales is not None:  # relu(a * acc) = a * relu(acc): LCE fuses relu, then this mul
        result = result * scales
    return [Value(result, value.layout, value.chw)]


def _deferred_scales(info: GraphInfo, relu: onnx.NodeProto) -> np.ndarray | None:
    """The +-a_o weight scales of the binary conv before ``relu`` that its lowering left out."""
    conv = info.convs.get(relu.input[0])
    if conv is None or not conv.binary or conv.relu_after != relu.output[0]:
        return None
    return None if np.all(conv.scales == 1.0) else conv.scales


@lowering("Clip")
def lower_clip(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    value = ctx.get(node.input[0])
    attrs = ctx.attrs(node)
    low = ctx.const(node, 1, "min") if len(node.input) > 1 and node.input[1] else attrs.get("min", -np.inf)
    high = ctx.const(node, 2, "max") if len(node.input) > 2 and node.input[2] else attrs.get("max", np.inf)
    low, high = float(np.asarray(low)), float(np.asarray(high))
    tf = ctx.tf
    if (low, high) == (0.0, 6.0):
        result = tf.nn.relu6(value.tensor)
    else:
        result = tf.minimum(tf.maximum(value.tensor, low), high)
    return [Value(result, value.layout, value.chw)]


@lowering("PRelu")
def lower_prelu(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    value = ctx.get(node.input[0])
    slope = ctx.const(node, 1, "slope")
    if value.layout == "flat_nhwc" and slope.size > 1:
        value = Value(ctx.plain(value))
    slope = _const_like(slope, value.layout)
    tf = ctx.tf
    # Keras' PReLU formulation: the TFLite converter turns it into one PRELU op.
    result = tf.nn.relu(value.tensor) - slope * tf.nn.relu(-value.tensor)
    return [Value(result, value.layout, value.chw)]


@lowering("BatchNormalization")
def lower_batchnorm(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    gamma, beta, mean, var = (ctx.const(node, i, "BatchNormalization parameters") for i in range(1, 5))
    epsilon = ctx.attrs(node).get("epsilon", 1e-5)
    scale = (gamma / np.sqrt(var.astype(np.float64) + epsilon)).astype(np.float32)
    shift = (beta - mean * scale).astype(np.float32)
    value = ctx.get(node.input[0])
    if value.layout == "nhwc":  # a mul and an add: LCE fuses both into the binary conv before it
        return [Value(value.tensor * scale + shift, "nhwc")]
    tensor = ctx.plain(value)
    shape = [1, -1] + [1] * (len(tensor.shape) - 2)
    return [Value(tensor * scale.reshape(shape) + shift.reshape(shape))]


@lowering("Identity", "Dropout")
def lower_identity(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    return [ctx.get(node.input[0])]


@lowering("Constant")
def lower_constant(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    return [ctx.get(node.output[0])]


@lowering("Softmax")
def lower_softmax(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    tensor = ctx.plain(ctx.get(node.input[0]))
    axis = ctx.attrs(node).get("axis", -1)
    if axis not in (-1, len(tensor.shape) - 1):
        raise ConverterError(f"Softmax node '{node.name}': only the last axis is supported")
    return [Value(ctx.tf.nn.softmax(tensor))]


# ---------------------------------------------------------------------------------- convolution


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) of one spatial axis."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _conv_geometry(attrs: dict, kernel: tuple[int, int], in_hw: tuple[int, int]):
    strides = tuple(attrs.get("strides", [1, 1]))
    dilations = tuple(attrs.get("dilations", [1, 1]))
    auto_pad = attrs.get("auto_pad", b"NOTSET").decode()
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads_h = same_pads(in_hw[0], kernel[0], strides[0], dilations[0])
        pads_w = same_pads(in_hw[1], kernel[1], strides[1], dilations[1])
        if auto_pad == "SAME_LOWER":
            pads_h, pads_w = pads_h[::-1], pads_w[::-1]
        pads = (pads_h[0], pads_h[1], pads_w[0], pads_w[1])
    else:
        top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
        pads = (top, bottom, left, right)
    return strides, dilations, pads


def _padding_argument(pads, in_hw, kernel, strides, dilations):
    """'VALID', 'SAME' when the pads equal TF SAME geometry, else explicit NHWC paddings."""
    if not any(pads):
        return "VALID"
    same = same_pads(in_hw[0], kernel[0], strides[0], dilations[0]) + same_pads(
        in_hw[1], kernel[1], strides[1], dilations[1]
    )
    if tuple(pads) == same:
        return "SAME"
    return [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]]


@lowering("Conv")
def lower_conv(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    tf = ctx.tf
    weights = ctx.const(node, 1, "weights")
    if weights.ndim != 4:
        raise ConverterError(f"Conv node '{node.name}': only 2-D convolutions are supported")
    bias = ctx.const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
    attrs = ctx.attrs(node)
    conv = ctx.info.convs[node.output[0]]
    kernel = weights.shape[2:]
    if conv.binary:
        # Before a sole Relu the filter stays exactly +-1 (multiplier 1, bias 0): only then does
        # LCE fuse the Relu; lower_relu applies the scales after it.
        result = _binary_conv(ctx, node, conv, weights, attrs, scaled=conv.relu_after is None)
    else:
        x = ctx.nhwc(ctx.get(node.input[0]), node)
        in_hw = tuple(_static_shape(x)[1:3])
        strides, dilations, pads = _conv_geometry(attrs, kernel, in_hw)
        padding = _padding_argument(pads, in_hw, kernel, strides, dilations)
        result = _float_conv(tf, x, weights, attrs.get("group", 1), strides, dilations, padding)
    if bias is not None and np.any(bias):
        result = result + bias.astype(np.float32)
    return [Value(result, "nhwc")]


def _float_conv(tf, x, weights: np.ndarray, group: int, strides, dilations, padding):
    extra_rows = 0
    if isinstance(padding, list):
        in_hw = tuple(_static_shape(x)[1:3])
        if lce_mistakes_for_same(padding, in_hw, weights.shape[2:], strides, dilations):
            # LCE's pad fusion would turn this Pad + VALID conv into a SAME conv (wrong geometry):
            # pad `stride` more rows at the bottom so the sizes no longer match, then drop that row.
            extra_rows = strides[0]
            padding = [padding[0], [padding[1][0], padding[1][1] + extra_rows], padding[2], padding[3]]
        x, padding = tf.pad(x, padding), "VALID"
    result = _conv_groups(tf, x, weights, group, strides, dilations, padding)
    return result[:, : int(result.shape[1]) - 1] if extra_rows else result


def lce_mistakes_for_same(paddings, in_hw, kernel, strides, dilations) -> bool:
    """Whether LCE's Pad->Conv fusion would (wrongly) read these explicit pads as TF SAME.

    LCE 0.16 (fuse_padding.td / padding.h) fuses when, per axis, the output size is ceil(in/stride)
    and the pads split as (total // 2, (total + 1) // 2), without checking the total itself.
    """
    for axis in range(2):
        before, after = paddings[axis + 1]
        total = before + after
        effective = (kernel[axis] - 1) * dilations[axis] + 1
        out = (in_hw[axis] + total - effective) // strides[axis] + 1
        if out != math.ceil(in_hw[axis] / strides[axis]) or (before, after) != (total // 2, (total + 1) // 2):
            return False
    return True


def _conv_groups(tf, x, weights: np.ndarray, group: int, strides, dilations, padding):
    in_channels = int(x.shape[-1])
    if group == 1:
        return tf.nn.conv2d(x, weights.transpose(2, 3, 1, 0), strides, padding, dilations=dilations)
    if group == in_channels and weights.shape[1] == 1:
        multiplier = weights.shape[0] // in_channels
        depthwise = weights.reshape(in_channels, multiplier, *weights.shape[2:]).transpose(2, 3, 0, 1)
        return tf.nn.depthwise_conv2d(x, depthwise, (1, *strides, 1), padding, dilations=dilations)
    inputs = tf.split(x, group, axis=-1)
    filters = np.split(weights, group, axis=0)
    outputs = [
        tf.nn.conv2d(part, f.transpose(2, 3, 1, 0), strides, padding, dilations=dilations)
        for part, f in zip(inputs, filters, strict=True)
    ]
    return tf.concat(outputs, axis=-1)


def _binary_conv(
    ctx: Context, node: onnx.NodeProto, conv, weights: np.ndarray, attrs: dict, scaled: bool = True
):
    tf = ctx.tf
    x = ctx.nhwc(ctx.get(conv.float_input), node)
    in_hw = tuple(_static_shape(x)[1:3])
    kernel = weights.shape[2:]
    strides, dilations, _ = _conv_geometry(attrs, kernel, in_hw)
    pads = conv.one_pads or (0, 0, 0, 0)
    paddings = [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]]
    signs = np.where(weights >= 0, 1.0, -1.0).astype(np.float32).transpose(2, 3, 1, 0)
    if _padding_argument(pads, in_hw, kernel, strides, dilations) in ("VALID", "SAME"):
        # LCE's fused one-padding: exact because the padding is TF-SAME geometry.
        binarized = tf.where(x >= 0.0, 1.0, -1.0)
        if any(pads):
            binarized = tf.pad(binarized, paddings, constant_values=1.0)
    else:
        # Not SAME geometry (LCE would silently compute SAME): pad the float input with +1 instead.
        binarized = tf.where(tf.pad(x, paddings, constant_values=1.0) >= 0.0, 1.0, -1.0)
    result = tf.nn.conv2d(binarized, signs, strides, "VALID", dilations=dilations)
    if scaled and not np.all(conv.scales == 1.0):
        result = result * conv.scales
    return result


# ------------------------------------------------------------------------------------- pooling


def _pool(ctx: Context, node: onnx.NodeProto, kind: str) -> list[Value]:
    tf = ctx.tf
    x = ctx.nhwc(ctx.get(node.input[0]), node)
    attrs = ctx.attrs(node)
    kernel = tuple(attrs["kernel_shape"])
    if len(kernel) != 2:
        raise ConverterError(f"{node.op_type} node '{node.name}': only 2-D pooling is supported")
    in_hw = tuple(_static_shape(x)[1:3])
    strides, dilations, pads = _conv_geometry(attrs, kernel, in_hw)
    if dilations != (1, 1):
        raise ConverterError(f"{node.op_type} node '{node.name}': dilated pooling is not supported")
    padding = _padding_argument(pads, in_hw, kernel, strides, dilations)
    if attrs.get("ceil_mode", 0) and _ceil_changes_size(in_hw, kernel, strides, pads):
        # Extra windows past the end, averaged over what is inside: TF SAME pooling exactly when
        # SAME pads nothing before and gives the same size.
        same = [same_pads(n, k, st) for n, k, st in zip(in_hw, kernel, strides, strict=True)]
        ceil_size = [math.ceil((n - k) / st) + 1 for n, k, st in zip(in_hw, kernel, strides, strict=True)]
        if (
            any(pads)
            or any(p[0] for p in same)
            or ceil_size != [math.ceil(n / st) for n, st in zip(in_hw, strides, strict=True)]
        ):
            raise ConverterError(
                f"{node.op_type} node '{node.name}': ceil_mode=1 with this geometry is not supported"
            )
        padding = "SAME"
        if kind == "avg":
            attrs["count_include_pad"] = 0  # windows past the end never count the missing cells
    if kind == "avg" and attrs.get("count_include_pad", 0) and padding == "SAME":
        padding = [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]]  # TF SAME excludes pads
    if isinstance(padding, list):
        fill = -np.inf if kind == "max" else 0.0
        if kind == "avg" and not attrs.get("count_include_pad", 0):
            raise ConverterError(
                f"AveragePool node '{node.name}': padding {pads} that is not TF-SAME geometry is "
                "only supported with count_include_pad=1"
            )
        x, padding = tf.pad(x, padding, constant_values=fill), "VALID"
    function = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
    return [Value(function(x, kernel, strides, padding), "nhwc")]


def _ceil_changes_size(in_hw, kernel, strides, pads) -> bool:
    padded = (in_hw[0] + pads[0] + pads[1], in_hw[1] + pads[2] + pads[3])
    return any(
        (n - k) % st != 0 and math.ceil((n - k) / st) != (n - k) // st
        for n, k, st in zip(padded, kernel, strides, strict=True)
    )


@lowering("MaxPool")
def lower_maxpool(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    if len(node.output) > 1 and node.output[1]:
        raise ConverterError(f"MaxPool node '{node.name}': the Indices output is not supported")
    return _pool(ctx, node, "max")


@lowering("AveragePool")
def lower_avgpool(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    return _pool(ctx, node, "avg")


@lowering("GlobalAveragePool")
def lower_global_avgpool(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    x = ctx.nhwc(ctx.get(node.input[0]), node)
    return [Value(ctx.tf.reduce_mean(x, axis=[1, 2], keepdims=True), "nhwc")]


@lowering("GlobalMaxPool")
def lower_global_maxpool(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    x = ctx.nhwc(ctx.get(node.input[0]), node)
    return [Value(ctx.tf.reduce_max(x, axis=[1, 2], keepdims=True), "nhwc")]


NHWC_AXIS = (0, 3, 1, 2)  # ONNX NCHW axis -> its NHWC axis


@lowering("ReduceMean", "ReduceMax", "ReduceSum")
def lower_reduce(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    tf = ctx.tf
    value = ctx.get(node.input[0])
    attrs = ctx.attrs(node)
    axes = attrs.get("axes")
    if len(node.input) > 1 and node.input[1]:  # opset >= 18 (ReduceSum >= 13): axes are an input
        axes = [int(a) for a in ctx.const(node, 1, "axes")]
    keepdims = bool(attrs.get("keepdims", 1))
    function = {"ReduceMean": tf.reduce_mean, "ReduceMax": tf.reduce_max, "ReduceSum": tf.reduce_sum}[
        node.op_type
    ]
    if value.layout == "nhwc":
        axes = sorted(a % 4 for a in (axes if axes is not None else range(4)))
        nhwc_axes = sorted(NHWC_AXIS[a] for a in axes)
        result = function(value.tensor, axis=nhwc_axes, keepdims=keepdims)
        if keepdims:
            return [Value(result, "nhwc")]
        if axes == [2, 3] or 1 in axes:  # what remains is in ONNX order already ([N, C] or [N, H, W])
            return [Value(result)]
        return [Value(function(ctx.plain(value), axis=axes, keepdims=False))]
    tensor = ctx.plain(value)
    return [Value(function(tensor, axis=axes, keepdims=keepdims))]


@lowering("Pad")
def lower_pad(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    tf = ctx.tf
    value = ctx.get(node.input[0])
    attrs = ctx.attrs(node)
    mode = attrs.get("mode", b"constant").decode()
    pads = ctx.const(node, 1, "pads").astype(int)
    if len(node.input) > 3 and node.input[3]:
        raise ConverterError(f"Pad node '{node.name}': the axes input is not supported")
    fill = float(ctx.const(node, 2, "the pad value")) if len(node.input) > 2 and node.input[2] else 0.0
    rank = len(pads) // 2
    paddings = [[int(pads[i]), int(pads[i + rank])] for i in range(rank)]
    if np.any(pads < 0):
        raise ConverterError(f"Pad node '{node.name}': negative pads (cropping) are not supported")
    if value.layout == "nhwc":
        paddings = [paddings[0], paddings[2], paddings[3], paddings[1]]
        tensor = value.tensor
    else:
        tensor = ctx.plain(value)
    modes = {"constant": "CONSTANT", "reflect": "REFLECT", "edge": None}
    if modes.get(mode) is None:
        raise ConverterError(f"Pad node '{node.name}': mode '{mode}' is not supported (constant, reflect)")
    result = tf.pad(tensor, paddings, mode=modes[mode], constant_values=fill)
    return [Value(result, "nhwc" if value.layout == "nhwc" else "plain")]


# ------------------------------------------------------------------------ shapes and dense layers


def _flatten(value: Value, ctx: Context) -> Value:
    tf = ctx.tf
    n, h, w, c = _static_shape(value.tensor)
    if h == 1 and w == 1:  # NHWC and NCHW orders agree: nothing to permute
        return Value(tf.reshape(value.tensor, [n, c]))
    return Value(tf.reshape(value.tensor, [n, h * w * c]), "flat_nhwc", (c, h, w))


@lowering("Flatten")
def lower_flatten(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    value = ctx.get(node.input[0])
    axis = ctx.attrs(node).get("axis", 1)
    if value.layout == "nhwc" and axis == 1:
        return [_flatten(value, ctx)]
    tensor = ctx.plain(value)
    shape = _static_shape(tensor)
    axis = axis % len(shape) if shape else 0
    return [Value(ctx.tf.reshape(tensor, [math.prod(shape[:axis]), math.prod(shape[axis:])]))]


@lowering("Reshape")
def lower_reshape(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    value = ctx.get(node.input[0])
    target = [int(d) for d in ctx.const(node, 1, "the target shape")]
    if value.is_const:
        return [Value(value.tensor.reshape(target))]
    shape = ctx.info.shapes.get(node.output[0])
    if shape is None:
        in_shape = _static_shape(ctx.plain(value)) if value.layout != "plain" else _static_shape(value.tensor)
        shape = list(np.empty(in_shape, dtype=np.bool_).reshape(target).shape)
    if value.layout == "nhwc" and len(shape) == 2:
        n, h, w, c = _static_shape(value.tensor)
        if shape == [n, c * h * w]:
            return [_flatten(value, ctx)]
    result = ctx.tf.reshape(ctx.plain(value), shape)
    if len(shape) == 4:
        return [Value(ctx.tf.transpose(result, [0, 2, 3, 1]), "nhwc")]
    return [Value(result)]


def _dense_weights(value: Value, weights: np.ndarray) -> np.ndarray:
    """Rows of a [K, M] weight matrix reordered from NCHW-flatten to NHWC-flatten order."""
    if value.layout != "flat_nhwc":
        return weights
    c, h, w = value.chw
    return weights.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)


@lowering("Gemm")
def lower_gemm(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    attrs = ctx.attrs(node)
    value = ctx.get(node.input[0])
    if attrs.get("transA", 0):
        raise ConverterError(f"Gemm node '{node.name}': transA=1 is not supported")
    weights = ctx.const(node, 1, "B (weights)").astype(np.float32)
    if attrs.get("transB", 0):
        weights = weights.T
    weights = _dense_weights(value, weights * attrs.get("alpha", 1.0))
    tensor = value.tensor if value.layout == "flat_nhwc" else ctx.plain(value)
    result = ctx.tf.matmul(tensor, weights)
    if len(node.input) > 2 and node.input[2]:
        bias = ctx.const(node, 2, "C (bias)").astype(np.float32) * attrs.get("beta", 1.0)
        result = result + bias
    return [Value(result)]


@lowering("MatMul")
def lower_matmul(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    value = ctx.get(node.input[0])
    weights = ctx.const(node, 1, "the right-hand side")
    if weights.ndim != 2:
        raise ConverterError(f"MatMul node '{node.name}': only a 2-D constant right-hand side is supported")
    weights = _dense_weights(value, weights.astype(np.float32))
    tensor = value.tensor if value.layout == "flat_nhwc" else ctx.plain(value)
    return [Value(ctx.tf.matmul(tensor, weights))]


@lowering("Concat")
def lower_concat(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    values = [ctx.get(name) for name in node.input]
    axis = ctx.attrs(node)["axis"]
    if all(v.is_const for v in values):
        return [Value(np.concatenate([v.tensor for v in values], axis=axis))]
    if all(v.layout == "nhwc" for v in values):
        return [Value(ctx.tf.concat([v.tensor for v in values], axis=(0, 3, 1, 2)[axis % 4]), "nhwc")]
    return [Value(ctx.tf.concat([ctx.plain(v) for v in values], axis=axis))]


@lowering("Transpose")
def lower_transpose(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    value = ctx.get(node.input[0])
    perm = ctx.attrs(node).get("perm")
    if value.is_const:
        return [Value(np.transpose(value.tensor, perm))]
    return [Value(ctx.tf.transpose(ctx.plain(value), perm))]


@lowering("Squeeze", "Unsqueeze")
def lower_squeeze(ctx: Context, node: onnx.NodeProto) -> list[Value]:
    value = ctx.get(node.input[0])
    shape = ctx.info.shapes.get(node.output[0])
    if shape is None:
        raise ConverterError(f"{node.op_type} node '{node.name}': output shape unknown")
    if value.is_const:
        return [Value(value.tensor.reshape(shape))]
    if value.layout == "nhwc" and len(shape) == 2 and shape[0] == value.tensor.shape[0]:
        return (
            [_flatten(value, ctx)]
            if math.prod(_static_shape(value.tensor)[1:3]) == 1
            else [Value(ctx.tf.reshape(ctx.plain(value), shape))]
        )
    return [Value(ctx.tf.reshape(ctx.plain(value), shape))]


# --------------------------------------------------------------------------------------- driver


def check_supported(info: GraphInfo) -> None:
    """ConverterError naming the first node whose op type has no lowering."""
    for node in info.model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in LOWERINGS:
            where = f" (domain {node.domain})" if node.domain not in ("", "ai.onnx") else ""
            raise ConverterError(
                f"unsupported ONNX op {node.op_type}{where} in node '{node.name or node.output[0]}'; "
                f"supported: {', '.join(sorted(LOWERINGS))}"
            )


def lower(info: GraphInfo):
    """A ``tf.Module`` whose ``serve`` concrete function computes the model on NHWC input."""
    check_supported(info)
    tf = import_tensorflow()
    value = graph_input(info.model)
    shape = info.shapes[value.name]
    output_name = info.model.graph.output[0].name
    nhwc_input = len(shape) == 4
    signature_shape = [shape[0], shape[2], shape[3], shape[1]] if nhwc_input else shape

    def compute(x):
        ctx = Context(tf, info)
        ctx.values[value.name] = Value(x, "nhwc" if nhwc_input else "plain")
        for node in info.model.graph.node:
            outputs = LOWERINGS[node.op_type](ctx, node)
            for name, result in zip(node.output, outputs, strict=False):
                ctx.values[name] = result
        result = ctx.values[output_name]
        tensor = ctx.plain(result)
        if isinstance(tensor, np.ndarray):
            raise ConverterError("the model's output does not depend on its input")
        return tf.identity(tensor, name="logits")

    module = tf.Module()
    module.serve = tf.function(
        compute, autograph=False, input_signature=[tf.TensorSpec(signature_shape, tf.float32, "input")]
    )
    return module, module.serve.get_concrete_function()
