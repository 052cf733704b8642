"""What a converted model contains, and what an ONNX model costs: audits printed as rich tables.

``audit`` reads a .tflite flatbuffer without TensorFlow (``formats.tflite``): op histogram, how many binary
convolutions became ``LceBconv2d`` (naming every one that did not), packed weight bytes, file size,
its float32-equivalent size and the compression ratio. A native ``.ebnn`` file (``formats.ebnn``)
gets the same audit with ``BCONV2D`` as the binary op. ``summarize_onnx`` is a per-layer table in
the spirit of larq's ``models.summary``: 1-bit and 32-bit parameters, memory, binary and float MACs.

    >>> from converter.audit import audit, summarize_onnx, print_audit, print_summary
    >>> report = audit("model.tflite")  # a converted model (needs a file)  # doctest: +SKIP
    >>> report.headline  # doctest: +SKIP
    '4 of 4 binary convolutions became LceBconv2d'
    >>> print_summary(summarize_onnx("model.onnx"))  # doctest: +SKIP

(``converter.graph``'s example builds a small binary model that ``summarize_onnx`` also takes.)
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from converter.graph import GraphInfo, ModelSource, analyze, binary_weight_scales, load_onnx, prepare
from formats.errors import FormatError
from formats.kinds import kind_of_bytes
from formats.tflite import TFLiteModel, read_tflite

LCE_RUNTIME = "LCE >= 0.16 custom ops"
STOCK_RUNTIME = "stock TFLite"
NATIVE_RUNTIME = "edgebnn native runtime (libedgebnn)"


@dataclass
class TFLiteAudit:
    size: int  # bytes of the .tflite file
    op_histogram: dict[str, int]
    binary_convs: int  # LceBconv2d ops
    expected_binary_convs: int  # convolutions meant as binary (M in "N of M")
    not_binarized: dict[str, str]  # layer -> why it is not an LceBconv2d
    packed_weight_bytes: int  # bit-packed LceBconv2d filters
    float32_equivalent_size: int  # the same file with every packed filter stored as float32
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    binary_op: str = "LceBconv2d"  # what a binary convolution is in this file ("BCONV2D" in .ebnn)
    bit_outputs: int = 0  # binary convolutions that write bits (fused thresholds)

    @property
    def compression_ratio(self) -> float:
        return self.float32_equivalent_size / self.size

    @property
    def runtime_required(self) -> str:
        if self.binary_op == "BCONV2D":
            return NATIVE_RUNTIME
        return LCE_RUNTIME if any(op.startswith("Lce") for op in self.op_histogram) else STOCK_RUNTIME

    @property
    def headline(self) -> str:
        return (
            f"{self.binary_convs} of {self.expected_binary_convs} binary convolutions became {self.binary_op}"
        )


ModelAudit = TFLiteAudit  # the audit of any converted model file (.tflite or .ebnn)


def wide_console():
    """A rich console at least 140 columns wide, so tables stay readable in logs and pipes."""
    from rich.console import Console

    return Console(width=max(Console().width, 160))


def _tensor_label(model: TFLiteModel, index: int) -> str:
    name = model.tensors[index].name
    return name.split(";")[0] or f"tensor {index}"


def audit(tflite: bytes | str | os.PathLike, conversion=None) -> TFLiteAudit:
    """Audit a .tflite (or .ebnn) file. ``conversion`` (a ``converter.conversion.Conversion``) adds the ONNX names."""
    data = tflite if isinstance(tflite, bytes | bytearray) else None
    if data is None:
        try:
            with open(tflite, "rb") as handle:
                head = handle.read(8)
        except OSError:
            head = b""  # read_tflite says what is wrong with the path
    else:
        head = bytes(data[:8])
    if kind_of_bytes(head) == "ebnn":
        return audit_ebnn(tflite, conversion)
    model = read_tflite(tflite)
    histogram = Counter(op.name for op in model.operators)
    packed, unpacked = 0, 0
    not_binarized: dict[str, str] = {}
    for op in model.operators:
        if op.name == "LceBconv2d":
            weights = model.tensors[op.inputs[1]]
            out_channels, kh, kw = weights.shape[:3]
            channels_in = int(op.options.get("channels_in", weights.shape[3] * 32))
            packed += len(weights.data or b"")
            unpacked += out_channels * kh * kw * channels_in * 4
        elif op.name == "CONV_2D":
            weights = model.tensors[op.inputs[1]].array()
            if weights is not None and weights.size > 1 and binary_weight_scales(weights) is not None:
                label = _tensor_label(model, op.outputs[0])
                not_binarized[label] = "CONV_2D with +-a binary weights stored as float"
    binary_convs = histogram.get("LceBconv2d", 0)
    expected = binary_convs + len(not_binarized)
    warnings = []
    if conversion is not None and conversion.target != "lce":
        expected = len(conversion.float_binary_convs) + len(conversion.binary_convs)
        note = f"target '{conversion.target}': stock TFLite has no binary kernels, all convolutions are float"
        return TFLiteAudit(
            size=model.size,
            op_histogram=dict(sorted(histogram.items(), key=lambda item: (-item[1], item[0]))),
            binary_convs=binary_convs,
            expected_binary_convs=expected,
            not_binarized={},
            packed_weight_bytes=0,
            float32_equivalent_size=model.size,
            notes=[note],
        )
    if conversion is not None:
        not_binarized = dict(conversion.float_binary_convs)
        expected = len(not_binarized) + len(conversion.binary_convs)
        if binary_convs < len(conversion.binary_convs):
            warnings.append(
                f"the converter emitted {len(conversion.binary_convs)} binary convolutions but the "
                f"flatbuffer has {binary_convs} LceBconv2d ops"
            )
    for layer, reason in not_binarized.items():
        warnings.append(f"binary layer '{layer}' is NOT an LceBconv2d: {reason}")
    return TFLiteAudit(
        size=model.size,
        op_histogram=dict(sorted(histogram.items(), key=lambda item: (-item[1], item[0]))),
        binary_convs=binary_convs,
        expected_binary_convs=expected,
        not_binarized=not_binarized,
        packed_weight_bytes=packed,
        float32_equivalent_size=model.size - packed + unpacked,
        warnings=warnings,
    )


def audit_ebnn(model: bytes | str | os.PathLike, conversion=None) -> TFLiteAudit:
    """The audit of a native ``.ebnn`` file (``formats.ebnn.read``): BCONV2D ops are the binary convs."""
    from formats.ebnn import read, words_per_row

    if isinstance(model, bytes | bytearray):
        data, source = bytes(model), "ebnn model"
    else:
        source = str(model)
        try:
            with open(model, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise FormatError(f"cannot read {source}: {error.strerror or error}") from None
    info = read(data, source=source)
    histogram = Counter(op.op for op in info.ops)
    packed, unpacked, bit_outputs = 0, 0, 0
    not_binarized: dict[str, str] = {}
    for op in info.ops:
        if op.op == "BCONV2D":
            out_channels, kh, kw, channels = info.tensors[op.inputs[1]].shape
            packed += 4 * out_channels * kh * kw * words_per_row(channels)
            unpacked += 4 * out_channels * kh * kw * channels
            bit_outputs += info.tensors[op.outputs[0]].dtype == "bits"
        elif op.op == "CONV2D":
            weights = info.tensors[op.inputs[1]].data
            if weights is not None and weights.size > 1 and binary_weight_scales(weights) is not None:
                not_binarized[op.name or f"op {op.index}"] = "CONV2D with +-a binary weights stored as float"
    binary_convs = histogram.get("BCONV2D", 0)
    expected = binary_convs + len(not_binarized)
    warnings = []
    if conversion is not None:
        not_binarized = dict(conversion.float_binary_convs)
        expected = len(not_binarized) + len(conversion.binary_convs)
        if binary_convs < len(conversion.binary_convs):
            warnings.append(
                f"the converter emitted {len(conversion.binary_convs)} binary convolutions but the "
                f"file has {binary_convs} BCONV2D ops"
            )
    for layer, reason in not_binarized.items():
        warnings.append(f"binary layer '{layer}' is NOT a BCONV2D: {reason}")
    return TFLiteAudit(
        size=len(data),
        op_histogram=dict(sorted(histogram.items(), key=lambda item: (-item[1], item[0]))),
        binary_convs=binary_convs,
        expected_binary_convs=expected,
        not_binarized=not_binarized,
        packed_weight_bytes=packed,
        float32_equivalent_size=len(data) - packed + unpacked,
        warnings=warnings,
        binary_op="BCONV2D",
        bit_outputs=bit_outputs,
    )


def print_audit(report: TFLiteAudit, console=None, title: str = "model") -> None:
    from rich.table import Table

    console = console or wide_console()
    ops = Table(title=f"{title}: operators", show_edge=False)
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for name, count in report.op_histogram.items():
        ops.add_row(name, str(count))
    console.print(ops)
    sizes = Table(show_header=False, show_edge=False)
    sizes.add_column()
    sizes.add_column(justify="right")
    sizes.add_row("file size", f"{report.size:,} B")
    sizes.add_row("bit-packed binary weights", f"{report.packed_weight_bytes:,} B")
    if report.binary_op == "BCONV2D":
        sizes.add_row("binary convs writing bits", f"{report.bit_outputs} of {report.binary_convs}")
    sizes.add_row("float32-equivalent size", f"{report.float32_equivalent_size:,} B")
    sizes.add_row("compression ratio", f"{report.compression_ratio:.2f}x")
    sizes.add_row("runtime required", report.runtime_required)
    console.print(sizes)
    complete = report.binary_convs == report.expected_binary_convs and not report.warnings
    style = "bold green" if complete or report.notes else "bold red"
    console.print(f"[{style}]{report.headline}[/{style}]")
    for warning in report.warnings:
        console.print(f"[bold red]WARNING:[/bold red] {warning}")
    for note in report.notes:
        console.print(f"note: {note}")


# ------------------------------------------------------------------------------------ ONNX summary


@dataclass
class LayerSummary:
    name: str
    op: str
    output_shape: list[int]
    binary_params: int
    float_params: int
    binary_macs: int
    float_macs: int
    lce: str  # what the LCE target makes of it

    @property
    def memory_bytes(self) -> float:
        return self.binary_params / 8 + self.float_params * 4


@dataclass
class ModelSummary:
    layers: list[LayerSummary]
    input_shape: list[int]

    def total(self, attribute: str) -> float:
        return sum(getattr(layer, attribute) for layer in self.layers)

    @property
    def binary_mac_ratio(self) -> float:
        macs = self.total("binary_macs") + self.total("float_macs")
        return self.total("binary_macs") / macs if macs else 0.0


def summarize_onnx(onnx_model: ModelSource, input_shape: tuple[int, ...] | None = None) -> ModelSummary:
    """Per-layer parameters and MACs of an ONNX model (per sample)."""
    return summarize_info(analyze(prepare(load_onnx(onnx_model), input_shape)))


def summarize_info(info: GraphInfo) -> ModelSummary:
    """``summarize_onnx`` of an already prepared and analysed graph (e.g. ``Conversion.info``)."""
    model = info.model
    batch = max(info.shapes[model.graph.input[0].name][0], 1)
    layers = []
    for node in model.graph.node:
        shape = info.shapes.get(node.output[0], [])
        per_sample = math.prod(shape) // batch if shape else 0
        name = node.name or node.output[0]
        if node.op_type == "Conv":
            conv = info.convs[node.output[0]]
            weights = info.const(node.input[1])
            bias = info.const(node.input[2]) if len(node.input) > 2 else None
            macs = per_sample * math.prod(weights.shape[1:])
            one_bit = weights.size if conv.binary_weights else 0
            extra = len(conv.scales) if conv.binary_weights and not np.all(conv.scales == 1) else 0
            floats = (
                (0 if conv.binary_weights else weights.size) + extra + (bias.size if bias is not None else 0)
            )
            binary_macs = macs if conv.binarized_input and conv.binary_weights else 0
            lce = (
                "LceBconv2d"
                if conv.binary
                else ("float: " + conv.reason if conv.binarized_input else "float")
            )
            layers.append(
                LayerSummary(name, "Conv", shape, one_bit, floats, binary_macs, macs - binary_macs, lce)
            )
        elif node.op_type in ("Gemm", "MatMul"):
            weights = info.const(node.input[1])
            bias = info.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if weights is None:
                continue
            macs = per_sample * (weights.size // (shape[-1] if shape else 1))
            floats = weights.size + (bias.size if bias is not None else 0)
            layers.append(LayerSummary(name, node.op_type, shape, 0, floats, 0, macs, "float"))
        elif node.op_type in ("BatchNormalization", "PRelu"):
            params = sum(info.const(i).size for i in node.input[1:] if info.const(i) is not None)
            layers.append(
                LayerSummary(
                    name,
                    node.op_type,
                    shape,
                    0,
                    params,
                    0,
                    0,
                    "fused" if node.op_type != "PRelu" else "float",
                )
            )
    return ModelSummary(layers, info.shapes[model.graph.input[0].name])


def _count(value: float) -> str:
    return f"{int(value):,}" if value else "0"


def print_summary(summary: ModelSummary, console=None, title: str = "ONNX model") -> None:
    from rich.table import Table

    console = console or wide_console()
    table = Table(title=f"{title}: layers (input {summary.input_shape})", show_edge=False)
    table.add_column("layer", max_width=32, overflow="fold")
    for column in ("op", "output", "1-bit params", "32-bit params", "memory kB", "binary MACs", "float MACs"):
        table.add_column(column, justify="left" if column in ("op", "output") else "right", no_wrap=True)
    table.add_column("LCE", min_width=12, overflow="fold")
    for layer in summary.layers:
        table.add_row(
            layer.name,
            layer.op.replace("BatchNormalization", "BatchNorm"),
            "x".join(map(str, layer.output_shape[1:])),
            _count(layer.binary_params),
            _count(layer.float_params),
            f"{layer.memory_bytes / 1024:.2f}",
            _count(layer.binary_macs),
            _count(layer.float_macs),
            layer.lce,
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        _count(summary.total("binary_params")),
        _count(summary.total("float_params")),
        f"{summary.total('memory_bytes') / 1024:.2f}",
        _count(summary.total("binary_macs")),
        _count(summary.total("float_macs")),
        "",
    )
    console.print(table)
    console.print(
        f"{summary.binary_mac_ratio:.1%} of MACs binary; parameters "
        f"{summary.total('memory_bytes') / 1024:.1f} kB deployed (1-bit weights packed)"
    )
