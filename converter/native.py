"""ONNX -> native ``.ebnn``: the analysed graph the LCE lowering uses, written as ``formats.ebnn`` ops.

The input is the prepared and analysed ONNX graph (``converter.graph.prepare`` + ``analyze``), the
same one ``converter.lowering`` turns into LCE patterns; no TensorFlow is involved. A small binary
model (the one of ``converter.graph``'s example) lowered and read back:

    >>> import numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> from converter.graph import analyze, prepare
    >>> from converter.native import lower_native
    >>> from formats.ebnn import read
    >>> consts = [numpy_helper.from_array(np.array(v, np.float32), n)
    ...           for n, v in (("zero", 0.0), ("one", 1.0), ("minus_one", -1.0))]
    >>> weights = np.where(np.arange(18) % 3, 0.5, -0.5).astype(np.float32).reshape(2, 1, 3, 3)
    >>> nodes = [helper.make_node("GreaterOrEqual", ["input", "zero"], ["ge"]),
    ...          helper.make_node("Where", ["ge", "one", "minus_one"], ["signs"]),
    ...          helper.make_node("Conv", ["signs", "w"], ["logits"], name="bconv")]
    >>> io = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 5, 5]),
    ...       helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, 3, 3])]
    >>> graph = helper.make_graph(nodes, "bnn", io[:1], io[1:], [*consts, numpy_helper.from_array(weights, "w")])
    >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    >>> lowered = lower_native(analyze(prepare(model, (1, 5, 5))))
    >>> [op.op for op in read(lowered.data).ops], lowered.binary_convs
    (['QUANTIZE', 'BCONV2D', 'TRANSPOSE'], ['bconv'])

How the ONNX patterns become native ops (docs/converter.md, "Target native"):

- A binarizer (``converter.graph``: ``Where(x >= 0, 1, -1)``, ``Sign(Sign(x) + c)``) is QUANTIZE of
  its float input (one per input tensor, shared by its consumers); where a float op reads the +-1
  values, a DEQUANTIZE. A BatchNorm (or constant scale/shift) that only feeds binarizers folds into
  the QUANTIZE's multiplier and bias.
- A binary ``Conv`` (binarized input, weights +-a_o per output channel, 2-D) is BCONV2D: weights
  bit-packed along input channels (OHWI); a ``Pad(value=1)`` before it is one-padding, zero pads
  (``Pad(value=0)`` or the Conv's ``pads``) are zero-padding, both at any geometry (no TF-SAME
  restriction as in LCE); groups and dilations as given. The chain after it - ``Relu``, BatchNorm,
  constant Mul/Add/Sub/Div, ``Relu``/``Clip`` - folds into its per-channel multiplier and bias and
  its clamps (a Relu before any bias is a clamp of the integer dot product). When the chain's end
  only feeds binarizers (directly or through max-pools) the conv writes bits: integer thresholds,
  channels with a negative multiplier have their filter negated (``formats.ebnn.bit_output_thresholds``),
  and a max-pool in between becomes BMAXPOOL2D, which is exact (sign is monotonic).
- Float ``Conv`` (depthwise and grouped too), ``Gemm``/``MatMul`` absorb the BatchNorm, scale,
  shift and clamps after them into their weights, bias and output clamp; a zero ``Pad`` only feeding
  a float conv becomes its pads. Elementwise ops absorb the Relu/Clip after them.
- Layout, as in ``converter.lowering``: 4-D activations are NHWC; a flatten of an NHWC activation
  stays in NHWC order and the dense layer after it gets its weight rows permuted (no data moved);
  other values keep the ONNX axis order. The graph output is in ONNX order.

An op or pattern with no native lowering is a ConverterError naming the node. The deploy metadata
of the ONNX model goes into the file's metadata section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx

from converter.errors import ConverterError
from converter.graph import GraphInfo, binary_weight_scales, graph_input
from formats.ebnn import INT32_MAX, INT32_MIN, ModelBuilder, Tensor, bit_output_thresholds, same_pads
from formats.errors import FormatError
from formats.metadata import DeployMetadata

NHWC_AXIS = (0, 3, 1, 2)  # ONNX NCHW axis -> its NHWC axis
NCHW_FROM_NHWC = (0, 3, 1, 2)  # TRANSPOSE perm that turns NHWC into NCHW
NCHW_OF_NHWC = (0, 2, 3, 1)  # NHWC axis -> the ONNX NCHW axis it holds
ELEMENTWISE = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL", "Div": "DIV", "Max": "MAXIMUM", "Min": "MINIMUM"}
NUMPY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Max": np.maximum,
         "Min": np.minimum}  # fmt: skip


@dataclass
class NativeLowering:
    """The ``.ebnn`` bytes and what became of every convolution meant as binary."""

    data: bytes
    binary_convs: list[str]  # ONNX Conv names that are BCONV2D
    float_binary_convs: dict[str, str]  # meant as binary (binarized input) but float here: reason
    bit_outputs: int = 0  # BCONV2D ops that write bits (thresholds)


@dataclass
class Value:
    """A lowered tensor: an activation of the builder or a numpy constant, and its layout."""

    tensor: Tensor | None = None
    array: np.ndarray | None = None
    layout: str = "plain"  # "nhwc" | "flat_nhwc" | "plain" (ONNX axis order)
    chw: tuple[int, int, int] | None = None  # flat_nhwc: the (C, H, W) it was flattened from

    @property
    def is_const(self) -> bool:
        return self.array is not None


@dataclass
class BinaryPlan:
    """How one ONNX Conv runs as BCONV2D."""

    node: onnx.NodeProto
    float_input: str  # the float tensor whose signs the conv reads
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    pad_value: int  # 1: one-padding, 0: zero-padding
    pad_node: onnx.NodeProto | None  # the Pad it absorbs
    strides: tuple[int, int]
    dilations: tuple[int, int]
    groups: int
    signs: np.ndarray  # OHWI +-1
    scales: np.ndarray  # a_o > 0
    bias: np.ndarray | None


@dataclass
class Transform:
    """One fusible node after a base op: ``y = x * scale + shift`` or ``y = clamp(x, low, high)``."""

    node: onnx.NodeProto
    kind: str  # "affine" | "clamp"
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    low: float = -math.inf
    high: float = math.inf

    @property
    def output(self) -> str:
        return self.node.output[0]


@dataclass
class Fusion:
    """A base op with the transforms it absorbs; its result is the last transform's output."""

    transforms: list[Transform] = field(default_factory=list)
    end: str = ""
    bits: bool = False  # BCONV2D writing bits (the end only feeds binarizers)


