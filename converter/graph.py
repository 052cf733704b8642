"""Load an ONNX model, fix its input shape, fold constants and find the binary layers in it.

This module is pure ONNX (no TensorFlow): the lowering (`converter.lowering`) and the summary
(`converter.audit`) both read the `GraphInfo` it builds.

    >>> import numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> from converter.graph import analyze, load_onnx, prepare
    >>> constants = [numpy_helper.from_array(np.array(value, np.float32), name)
    ...              for name, value in (("zero", 0.0), ("one", 1.0), ("minus_one", -1.0))]
    >>> weights = np.where(np.arange(18) % 3, 1.0, -1.0).astype(np.float32).reshape(2, 1, 3, 3)  # +-1
    >>> nodes = [helper.make_node("GreaterOrEqual", ["input", "zero"], ["ge"]),  # the binarizer
    ...          helper.make_node("Where", ["ge", "one", "minus_one"], ["signs"]),
    ...          helper.make_node("Conv", ["signs", "w"], ["logits"], name="bconv")]
    >>> inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 5, 5])]
    >>> outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, 3, 3])]
    >>> graph = helper.make_graph(nodes, "bnn", inputs, outputs, [*constants, numpy_helper.from_array(weights, "w")])
    >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    >>> info = analyze(prepare(load_onnx(model.SerializeToString()), input_shape=(1, 5, 5)))
    >>> [(conv.node.name, conv.binary) for conv in info.convs.values()]
    [('bconv', True)]

What counts as an activation binarizer (LCE maps 0 to +1, so only binarizers that do the same):
- ``Where(GreaterOrEqual(x, 0), 1, -1)`` (our exporter's form) and ``Where(Less(x, 0), -1, 1)``;
- ``Sign(Add(Sign(x), c))`` with ``0 < c < 1`` (maps 0 to +1).
Plain ``Sign(x)`` maps 0 to 0, which no binary kernel can represent: it is converted as a float
``Sign`` and the convolution it feeds stays float; the summary names it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from converter.errors import ConverterError

ModelSource = onnx.ModelProto | bytes | str | os.PathLike


def load_onnx(source: ModelSource) -> onnx.ModelProto:
    """An ONNX model from a proto, serialized bytes or a file path; ConverterError if unreadable."""
    if isinstance(source, onnx.ModelProto):
        return source
    try:
        if isinstance(source, bytes | bytearray):
            label = "ONNX bytes"
            model = onnx.load_model_from_string(bytes(source))
        else:
            label = str(source)
            if not Path(source).is_file():
                raise ConverterError(f"ONNX model {label} does not exist or is not a file")
            model = onnx.load(label)  # also reads external weight files next to it
    except ConverterError:
        raise
    except Exception as error:  # protobuf DecodeError, RuntimeError, OSError for missing external data
        raise ConverterError(f"{label} is not a valid ONNX model (truncated or corrupt?): {error}") from None
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        raise ConverterError(f"{label} keeps its weights in external data files: pass the model's file path")
    if not model.graph.node:
        raise ConverterError(f"{label} is not a valid ONNX model: its graph has no nodes")
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # noqa: BLE001 - ValidationError, or UnicodeDecodeError/ValueError of damaged strings
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise ConverterError(f"{label} is not a valid ONNX model: {first_line}") from None
    return model


def graph_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The single real input (initializers listed as inputs by old exporters are skipped)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ConverterError(
            f"the converter needs exactly one input and one output, got {len(inputs)} inputs "
            f"and {len(model.graph.output)} outputs"
        )
    return inputs[0]


# The largest input the converter accepts: 2**26 values (256 MB of float32 per batch, e.g.
# 64 x 1024 x 1024 or 1 x 3 x 4096 x 4096). A file or --input-shape declaring more is refused before
# anything is allocated (a hostile 10^12-element input would otherwise try to allocate terabytes).
MAX_INPUT_ELEMENTS = 1 << 26


def _checked_size(shape: list[int], source: str) -> list[int]:
    if math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise ConverterError(
            f"{source} declares an input of shape {shape} ({math.prod(shape):,} values); the converter's "
            f"limit is {MAX_INPUT_ELEMENTS:,} values per input (converter.graph.MAX_INPUT_ELEMENTS)"
        )
    return shape


def resolve_input_shape(model: onnx.ModelProto, input_shape: tuple[int, ...] | None) -> list[int]:
    """The concrete input shape: static dims from the graph, dynamic ones from ``input_shape``.

    ``input_shape`` is (C, H, W) or (N, C, H, W); a dynamic batch becomes 1. A shape of more than
    ``MAX_INPUT_ELEMENTS`` values is refused.
    """
    return _resolve_input_shape(model, input_shape)


def _resolve_input_shape(model: onnx.ModelProto, input_shape: tuple[int, ...] | None) -> list[int]:
    value = graph_input(model)
    dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ConverterError(f"input '{value.name}' must be float32")
    if not dims:
        raise ConverterError(f"input '{value.name}' has no shape; pass --input-shape C,H,W")
    if input_shape is not None:
        requested = [int(d) for d in input_shape]
        if len(requested) == len(dims) - 1:
            requested = [dims[0] or 1, *requested]
        if len(requested) != len(dims) or any(d <= 0 for d in requested):
            raise ConverterError(
                f"--input-shape {','.join(map(str, input_shape))} does not fit input '{value.name}' "
                f"of rank {len(dims)} (give {len(dims) - 1} or {len(dims)} positive sizes)"
            )
        for axis, (static, wanted) in enumerate(zip(dims[1:], requested[1:], strict=True), start=1):
            if static is not None and static != wanted:
                raise ConverterError(
                    f"--input-shape asks for size {wanted} on axis {axis} of input '{value.name}', "
                    f"but the model fixes it to {static}"
                )
        return _checked_size(requested, f"--input-shape {','.join(map(str, input_shape))}")
    if any(d is None for d in dims[1:]):
        shown = ",".join("?" if d is None else str(d) for d in dims)
        raise ConverterError(
            f"input '{value.name}' has a dynamic shape [{shown}]; pass --input-shape "
            f"(input_shape=) with the {len(dims) - 1} non-batch sizes, e.g. 1,28,28"
        )
    return _checked_size([dims[0] or 1, *dims[1:]], f"the model's input '{value.name}'")


def prepare(model: onnx.ModelProto, input_shape: tuple[int, ...] | None = None) -> onnx.ModelProto:
    """Fix the input shape, fold constants (onnxsim) and infer every intermediate shape."""
    import onnxsim  # a few hundred ms to import: only when converting

    shape = resolve_input_shape(model, input_shape)
    name = graph_input(model).name
    try:
        simplified, _ = onnxsim.simplify(
            model, overwrite_input_shapes={name: shape}, skip_fuse_bn=True, check_n=0
        )
    except Exception as error:  # onnxsim reports shape errors as RuntimeError/ValueError
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConverterError(f"cannot fold the ONNX graph for input shape {shape}: {first_line}") from None
    return onnx.shape_inference.infer_shapes(simplified, strict_mode=False)


# --------------------------------------------------------------------------------------------
# Graph analysis: constants, binarizers, binary convolutions.


@dataclass
class ConvInfo:
    """One Conv node and the converter's decision about it."""

    node: onnx.NodeProto
    binary: bool  # converted to the LCE binary pattern
    reason: str  # why it is float (empty when binary)
    float_input: str | None = None  # for binarized inputs: the float tensor fed to the binarizer
    one_pads: tuple[int, int, int, int] | None = None  # (top, bottom, left, right) of a Pad(value=1)
    scales: np.ndarray | None = None  # per output channel |w| of binary weights
    binarized_input: bool = False  # activations are +-1 (a binary layer in the model's intent)
    binary_weights: bool = False
    relu_after: str | None = None  # output of the Relu that alone consumes this binary conv