def node_label(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv_geometry(attrs: dict, kernel, in_hw) -> tuple[tuple[int, int], tuple[int, int], tuple[int, ...]]:
    """(strides, dilations, (top, bottom, left, right)) of an ONNX Conv/pool, auto_pad resolved."""
    strides = tuple(int(s) for s in attrs.get("strides", [1, 1]))
    dilations = tuple(int(d) for d in attrs.get("dilations", [1, 1]))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        ph = same_pads(in_hw[0], kernel[0], strides[0], dilations[0])
        pw = same_pads(in_hw[1], kernel[1], strides[1], dilations[1])
        if auto_pad == "SAME_LOWER":
            ph, pw = ph[::-1], pw[::-1]
        return strides, dilations, (ph[0], ph[1], pw[0], pw[1])
    top, left, bottom, right = (int(p) for p in attrs.get("pads", [0, 0, 0, 0]))
    return strides, dilations, (top, bottom, left, right)


def _per_channel(array: np.ndarray | None, shape: list[int] | None) -> np.ndarray | None:
    """A constant that broadcasts over a tensor of ``shape`` varying along axis 1 only, as [C]."""
    if array is None or shape is None or len(shape) < 2:
        return None
    channels, rank = shape[1], len(shape)
    a = np.asarray(array, dtype=np.float64)
    if a.size == 1:
        return np.full(channels, float(a.reshape(-1)[0]))
    if a.ndim > rank:
        return None
    a = a.reshape((1,) * (rank - a.ndim) + a.shape)
    if any(d != 1 for i, d in enumerate(a.shape) if i != 1) or a.shape[1] not in (1, channels):
        return None
    return np.broadcast_to(a.reshape(-1), (channels,)).astype(np.float64)


class Lowering:
    """One lowering run: the analysis, the decisions of the pre-pass, then the emitted ops."""

    def __init__(self, info: GraphInfo, metadata: DeployMetadata | None):
        self.info = info
        self.graph = info.model.graph
        self.outputs = {value.name for value in self.graph.output}
        self.builder = ModelBuilder(metadata if metadata is not None and metadata.to_dict() else None)
        self.values: dict[str, Value] = {name: Value(array=array) for name, array in info.constants.items()}
        self.bits_values: dict[str, Tensor] = {}
        self.plain_cache: dict[str, Value] = {}
        self.skip: set[str] = set()  # output[0] of nodes whose result another op computes
        self.fusions: dict[str, Fusion] = {}  # output[0] of a base node -> what it absorbs
        self.plans: dict[str, BinaryPlan] = {}  # Conv output -> its BCONV2D plan
        self.float_reasons: dict[str, str] = {}  # Conv output -> why a binarized conv stays float
        self.folded_pads: dict[str, tuple[str, tuple[int, int, int, int]]] = {}  # float Conv -> Pad
        self.quantize_folds: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
        self._bit_only: dict[str, bool] = {}
        self.bit_outputs = 0

    # ----------------------------------------------------------------------------- small helpers

    def fail(self, node: onnx.NodeProto, message: str) -> ConverterError:
        return ConverterError(f"{node.op_type} node '{node_label(node)}': {message} (target native)")

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return self.info.consumers.get(name, [])

    def shape(self, name: str) -> list[int] | None:
        return self.info.shapes.get(name)

    def sole_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers(name)
        if len(users) != 1 or name in self.outputs:
            return None
        return users[0]

    def op(self, node: onnx.NodeProto, op: str, inputs, suffix: str = "", **params) -> Tensor:
        """Append a builder op named after the ONNX node; a format error names the node."""
        name = node_label(node) + suffix
        try:
            return self.builder.add_op(op, inputs, name=name, **params)
        except FormatError as error:
            raise self.fail(node, str(error)) from None

    def constant(self, node: onnx.NodeProto, array: np.ndarray, dtype: str = "f32", name: str = "") -> Tensor:
        array = np.asarray(array)
        if dtype == "f32":
            array = array.astype(np.float32)
        try:
            return self.builder.add_constant(array, dtype=dtype, name=name)
        except FormatError as error:
            raise self.fail(node, str(error)) from None

    # ---------------------------------------------------------------------------- values by demand

    def value(self, name: str) -> Value:
        """The float (or constant) value of an ONNX tensor; DEQUANTIZE for binarizer outputs."""
        if name in self.values:
            return self.values[name]
        if name in self.info.binarizers:
            source = self.info.binarizers[name]
            bits = self.bits(source)
            node = self.info.producers[name]
            layout = self._layout_of_source(source)
            value = Value(self.op(node, "DEQUANTIZE", [bits], ":dequantize"), layout=layout[0], chw=layout[1])
            self.values[name] = value
            return value
        producer = self.info.producers.get(name)
        where = f" (made by {producer.op_type} node '{node_label(producer)}')" if producer else ""
        raise ConverterError(
            f"internal error of the native lowering: tensor '{name}'{where} was never lowered"
        )

    def _layout_of_source(self, source: str) -> tuple[str, tuple | None]:
        if source in self.values:
            return self.values[source].layout, self.values[source].chw
        shape = self.shape(source)
        return ("nhwc" if shape is not None and len(shape) == 4 else "plain"), None

    def float4d(self, name: str, node: onnx.NodeProto) -> Value:
        value = self.value(name)
        if value.is_const or value.layout != "nhwc":
            raise self.fail(node, "expected a 4-D NCHW activation as input")
        return value

    def bits(self, name: str) -> Tensor:
        """The sign bits of the float tensor ``name`` (bit 1 iff < 0)."""
        if name in self.bits_values:
            return self.bits_values[name]
        producer = self.info.producers.get(name)
        node = (
            producer if producer is not None else onnx.helper.make_node("Identity", [name], [name], name=name)
        )
        if name in self.quantize_folds:
            source, multiplier, bias = self.quantize_folds[name]
            x = self.value(source)
            tensor = self.op(
                node,
                "QUANTIZE",
                [x.tensor, self.constant(node, multiplier), self.constant(node, bias)],
                ":quantize",
            )
        else:
            x = self.value(name)
            if x.is_const:
                raise self.fail(node, "a binarizer of a constant is not supported")
            tensor = self.op(node, "QUANTIZE", [x.tensor], ":quantize")
        self.bits_values[name] = tensor
        return tensor

    def plain(self, name: str, value: Value, node: onnx.NodeProto) -> Value:
        """The value in ONNX axis order (moves data: only where a consumer needs it)."""
        if value.is_const or value.layout == "plain":
            return value
        key = name or str(id(value))
        if key in self.plain_cache:
            return self.plain_cache[key]
        shape = value.tensor.shape
        if value.layout == "nhwc":
            _, h, w, c = shape
            if h * w == 1 or c == 1:
                tensor = self.op(node, "RESHAPE", [value.tensor], ":nchw", output_shape=(1, c, h, w))
            else:
                tensor = self.op(node, "TRANSPOSE", [value.tensor], ":nchw", **_perm(NCHW_FROM_NHWC))
        else:  # flat_nhwc
            c, h, w = value.chw
            nhwc = self.op(node, "RESHAPE", [value.tensor], ":nhwc", output_shape=(1, h, w, c))
            nchw = self.op(node, "TRANSPOSE", [nhwc], ":nchw", **_perm(NCHW_FROM_NHWC))
            tensor = self.op(node, "RESHAPE", [nchw], ":flat", output_shape=(1, c * h * w))
        result = Value(tensor)
        self.plain_cache[key] = result
        return result

    # -------------------------------------------------------------------------------- pre-pass

    def binarizer_parts(self) -> set[str]:
        """output[0] of the nodes inside binarizers (the binarized value is computed from bits)."""
        parts: set[str] = set()
        for output in self.info.binarizers:
            node = self.info.producers[output]
            inner: list[onnx.NodeProto] = []
            if node.op_type == "Where":
                inner = [self.info.producers[node.input[0]]]
            elif node.op_type == "Sign":
                add = self.info.producers[node.input[0]]
                inner = [add] + [
                    self.info.producers[i] for i in add.input if i in self.info.producers
                    and self.info.producers[i].op_type == "Sign"
                ]  # fmt: skip
            if all(len(self.consumers(n.output[0])) == 1 and n.output[0] not in self.outputs for n in inner):
                parts.update(n.output[0] for n in inner)
            parts.add(output)  # the binarized value itself: DEQUANTIZE on demand
        return parts

    def is_binarizer_start(self, node: onnx.NodeProto, source: str) -> bool:
        """Whether ``node`` is the first node of a binarizer of ``source`` whose other nodes are skipped."""
        for output, float_input in self.info.binarizers.items():
            if float_input != source:
                continue
            end = self.info.producers[output]
            if end.op_type == "Where" and end.input[0] == node.output[0] and node.output[0] in self.skip:
                return True
            if end.op_type == "Sign" and node.op_type == "Sign" and node.output[0] in self.skip:
                return True
        return False

    def bit_only(self, name: str) -> bool:
        """True when only the signs of ``name`` are needed: it feeds binarizers and bit max-pools only."""
        if name in self._bit_only:
            return self._bit_only[name]
        self._bit_only[name] = False  # no cycles in a DAG; guards re-entry
        users = self.consumers(name)
        result = bool(users) and name not in self.outputs
        for user in users:
            if self.is_binarizer_start(user, name):
                continue
            if user.op_type == "MaxPool" and self._bit_maxpool(user) and self.bit_only(user.output[0]):
                continue
            result = False
            break
        self._bit_only[name] = result
        return result

    def _bit_maxpool(self, node: onnx.NodeProto) -> bool:
        attrs = _attrs(node)
        if len(node.output) > 1 and node.output[1]:
            return False
        return len(attrs.get("kernel_shape", [])) == 2 and tuple(attrs.get("dilations", [1, 1])) == (1, 1)

    def transform(self, node: onnx.NodeProto, source: str) -> Transform | None:
        """``node`` as a fusible transform of its input ``source``, or None."""
        shape = self.shape(source)
        op = node.op_type
        if op == "Relu" and node.input[0] == source:
            return Transform(node, "clamp", low=0.0)
        if op == "Clip" and node.input[0] == source:
            low, high = self._clip_bounds(node)
            return None if low is None else Transform(node, "clamp", low=low, high=high)
        if op == "BatchNormalization" and node.input[0] == source:
            params = [self.info.const(i) for i in node.input[1:5]]
            if any(p is None for p in params) or shape is None or len(shape) < 2:
                return None
            gamma, beta, mean, var = (np.asarray(p, np.float64).reshape(-1) for p in params)
            epsilon = _attrs(node).get("epsilon", 1e-5)
            scale = gamma / np.sqrt(var + epsilon)
            return Transform(node, "affine", scale=scale, shift=beta - mean * scale)
        if op in ("Add", "Sub", "Mul", "Div") and len(node.input) == 2:
            a, b = node.input
            other = b if a == source else a if b == source else None
            if other is None or a == b:
                return None
            constant = _per_channel(self.info.const(other), shape)
            if constant is None:
                return None
            ones, zeros = np.ones_like(constant), np.zeros_like(constant)
            if op == "Add":
                return Transform(node, "affine", scale=ones, shift=constant)
            if op == "Mul":
                return Transform(node, "affine", scale=constant, shift=zeros)
            if op == "Sub":
                if a == source:
                    return Transform(node, "affine", scale=ones, shift=-constant)
                return Transform(node, "affine", scale=-ones, shift=constant)
            if a == source and np.all(constant != 0):  # Div(x, c)
                return Transform(node, "affine", scale=1.0 / constant, shift=zeros)
        return None

    def _clip_bounds(self, node: onnx.NodeProto) -> tuple[float | None, float]:
        attrs = _attrs(node)
        low, high = attrs.get("min", -np.inf), attrs.get("max", np.inf)
        if len(node.input) > 1 and node.input[1]:
            low = self.info.const(node.input[1])
        if len(node.input) > 2 and node.input[2]:
            high = self.info.const(node.input[2])
        if low is None or high is None:
            return None, math.inf
        return float(np.asarray(low).reshape(-1)[0]), float(np.asarray(high).reshape(-1)[0])

    def chain(self, start: str) -> list[Transform]:
        """The fusible transforms after ``start`` (each tensor with one consumer, none an output)."""
        found: list[Transform] = []
        current = start
        while True:
            user = self.sole_consumer(current)
            if user is None or user.output[0] in self.skip:
                return found
            step = self.transform(user, current)
            if step is None:
                return found
            found.append(step)
            current = step.output

    def plan_binary(self, node: onnx.NodeProto) -> BinaryPlan | str | None:
        """The BCONV2D plan of a Conv, the reason a binarized one stays float, or None (a float layer)."""
        weights = self.info.const(node.input[1])
        source, pad_node, pad_value, extra = node.input[0], None, None, (0, 0, 0, 0)
        producer = self.info.producers.get(source)
        if producer is not None and producer.op_type == "Pad" and producer.input[0] in self.info.binarizers:
            pads = self._spatial_pads(producer)
            fill = (
                self.info.const(producer.input[2]) if len(producer.input) > 2 and producer.input[2] else 0.0
            )
            fill = float(np.asarray(fill).reshape(-1)[0]) if fill is not None else None
            if pads is not None and fill in (0.0, 1.0):
                pad_node, pad_value, extra, source = producer, int(fill), pads, producer.input[0]
        if source not in self.info.binarizers:
            if source in self.info.plain_signs:
                return "input binarized by plain Sign (sign(0) = 0 has no bit): float CONV2D on SIGN"
            return None
        if weights is None:
            return "weights are not constant: float CONV2D"
        if weights.ndim != 4:
            return "only 2-D binary convolutions are supported: float"
        scales = binary_weight_scales(weights)
        if scales is None:
            return "weights are not +-a per output channel: float CONV2D"
        attrs = _attrs(node)
        in_shape = self.shape(source)
        if in_shape is None or len(in_shape) != 4:
            return "input shape unknown: float"
        strides, dilations, conv_pads = _conv_geometry(attrs, weights.shape[2:], in_shape[2:])
        if pad_value == 1 and any(conv_pads):
            return "one-padding (Pad value 1) and zero pads on the same conv: float CONV2D"
        if pad_value is None:
            pad_value = 0 if any(conv_pads) else 1
        pads = tuple(int(p + q) for p, q in zip(extra, conv_pads, strict=True))
        bias = self.info.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        signs = np.where(weights >= 0, 1.0, -1.0).astype(np.float32).transpose(0, 2, 3, 1)
        return BinaryPlan(
            node, self.info.binarizers[source], pads, pad_value, pad_node, strides, dilations,
            int(attrs.get("group", 1)), signs, scales.astype(np.float64),
            None if bias is None or not np.any(bias) else np.asarray(bias, np.float64),
        )  # fmt: skip

    def _spatial_pads(self, node: onnx.NodeProto) -> tuple[int, int, int, int] | None:
        """(top, bottom, left, right) of a constant-mode 4-D Pad that pads only H and W."""
        mode = _attrs(node).get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = self.info.const(node.input[1]) if len(node.input) > 1 else None
        if mode != "constant" or pads is None or pads.size != 8 or (len(node.input) > 3 and node.input[3]):
            return None
        n0, c0, top, left, n1, c1, bottom, right = (int(p) for p in pads)
        if n0 or c0 or n1 or c1 or min(top, left, bottom, right) < 0:
            return None
        return top, bottom, left, right

    def absorb(self, kind: str, transforms: list[Transform], plan: BinaryPlan | None = None) -> int:
        """How many of ``transforms`` a base of ``kind`` ("affine", "bconv", "clamp") absorbs."""
        clamped, low, high = False, -math.inf, math.inf
        linear = plan is not None and plan.bias is None  # y = m * dot with m > 0 so far
        for count, step in enumerate(transforms):
            if step.kind == "affine":
                if clamped or kind == "clamp":
                    return count
                linear = linear and not np.any(step.shift) and bool(np.all(step.scale > 0))
                continue
            if kind == "bconv" and linear and not clamped and step.low == 0.0 and step.high == math.inf:
                continue  # relu(a * dot) = a * relu(dot) while the multiplier is positive: a clamp of dot
            new_low, new_high = max(low, step.low), min(high, step.high)
            if new_low > new_high:
                return count
            clamped, low, high = True, new_low, new_high
        return len(transforms)

    def prepass(self) -> None:
        nodes = list(self.graph.node)
        for node in nodes:  # binary conv decisions first: they decide which Pads disappear
            if node.op_type == "Conv":
                plan = self.plan_binary(node)
                if isinstance(plan, BinaryPlan):
                    self.plans[node.output[0]] = plan
                elif isinstance(plan, str):
                    self.float_reasons[node.output[0]] = plan
        for node in nodes:
            if node.op_type == "Pad":
                users = self.consumers(node.output[0])
                if (
                    users
                    and node.output[0] not in self.outputs
                    and all(
                        u.op_type == "Conv"
                        and u.output[0] in self.plans
                        and self.plans[u.output[0]].pad_node is not None
                        and self.plans[u.output[0]].pad_node.output[0] == node.output[0]
                        for u in users
                    )
                ):
                    self.skip.add(node.output[0])
                    continue
                user = self.sole_consumer(node.output[0])
                pads = self._spatial_pads(node)
                fill = (
                    self.info.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
                )
                if (
                    user is not None and user.op_type == "Conv" and user.output[0] not in self.plans
                    and user.input[0] == node.output[0] and pads is not None and fill is not None
                    and float(np.asarray(fill).reshape(-1)[0]) == 0.0
                ):  # fmt: skip
                    self.folded_pads[user.output[0]] = (node.input[0], pads)
                    self.skip.add(node.output[0])
        for node in nodes:
            key = node.output[0] if node.output else ""
            if key in self.skip:
                continue
            kind = None
            if node.op_type == "Conv":
                kind = "bconv" if key in self.plans else "affine"
            elif node.op_type in ("Gemm", "MatMul"):
                kind = "affine"
            elif node.op_type in ELEMENTWISE and not all(i in self.info.constants for i in node.input):
                kind = "clamp"
            if kind is None:
                continue
            transforms = self.chain(key)
            count = self.absorb(kind, transforms, self.plans.get(key))
            taken = transforms[:count]
            end = taken[-1].output if taken else key
            self.skip.update(t.output for t in taken)
            self.fusions[key] = Fusion(taken, end, bits=kind == "bconv" and self.bit_only(end))
        for node in nodes:  # leftover affine chains that feed binarizers only: QUANTIZE multiplier/bias
            self._plan_quantize_fold(node)

    def _plan_quantize_fold(self, node: onnx.NodeProto) -> None:
        key = node.output[0] if node.output else ""
        if key in self.skip or not self.bit_only(key) or key in self.bits_values:
            return
        if any(key == f.end and f.bits for f in self.fusions.values()):
            return
        steps: list[Transform] = []
        current = key
        while True:
            producer = self.info.producers.get(current)
            if producer is None or producer.output[0] in self.skip or producer.output[0] in self.fusions:
                break
            source = producer.input[0]
            if producer.op_type in ("Add", "Sub", "Mul", "Div") and source in self.info.constants:
                source = producer.input[1]
            user = self.sole_consumer(source)
            if user is None or user.output[0] != producer.output[0]:
                break
            step = self.transform(producer, source)
            if step is None or step.kind != "affine":
                break
            steps.insert(0, step)
            current = source
        shape = self.shape(current)
        if not steps or shape is None or len(shape) not in (2, 4):
            return
        scale, shift = np.ones(shape[1]), np.zeros(shape[1])
        for step in steps:
            scale, shift = scale * step.scale, shift * step.scale + step.shift
        self.quantize_folds[key] = (current, scale.astype(np.float32), shift.astype(np.float32))
        self.skip.update(step.output for step in steps)

    # ---------------------------------------------------------------------------------- emission

    def run(self) -> NativeLowering:
        value = graph_input(self.info.model)
        shape = self.info.shapes[value.name]
        if shape[0] != 1:
            raise ConverterError(
                f"input '{value.name}' has the static batch size {shape[0]}: the native target describes "
                "one sample (export the model with a dynamic or unit batch)"
            )
        self.skip |= self.binarizer_parts()
        self.check_supported()
        if len(shape) == 4:
            tensor = self.builder.add_input((1, shape[2], shape[3], shape[1]), name=value.name)
            self.values[value.name] = Value(tensor, layout="nhwc")
        else:
            self.values[value.name] = Value(self.builder.add_input(shape, name=value.name))
        self.prepass()
        for node in self.graph.node:
            if node.output and node.output[0] in self.skip:
                continue
            LOWERINGS[node.op_type](self, node)
        output_name = self.graph.output[0].name
        output = self.value(output_name)
        if output.is_const:
            raise ConverterError("the model's output does not depend on its input")
        producer = self.info.producers.get(output_name) or onnx.helper.make_node(
            "Identity", [], [output_name]
        )
        result = self.plain(output_name, output, producer)
        try:
            self.builder.set_outputs([result.tensor])
            data = self.builder.to_bytes()
        except FormatError as error:
            raise ConverterError(f"cannot write the native model: {error}") from None
        binary = [node_label(plan.node) for plan in self.plans.values()]
        floats = {node_label(self.info.producers[k]): reason for k, reason in self.float_reasons.items()}
        return NativeLowering(data, binary, floats, self.bit_outputs)

    def check_supported(self) -> None:
        for node in self.graph.node:
            if node.output and node.output[0] in self.skip:
                continue
            if node.domain not in ("", "ai.onnx") or node.op_type not in LOWERINGS:
                where = f" (domain {node.domain})" if node.domain not in ("", "ai.onnx") else ""
                raise ConverterError(
                    f"unsupported ONNX op {node.op_type}{where} in node '{node_label(node)}' for the "
                    f"native target; supported: {', '.join(sorted(LOWERINGS))} and the binarizers"
                )

    def store(self, name: str, tensor: Tensor, layout: str = "nhwc", chw=None) -> None:
        self.values[name] = Value(tensor, layout=layout, chw=chw)


def _perm(perm) -> dict[str, int]:
    return {f"perm_{i}": int(p) for i, p in enumerate(perm)}


def _clamp_params(low: float, high: float) -> dict[str, float]:
    params = {}
    if low != -math.inf:
        params["out_min"] = float(low)
    if high != math.inf:
        params["out_max"] = float(high)
    return params


def _fold_affine(transforms: list[Transform], channels: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(scale, shift, low, high) of absorbed affine-then-clamp transforms (``absorb`` "affine")."""
    scale, shift, low, high = np.ones(channels), np.zeros(channels), -math.inf, math.inf
    for step in transforms:
        if step.kind == "affine":
            scale, shift = scale * step.scale, shift * step.scale + step.shift
        else:
            low, high = max(low, step.low), min(high, step.high)
    return scale, shift, low, high


# --------------------------------------------------------------------------------------- lowerings

LOWERINGS: dict = {}


def lowering(*op_types: str):
    def register(function):
        for op_type in op_types:
            LOWERINGS[op_type] = function
        return function

    return register


@lowering("Conv")
def lower_conv(ctx: Lowering, node: onnx.NodeProto) -> None:
    key = node.output[0]
    fusion = ctx.fusions[key]
    if key in ctx.plans:
        _binary_conv(ctx, node, ctx.plans[key], fusion)
        return
    weights = ctx.info.const(node.input[1])
    if weights is None or weights.ndim != 4:
        raise ctx.fail(node, "only 2-D convolutions with constant weights are supported")
    source, extra = ctx.folded_pads.get(key, (node.input[0], (0, 0, 0, 0)))
    x = ctx.float4d(source, node)
    attrs = _attrs(node)
    _, h, w, _ = x.tensor.shape
    strides, dilations, pads = _conv_geometry(attrs, weights.shape[2:], (h, w))
    pads = tuple(p + q for p, q in zip(pads, extra, strict=True))
    bias = ctx.info.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    out_channels = weights.shape[0]
    scale, shift, low, high = _fold_affine(fusion.transforms, out_channels)
    filters = weights.astype(np.float64).transpose(0, 2, 3, 1) * scale[:, None, None, None]
    bias = (np.zeros(out_channels) if bias is None else np.asarray(bias, np.float64)) * scale + shift
    inputs = [x.tensor, ctx.constant(node, filters, name=node_label(node) + ".filter")]
    if np.any(bias):
        inputs.append(ctx.constant(node, bias, name=node_label(node) + ".bias"))
    tensor = ctx.op(
        node, "CONV2D", inputs, groups=int(attrs.get("group", 1)), **_geometry(strides, dilations, pads),
        **_clamp_params(low, high),
    )  # fmt: skip
    ctx.store(fusion.end, tensor)


def _geometry(strides, dilations, pads) -> dict[str, int]:
    return dict(
        stride_h=strides[0], stride_w=strides[1], dilation_h=dilations[0], dilation_w=dilations[1],
        pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3],
    )  # fmt: skip


def _binary_conv(ctx: Lowering, node: onnx.NodeProto, plan: BinaryPlan, fusion: Fusion) -> None:
    x = ctx.bits(plan.float_input)
    if len(x.shape) != 4:
        raise ctx.fail(node, "the binarized input must be a 4-D activation")
    out_channels = plan.signs.shape[0]
    multiplier = plan.scales.copy()
    bias = plan.bias.copy() if plan.bias is not None else np.zeros(out_channels)
    clamp_min, clamp_max, low, high, clamped = INT32_MIN, INT32_MAX, -math.inf, math.inf, False
    linear = plan.bias is None
    for step in fusion.transforms:  # the same walk as Lowering.absorb("bconv")
        if step.kind == "affine":
            multiplier, bias = multiplier * step.scale, bias * step.scale + step.shift
            linear = linear and not np.any(step.shift) and bool(np.all(step.scale > 0))
        elif linear and not clamped and step.low == 0.0 and step.high == math.inf:
            clamp_min = max(clamp_min, 0)
        else:
            clamped, low, high = True, max(low, step.low), min(high, step.high)
    geometry = _geometry(plan.strides, plan.dilations, plan.pads)
    geometry.update(pad_value=plan.pad_value, groups=plan.groups)
    label = node_label(node)
    if fusion.bits:
        threshold, flip = bit_output_thresholds(multiplier, bias, clamp_min, clamp_max, low, high)
        signs = plan.signs.copy()
        signs[flip] *= -1.0
        filters = ctx.constant(node, signs, "bits", name=label + ".filter")
        thresholds = ctx.constant(node, threshold, "i32", name=label + ".threshold")
        tensor = ctx.op(
            node, "BCONV2D", [x, filters, None, None, thresholds], output_dtype="bits", **geometry
        )
        ctx.bits_values[fusion.end] = tensor
        ctx.bit_outputs += 1
        return
    filters = ctx.constant(node, plan.signs, "bits", name=label + ".filter")
    inputs: list = [x, filters, None, None]
    if not np.all(multiplier == 1.0):
        inputs[2] = ctx.constant(node, multiplier, name=label + ".multiplier")
    if np.any(bias):
        inputs[3] = ctx.constant(node, bias, name=label + ".bias")
    if clamp_min != INT32_MIN:
        geometry["clamp_min"] = clamp_min
    tensor = ctx.op(node, "BCONV2D", inputs, **geometry, **_clamp_params(low, high))
    ctx.store(fusion.end, tensor)


@lowering("Gemm", "MatMul")
def lower_dense(ctx: Lowering, node: onnx.NodeProto) -> None:
    fusion = ctx.fusions[node.output[0]]
    x = ctx.value(node.input[0])
    weights = ctx.info.const(node.input[1])
    if x.is_const or weights is None or weights.ndim != 2:
        raise ctx.fail(node, "only an activation times a 2-D constant matrix is supported")
    weights = weights.astype(np.float64)
    bias = None
    if node.op_type == "Gemm":
        attrs = _attrs(node)
        if attrs.get("transA", 0):
            raise ctx.fail(node, "transA=1 is not supported")
        if attrs.get("transB", 0):
            weights = weights.T
        weights = weights * attrs.get("alpha", 1.0)
        if len(node.input) > 2 and node.input[2]:
            constant = ctx.info.const(node.input[2])
            if constant is None or constant.size not in (1, weights.shape[1]):
                raise ctx.fail(node, "the bias C must be a constant of one value per output")
            bias = np.broadcast_to(np.asarray(constant, np.float64).reshape(-1), (weights.shape[1],))
            bias = bias * attrs.get("beta", 1.0)
    if x.layout == "flat_nhwc":  # rows from NCHW-flatten to NHWC-flatten order: no data moved
        c, h, w = x.chw
        weights = weights.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
    else:
        x = ctx.plain(node.input[0], x, node)
        if len(x.tensor.shape) != 2:
            raise ctx.fail(node, f"expected a [1, K] input, got {list(x.tensor.shape)}")
    outputs = weights.shape[1]
    scale, shift, low, high = _fold_affine(fusion.transforms, outputs)
    bias = (np.zeros(outputs) if bias is None else bias) * scale + shift
    inputs = [x.tensor, ctx.constant(node, (weights * scale).T, name=node_label(node) + ".weights")]
    if np.any(bias):
        inputs.append(ctx.constant(node, bias, name=node_label(node) + ".bias"))
    ctx.store(fusion.end, ctx.op(node, "DENSE", inputs, **_clamp_params(low, high)), layout="plain")


def _const_like(array: np.ndarray, layout: str) -> np.ndarray:
    """A broadcastable ONNX constant rearranged to meet an NHWC activation."""
    array = np.asarray(array, dtype=np.float32)
    if layout == "nhwc" and array.size > 1:
        array = array.reshape((1,) * (4 - array.ndim) + array.shape).transpose(0, 2, 3, 1)
    return array


def _operands(ctx: Lowering, node: onnx.NodeProto, names) -> tuple[list, str, tuple | None]:
    """Operands of an elementwise op in one layout (constants rearranged, activations moved only if mixed)."""
    values = [ctx.value(name) for name in names]
    activations = [v for v in values if not v.is_const]
    layouts = {v.layout for v in activations}
    if layouts == {"nhwc"} and all(v.array.size == 1 or v.array.ndim <= 4 for v in values if v.is_const):
        layout = "nhwc"
    elif (
        layouts == {"flat_nhwc"}
        and len({v.chw for v in activations}) == 1
        and all(v.array.size == 1 for v in values if v.is_const)
    ):
        layout = "flat_nhwc"
    else:
        layout = "plain"
    tensors = []
    for name, value in zip(names, values, strict=True):
        if value.is_const:
            if value.array.dtype.kind not in "fiu":
                raise ctx.fail(node, "non-numeric constants are not supported")
            array = _const_like(value.array, layout)
            if array.ndim > 4:
                raise ctx.fail(node, f"constant of rank {array.ndim} is not supported")
            tensors.append(ctx.constant(node, array))
        elif layout == "plain":
            tensors.append(ctx.plain(name, value, node).tensor)
        else:
            tensors.append(value.tensor)
    chw = activations[0].chw if layout == "flat_nhwc" else None
    return tensors, layout, chw


@lowering("Add", "Sub", "Mul", "Div", "Max", "Min")
def lower_elementwise(ctx: Lowering, node: onnx.NodeProto) -> None:
    values = [ctx.value(name) for name in node.input]
    if all(v.is_const for v in values):  # left over by the folder: compute with numpy
        result = values[0].array
        for value in values[1:]:
            result = NUMPY[node.op_type](result, value.array)
        ctx.values[node.output[0]] = Value(array=np.asarray(result))
        return
    if len(node.input) != 2:
        raise ctx.fail(node, "only two operands are supported")
    fusion = ctx.fusions.get(node.output[0], Fusion(end=node.output[0]))
    tensors, layout, chw = _operands(ctx, node, node.input)
    _, _, low, high = _fold_affine(fusion.transforms, 1)
    tensor = ctx.op(node, ELEMENTWISE[node.op_type], tensors, **_clamp_params(low, high))
    ctx.store(fusion.end, tensor, layout, chw)


@lowering("BatchNormalization")
def lower_batchnorm(ctx: Lowering, node: onnx.NodeProto) -> None:
    step = ctx.transform(node, node.input[0])
    if step is None:
        raise ctx.fail(node, "only inference BatchNormalization with constant parameters is supported")
    x = ctx.value(node.input[0])
    if x.is_const:
        raise ctx.fail(node, "BatchNormalization of a constant is not supported")
    if x.layout == "flat_nhwc":
        x = ctx.plain(node.input[0], x, node)
    shape = list(x.tensor.shape)
    axis = len(shape) - 1 if x.layout == "nhwc" else 1
    broadcast = [1] * len(shape)
    broadcast[axis] = -1
    scaled = ctx.op(node, "MUL", [x.tensor, ctx.constant(node, step.scale.reshape(broadcast))], ":scale")
    ctx.store(node.output[0], ctx.op(node, "ADD", [scaled, ctx.constant(node, step.shift.reshape(broadcast))]),
              x.layout)  # fmt: skip


@lowering("Relu", "Clip")
def lower_clip(ctx: Lowering, node: onnx.NodeProto) -> None:
    x = ctx.value(node.input[0])
    low, high = (0.0, math.inf) if node.op_type == "Relu" else ctx._clip_bounds(node)
    if low is None:
        raise ctx.fail(node, "min and max must be constants")
    if x.is_const:
        ctx.values[node.output[0]] = Value(array=np.clip(x.array, low, high))
        return
    ctx.store(node.output[0], ctx.op(node, "CLIP", [x.tensor], **_clamp_params(low, high)), x.layout, x.chw)


@lowering("PRelu", "LeakyRelu")
def lower_prelu(ctx: Lowering, node: onnx.NodeProto) -> None:
    x = ctx.value(node.input[0])
    if node.op_type == "LeakyRelu":
        slope = np.array(_attrs(node).get("alpha", 0.01), np.float32)
    else:
        slope = ctx.info.const(node.input[1])
        if slope is None:
            raise ctx.fail(node, "the slope must be a constant")
    if x.layout == "flat_nhwc" and slope.size > 1:
        x = ctx.plain(node.input[0], x, node)
    slope = _const_like(slope, x.layout)
    if slope.size == 1:
        slope = slope.reshape(())
    tensor = ctx.op(node, "PRELU", [x.tensor, ctx.constant(node, slope)])
    ctx.store(node.output[0], tensor, x.layout, x.chw)


@lowering("Sign")
def lower_sign(ctx: Lowering, node: onnx.NodeProto) -> None:
    x = ctx.value(node.input[0])
    ctx.store(node.output[0], ctx.op(node, "SIGN", [x.tensor]), x.layout, x.chw)


@lowering("Identity", "Dropout")
def lower_identity(ctx: Lowering, node: onnx.NodeProto) -> None:
    source = node.input[0]
    if source in ctx.bits_values:
        ctx.bits_values[node.output[0]] = ctx.bits_values[source]
    if source in ctx.values or source in ctx.info.binarizers:
        ctx.values[node.output[0]] = ctx.value(source)


@lowering("Constant")
def lower_constant(ctx: Lowering, node: onnx.NodeProto) -> None:
    pass  # its value is in info.constants


@lowering("Softmax")
def lower_softmax(ctx: Lowering, node: onnx.NodeProto) -> None:
    x = ctx.plain(node.input[0], ctx.value(node.input[0]), node)
    rank = len(x.tensor.shape)
    axis = _attrs(node).get("axis", -1)
    if axis % rank != rank - 1:
        raise ctx.fail(node, "only the last axis is supported")
    ctx.store(node.output[0], ctx.op(node, "SOFTMAX", [x.tensor]), "plain")


# ------------------------------------------------------------------------------------------- pools


def _pool_pads(ctx: Lowering, node: onnx.NodeProto, in_hw, kernel, strides, pads) -> tuple[int, ...]:
    """The pads plus the extra bottom/right cells of ceil_mode windows (from the inferred output)."""
    out = ctx.shape(node.output[0])
    if not _attrs(node).get("ceil_mode", 0) or out is None:
        return pads
    extra = []
    for axis in range(2):
        before, after = pads[2 * axis], pads[2 * axis + 1]
        needed = (out[2 + axis] - 1) * strides[axis] + kernel[axis] - (in_hw[axis] + before + after)
        extra.append(max(needed, 0))
    return pads[0], pads[1] + extra[0], pads[2], pads[3] + extra[1]


@lowering("MaxPool", "AveragePool")
def lower_pool(ctx: Lowering, node: onnx.NodeProto) -> None:
    attrs = _attrs(node)
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    if len(kernel) != 2:
        raise ctx.fail(node, "only 2-D pooling is supported")
    if len(node.output) > 1 and node.output[1]:
        raise ctx.fail(node, "the Indices output is not supported")
    shape = ctx.shape(node.input[0])
    if shape is None or len(shape) != 4:
        raise ctx.fail(node, "expected a 4-D NCHW activation as input")
    in_hw = tuple(shape[2:])
    strides, dilations, pads = _conv_geometry(attrs, kernel, in_hw)
    if dilations != (1, 1):
        raise ctx.fail(node, "dilated pooling is not supported")
    ceil_pads = _pool_pads(ctx, node, in_hw, kernel, strides, pads)
    geometry = dict(kernel_h=kernel[0], kernel_w=kernel[1], stride_h=strides[0], stride_w=strides[1])
    if node.op_type == "MaxPool":
        geometry.update(pad_top=ceil_pads[0], pad_bottom=ceil_pads[1], pad_left=ceil_pads[2],
                        pad_right=ceil_pads[3])  # fmt: skip
        if ctx.bit_only(node.output[0]):  # sign(max(x)) = max(sign(x)): exact on the bits
            ctx.bits_values[node.output[0]] = ctx.op(
                node, "BMAXPOOL2D", [ctx.bits(node.input[0])], **geometry
            )
            return
        x = ctx.float4d(node.input[0], node)
        ctx.store(node.output[0], ctx.op(node, "MAXPOOL2D", [x.tensor], **geometry))
        return
    x = ctx.float4d(node.input[0], node)
    include_pad = int(attrs.get("count_include_pad", 0))
    overhang = ceil_pads != pads
    if include_pad and any(pads) and overhang:
        # Pads count, cells past the end do not (ONNX Runtime): pad with zeros, then average inside.
        pad_params = {"pad_before_1": pads[0], "pad_after_1": pads[1], "pad_before_2": pads[2],
                      "pad_after_2": pads[3]}  # fmt: skip
        padded = ctx.op(node, "PAD", [x.tensor], ":pad", **pad_params)
        x = Value(padded, layout="nhwc")
        ceil_pads = (0, ceil_pads[1] - pads[1], 0, ceil_pads[3] - pads[3])
        include_pad = 0
    elif overhang:
        include_pad = 0  # windows past the end average what is inside (pads are all zero here)
    geometry.update(pad_top=ceil_pads[0], pad_bottom=ceil_pads[1], pad_left=ceil_pads[2], pad_right=ceil_pads[3],
                    count_include_pad=include_pad if any(ceil_pads) else 0)  # fmt: skip
    ctx.store(node.output[0], ctx.op(node, "AVGPOOL2D", [x.tensor], **geometry))


@lowering("GlobalAveragePool", "GlobalMaxPool")
def lower_global_pool(ctx: Lowering, node: onnx.NodeProto) -> None:
    x = ctx.float4d(node.input[0], node)
    channels = x.tensor.shape[3]
    op = "MEAN" if node.op_type == "GlobalAveragePool" else "REDUCE_MAX"
    ctx.store(node.output[0], ctx.op(node, op, [x.tensor], axes=0b0110, output_shape=(1, 1, 1, channels)))


@lowering("ReduceMean", "ReduceMax", "ReduceSum")
def lower_reduce(ctx: Lowering, node: onnx.NodeProto) -> None:
    op = {"ReduceMean": "MEAN", "ReduceMax": "REDUCE_MAX", "ReduceSum": "REDUCE_SUM"}[node.op_type]
    x = ctx.value(node.input[0])
    attrs = _attrs(node)
    axes = attrs.get("axes")
    if len(node.input) > 1 and node.input[1]:
        constant = ctx.info.const(node.input[1])
        if constant is None:
            raise ctx.fail(node, "the axes must be a constant")
        axes = [int(a) for a in constant.reshape(-1)]
    keepdims = bool(attrs.get("keepdims", 1))
    out_shape = ctx.shape(node.output[0])
    onnx_rank = len(ctx.shape(node.input[0]) or [])
    axes = sorted(int(a) % onnx_rank for a in (axes if axes else range(onnx_rank)))
    if 0 in axes:
        raise ctx.fail(node, "reducing the batch axis is not supported")
    if x.layout == "nhwc" and (keepdims or axes == [2, 3] or 1 in axes):
        nhwc_axes = sorted(NHWC_AXIS[a] for a in axes)
        mask = sum(1 << a for a in nhwc_axes)
        n, h, w, c = x.tensor.shape
        kept = tuple(1 if i in nhwc_axes else d for i, d in enumerate((n, h, w, c)))
        if keepdims:
            ctx.store(node.output[0], ctx.op(node, op, [x.tensor], axes=mask, output_shape=kept))
            return
        removed = tuple(d for i, d in enumerate((n, h, w, c)) if i not in nhwc_axes)  # ONNX order already
        ctx.store(node.output[0], ctx.op(node, op, [x.tensor], axes=mask, output_shape=removed), "plain")
        return
    x = ctx.plain(node.input[0], x, node)
    mask = sum(1 << a for a in axes)
    shape = tuple(out_shape) if out_shape is not None else None
    ctx.store(node.output[0], ctx.op(node, op, [x.tensor], axes=mask, output_shape=shape), "plain")


@lowering("Pad")
def lower_pad(ctx: Lowering, node: onnx.NodeProto) -> None:
    x = ctx.value(node.input[0])
    attrs = _attrs(node)
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    modes = {"constant": 0, "reflect": 1, "edge": 2}
    if mode not in modes:
        raise ctx.fail(node, f"mode '{mode}' is not supported (constant, reflect, edge)")
    if len(node.input) > 3 and node.input[3]:
        raise ctx.fail(node, "the axes input is not supported")
    pads = ctx.info.const(node.input[1])
    fill = ctx.info.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
    if pads is None or fill is None:
        raise ctx.fail(node, "pads and the pad value must be constants")
    pads = [int(p) for p in pads.reshape(-1)]
    rank = len(pads) // 2
    if min(pads) < 0:
        raise ctx.fail(node, "negative pads (cropping) are not supported")
    before, after = pads[:rank], pads[rank:]
    if x.layout == "nhwc":
        before, after = [before[i] for i in NCHW_OF_NHWC], [after[i] for i in NCHW_OF_NHWC]
    elif x.layout == "flat_nhwc":
        x = ctx.plain(node.input[0], x, node)
    params = {f"pad_before_{i}": p for i, p in enumerate(before) if p}
    params |= {f"pad_after_{i}": p for i, p in enumerate(after) if p}
    tensor = ctx.op(
        node, "PAD", [x.tensor], mode=modes[mode], value=float(np.asarray(fill).reshape(-1)[0]), **params
    )
    ctx.store(node.output[0], tensor, "nhwc" if x.layout == "nhwc" else "plain")


# --------------------------------------------------------------------------- shapes and layout


def _flatten(ctx: Lowering, node: onnx.NodeProto, x: Value) -> None:
    _, h, w, c = x.tensor.shape
    if h * w == 1:  # NHWC and NCHW orders agree
        ctx.store(node.output[0], ctx.op(node, "RESHAPE", [x.tensor], output_shape=(1, c)), "plain")
        return
    tensor = ctx.op(node, "RESHAPE", [x.tensor], output_shape=(1, h * w * c))
    ctx.store(node.output[0], tensor, "flat_nhwc", (c, h, w))


def _reshape_to(ctx: Lowering, node: onnx.NodeProto, x: Value, shape: list[int]) -> None:
    """Reshape in ONNX order; a 4-D result goes back to NHWC so convolutions can read it."""
    if x.layout == "nhwc" and len(shape) == 2:
        _, h, w, c = x.tensor.shape
        if shape == [1, c * h * w]:
            _flatten(ctx, node, x)
            return
    x = ctx.plain(node.input[0], x, node)
    tensor = x.tensor
    if list(tensor.shape) != list(shape):
        tensor = ctx.op(node, "RESHAPE", [tensor], output_shape=tuple(shape))
    _store_plain(ctx, node, tensor)


@lowering("Flatten")
def lower_flatten(ctx: Lowering, node: onnx.NodeProto) -> None:
    x = ctx.value(node.input[0])
    axis = _attrs(node).get("axis", 1)
    if x.is_const:
        shape = x.array.shape
        ctx.values[node.output[0]] = Value(array=x.array.reshape(math.prod(shape[:axis]), -1))
        return
    if x.layout == "nhwc" and axis == 1:
        _flatten(ctx, node, x)
        return
    out = ctx.shape(node.output[0])
    if out is None:
        raise ctx.fail(node, "output shape unknown")
    _reshape_to(ctx, node, x, out)


@lowering("Reshape", "Squeeze", "Unsqueeze")
def lower_reshape(ctx: Lowering, node: onnx.NodeProto) -> None:
    x = ctx.value(node.input[0])
    out = ctx.shape(node.output[0])
    if x.is_const:
        if out is None:
            raise ctx.fail(node, "output shape unknown")
        ctx.values[node.output[0]] = Value(array=x.array.reshape(out))
        return
    if out is None:
        raise ctx.fail(node, "output shape unknown")
    if not out or out[0] != 1:
        raise ctx.fail(node, f"the output {out} must keep the batch axis first")
    _reshape_to(ctx, node, x, out)


@lowering("Transpose")
def lower_transpose(ctx: Lowering, node: onnx.NodeProto) -> None:
    x = ctx.value(node.input[0])
    perm = _attrs(node).get("perm")
    if x.is_const:
        ctx.values[node.output[0]] = Value(array=np.transpose(x.array, perm))
        return
    x = ctx.plain(node.input[0], x, node)
    rank = len(x.tensor.shape)
    perm = list(perm) if perm is not None else list(reversed(range(rank)))
    if perm[0] != 0:
        raise ctx.fail(node, "moving the batch axis is not supported")
    if rank == 4:  # straight to NHWC: one TRANSPOSE that also makes the layout the convolutions read
        perm = [perm[i] for i in (0, 2, 3, 1)]
        ctx.store(node.output[0], ctx.op(node, "TRANSPOSE", [x.tensor], **_perm(perm)), "nhwc")
        return
    ctx.store(node.output[0], ctx.op(node, "TRANSPOSE", [x.tensor], **_perm(perm)), "plain")


def _store_plain(ctx: Lowering, node: onnx.NodeProto, tensor: Tensor) -> None:
    """Store a result in ONNX order; a 4-D one is moved to NHWC so convolutions can read it."""
    if len(tensor.shape) == 4:
        _, c, h, w = tensor.shape
        if h * w == 1 or c == 1:
            tensor = ctx.op(node, "RESHAPE", [tensor], ":nhwc", output_shape=(1, h, w, c))
        else:
            tensor = ctx.op(node, "TRANSPOSE", [tensor], ":nhwc", **_perm((0, 2, 3, 1)))
        ctx.store(node.output[0], tensor, "nhwc")
        return
    ctx.store(node.output[0], tensor, "plain")


@lowering("Concat")
def lower_concat(ctx: Lowering, node: onnx.NodeProto) -> None:
    values = [ctx.value(name) for name in node.input]
    axis = _attrs(node)["axis"]
    if all(v.is_const for v in values):
        ctx.values[node.output[0]] = Value(array=np.concatenate([v.array for v in values], axis=axis))
        return
    rank = len(ctx.shape(node.output[0]) or values[0].tensor.shape)
    axis %= rank
    if axis == 0:
        raise ctx.fail(node, "concatenating along the batch axis is not supported")
    if all(not v.is_const and v.layout == "nhwc" for v in values):
        tensors = [v.tensor for v in values]
        ctx.store(node.output[0], ctx.op(node, "CONCAT", tensors, axis=NHWC_AXIS[axis]), "nhwc")
        return
    tensors = []
    for name, value in zip(node.input, values, strict=True):
        tensors.append(
            ctx.constant(node, value.array) if value.is_const else ctx.plain(name, value, node).tensor
        )
    _store_plain(ctx, node, ctx.op(node, "CONCAT", tensors, axis=axis))


# ----------------------------------------------------------------------------------------- driver


def lower_native(info: GraphInfo, metadata: DeployMetadata | None = None) -> NativeLowering:
    """The ``.ebnn`` model of a prepared and analysed ONNX graph (see the module docstring)."""
    return Lowering(info, metadata).run()