@dataclass
class GraphInfo:
    model: onnx.ModelProto
    constants: dict[str, np.ndarray]
    producers: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    shapes: dict[str, list[int]]
    binarizers: dict[str, str] = field(default_factory=dict)  # binarized output -> float input
    plain_signs: set[str] = field(default_factory=set)  # outputs of plain Sign of activations
    convs: dict[str, ConvInfo] = field(default_factory=dict)  # by the Conv's output name

    def const(self, name: str) -> np.ndarray | None:
        return self.constants.get(name) if name else None


def _scalar(value: np.ndarray | None) -> float | None:
    """The single value of a constant whose entries are all equal, else None."""
    if value is None or value.size == 0:
        return None
    flat = value.reshape(-1)
    return float(flat[0]) if np.all(flat == flat[0]) else None


def binary_weight_scales(weights: np.ndarray) -> np.ndarray | None:
    """Per output channel a_o when every entry of channel o is +a_o or -a_o (a_o > 0), else None."""
    magnitudes = np.abs(weights.reshape(weights.shape[0], -1)).astype(np.float64)
    scales = magnitudes.max(axis=1)
    if np.any(scales <= 0) or not np.allclose(magnitudes, scales[:, None], rtol=1e-6, atol=0.0):
        return None
    return scales.astype(np.float32)


def _collect_constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            attribute = node.attribute[0]
            if attribute.name == "value":
                constants[node.output[0]] = numpy_helper.to_array(attribute.t)
            elif attribute.name in ("value_float", "value_int"):
                constants[node.output[0]] = np.array(onnx.helper.get_attribute_value(attribute))
            elif attribute.name in ("value_floats", "value_ints"):
                constants[node.output[0]] = np.array(onnx.helper.get_attribute_value(attribute))
    return constants


def _collect_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(dim.HasField("dim_value") for dim in dims):
            shapes[value.name] = [dim.dim_value for dim in dims]
    return shapes


def _match_binarizer(info: GraphInfo, node: onnx.NodeProto) -> str | None:
    """The float input of a binarizer ending at ``node`` (see module docstring), else None."""
    if node.op_type == "Where":
        condition = info.producers.get(node.input[0])
        if condition is None:
            return None
        on_true, on_false = _scalar(info.const(node.input[1])), _scalar(info.const(node.input[2]))
        if condition.op_type in ("GreaterOrEqual", "Less") and _scalar(info.const(condition.input[1])) == 0.0:
            wanted = (1.0, -1.0) if condition.op_type == "GreaterOrEqual" else (-1.0, 1.0)
            if (on_true, on_false) == wanted and condition.input[0] not in info.constants:
                return condition.input[0]
    if node.op_type == "Sign":
        add = info.producers.get(node.input[0])
        if add is not None and add.op_type == "Add":
            for sign_input, const_input in (add.input, reversed(add.input)):
                inner = info.producers.get(sign_input)
                offset = _scalar(info.const(const_input))
                if inner is not None and inner.op_type == "Sign" and offset is not None and 0 < offset < 1:
                    return inner.input[0]
    return None


def _pads_of(info: GraphInfo, node: onnx.NodeProto) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a constant 4-D Pad touching only H and W, else None."""
    mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
    pads = info.const(node.input[1]) if len(node.input) > 1 else None
    if mode != "constant" or pads is None or pads.size != 8 or (len(node.input) > 3 and node.input[3]):
        return None
    n0, c0, top, left, n1, c1, bottom, right = (int(p) for p in pads)
    if n0 or c0 or n1 or c1 or min(top, left, bottom, right) < 0:
        return None
    return top, bottom, left, right


def _analyze_conv(info: GraphInfo, node: onnx.NodeProto) -> ConvInfo:
    weights = info.const(node.input[1])
    if weights is None:
        return ConvInfo(node, False, "weights are not constant")
    source, one_pads, zero_padded = node.input[0], None, False
    producer = info.producers.get(source)
    if producer is not None and producer.op_type == "Pad":
        pads = _pads_of(info, producer)
        value = (
            _scalar(info.const(producer.input[2])) if len(producer.input) > 2 and producer.input[2] else 0.0
        )
        if pads is not None and producer.input[0] in info.binarizers:
            if value == 1.0:
                one_pads, source = pads, producer.input[0]
            elif value == 0.0 and any(pads):
                zero_padded, source = True, producer.input[0]
    binarized = source in info.binarizers
    scales = binary_weight_scales(weights)
    conv = ConvInfo(
        node,
        False,
        "",
        float_input=info.binarizers.get(source),
        one_pads=one_pads,
        scales=scales,
        binarized_input=binarized,
        binary_weights=scales is not None,
    )
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if not binarized:
        if source in info.plain_signs:
            conv.binarized_input = True  # meant as binary: counted, and reported as left in float
            conv.reason = "input binarized by plain Sign (sign(0)=0; LCE needs sign(0)=+1): kept float"
        elif scales is not None:
            conv.reason = "binary weights but float input: float convolution"
        else:
            conv.reason = "float layer"
        return conv
    if scales is None:
        conv.reason = "weights are not +-a per output channel: converted as float"
    elif weights.ndim != 4:
        conv.reason = "only 2-D binary convolutions are supported: converted as float"
    elif attrs.get("group", 1) != 1:
        conv.reason = "grouped binary convolution (LCE needs the indirect BGEMM kernel): converted as float"
    elif (
        zero_padded
        or any(attrs.get("pads", [0]))
        or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID")
    ):
        conv.reason = "zero padding of +-1 activations has no exact LCE binary kernel: converted as float"
    else:
        conv.binary = True
    return conv


def analyze(model: onnx.ModelProto) -> GraphInfo:
    """Constants, producer/consumer maps, shapes, binarizers and the binary Conv decisions."""
    producers, consumers = {}, {}
    for node in model.graph.node:
        for output in node.output:
            producers[output] = node
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    info = GraphInfo(model, _collect_constants(model), producers, consumers, _collect_shapes(model))
    for node in model.graph.node:
        float_input = _match_binarizer(info, node)
        if float_input is not None:
            info.binarizers[node.output[0]] = float_input
        elif node.op_type == "Sign" and node.input[0] not in info.constants:
            info.plain_signs.add(node.output[0])
    for node in model.graph.node:
        if node.op_type == "Conv":
            conv = info.convs[node.output[0]] = _analyze_conv(info, node)
            if conv.binary:
                conv.relu_after = _sole_relu_consumer(info, node)
    return info


def _sole_relu_consumer(info: GraphInfo, node: onnx.NodeProto) -> str | None:
    """The output of a Relu that is the only consumer of a bias-free Conv, else None.

    With weights +-a_o (a_o > 0), relu(a_o * acc) = a_o * relu(acc): the lowering moves the scale
    after the Relu so that LCE fuses the Relu into the binary conv (its clamp acts before the
    multiplier) and the scale plus a following BatchNorm into the multiplier and bias.
    """
    output = node.output[0]
    consumers = info.consumers.get(output, [])
    bias = info.const(node.input[2]) if len(node.input) > 2 else None
    if len(consumers) != 1 or consumers[0].op_type != "Relu" or (bias is not None and np.any(bias)):
        return None
    if output in {value.name for value in info.model.graph.output}:
        return None
    return consumers[0].output[0]
