"""Latency estimates for devices you don't have: a per-op cost model of converted LCE graphs.

Each op of a converted ``.tflite`` graph is reduced to the work it does (``OpWork``: binary MACs,
float MACs, bytes moved), then a device's rates turn the work into time:

    op time(threads) = op_overhead + (binary_macs / binary_rate + float_macs / float_rate
                                      + bytes_moved / memory_rate) / speedup(threads)
    speedup(threads) = 1 + thread_efficiency * (min(threads, cores) - 1)

The rates are single-thread rates fitted to LCE's published latencies (``runtime.cost_calibration``)
and stored, with their sources, in the ``[cost_model]`` table of a device profile. A profile without
fitted rates falls back to its theoretical peak (``[cost_model.peak]``) and the estimate says so.

    >>> from runtime.estimate import CostModel, Op, Tensor, count_work, estimate, read_tflite_ops
    >>> bconv = Op("LceBconv2d", (Tensor((1, 56, 56, 2), "int32"), Tensor((64, 3, 3, 2), "int32", True)),
    ...            (Tensor((1, 56, 56, 64), "float32"),))  # 3x3, 64 -> 64 channels at 56x56
    >>> count_work(bconv).binary_macs  # 56 * 56 * 64 * 3 * 3 * 64
    115605504
    >>> rpi4 = CostModel.from_table({  # the [cost_model] table of devices/profiles/rpi4.toml
    ...     "binary_macs_per_s": 6.457e10, "float_macs_per_s": 6e9, "memory_bytes_per_s": 4.267e9,
    ...     "op_overhead_s": 2e-6, "thread_efficiency": 0.435, "uncertainty": 0.141,
    ...     "peak": {"core_clock_hz": [1.5e9] * 4, "binary_macs_per_cycle": 128, "float_macs_per_cycle": 8,
    ...              "memory_bytes_per_s": 12.8e9}}, device="rpi4")
    >>> result = estimate([bconv], rpi4, threads=1)
    >>> round(result.total_ms, 2), f"{result.peak_fraction:.0%}"
    (1.99, '30%')
    >>> ops = read_tflite_ops(open("quicknet.tflite", "rb").read())  # doctest: +SKIP

Binary MACs follow LCE's bit-packing: input channels are padded to a multiple of 32 (one int32
word per 32 channels), so a 3x3 binary conv with 40 input channels costs as much as one with 64.
This module imports neither TensorFlow nor torch (runtime/ rule): the flatbuffer is read by the
one TF-free .tflite reader (``formats.tflite``, flatbuffers code from ``ai-edge-litert``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.errors import BenchError

# ---- the graph, as the cost model sees it --------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    shape: tuple[int, ...]
    dtype: str  # numpy name: "float32", "int32" (bit-packed activations and filters), "int8"...
    constant: bool = False  # weights, biases, shape arguments: stored in the model, read once

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.elements * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Op:
    name: str  # builtin op name (CONV_2D) or custom op code (LceBconv2d)
    inputs: tuple[Tensor | None, ...]  # None: an omitted optional input
    outputs: tuple[Tensor, ...]
    options: Mapping[str, Any] = field(default_factory=dict)  # custom options (LCE ops' flexbuffer)


def read_tflite_ops(data: bytes, source: str | None = None) -> list[Op]:
    """The ops of a ``.tflite`` flatbuffer's main subgraph, in execution order; BenchError if unreadable.

    Parsing is the one TF-free reader (``formats.tflite``); this keeps what costs time.
    """
    from formats.errors import FormatError
    from formats.tflite import read_tflite

    try:
        model = read_tflite(data, label=source)  # messages name the file, not "TFLite model bytes"
    except FormatError as error:
        raise BenchError(str(error)) from None

    def tensor(index: int) -> Tensor | None:
        if index < 0:
            return None
        info = model.tensors[index]
        dtype = np.dtype(info.dtype).name if info.dtype is not None else "float32"
        return Tensor(shape=info.shape, dtype=dtype, constant=info.data is not None)

    return [
        Op(
            name=operator.name,
            inputs=tuple(tensor(i) for i in operator.inputs),
            outputs=tuple(tensor(i) for i in operator.outputs),
            options=dict(operator.options),
        )
        for operator in model.operators
    ]


# ---- the work of each op -------------------------------------------------------------------------


@dataclass(frozen=True)
class OpWork:
    op: str
    kind: str  # "binary" | "float" | "memory" | "free" | "unknown"
    binary_macs: int = 0
    float_macs: int = 0
    bytes_moved: int = 0
    detail: str = ""  # e.g. the shape, for the breakdown table


def _bytes_moved(op: Op) -> int:
    """Activations read + weights read + outputs written: each tensor touched once."""
    return sum(t.nbytes for t in op.inputs if t is not None) + sum(t.nbytes for t in op.outputs)


def _shape_text(tensor: Tensor) -> str:
    return "x".join(str(d) for d in tensor.shape)


def lce_bconv2d(op: Op) -> OpWork:
    """Binary conv: filter OHWI bit-packed as [O, KH, KW, words]; input channels pad to words*32."""
    out, filters = op.outputs[0], op.inputs[1]
    batch, out_h, out_w, _ = out.shape  # the last dim is words, not channels, when the output is bit-packed
    out_c, kernel_h, kernel_w, words = filters.shape
    channels_in = int(op.options.get("channels_in", words * 32))
    padded = words * 32  # per group: LCE packs each group's input channels into whole words
    macs = batch * out_h * out_w * out_c * kernel_h * kernel_w * padded
    groups = max(1, math.ceil(channels_in / padded)) if padded else 1
    detail = f"{kernel_h}x{kernel_w} {channels_in}->{out_c} @{out_h}x{out_w}"
    if channels_in % 32 and groups == 1:
        detail += f" (cin padded to {padded})"
    return OpWork(op.name, "binary", binary_macs=macs, bytes_moved=_bytes_moved(op), detail=detail)


def conv_2d(op: Op) -> OpWork:
    out, filters = op.outputs[0], op.inputs[1]
    batch, out_h, out_w, out_c = out.shape
    _, kernel_h, kernel_w, channels_per_group = filters.shape
    macs = batch * out_h * out_w * out_c * kernel_h * kernel_w * channels_per_group
    detail = f"{kernel_h}x{kernel_w} {op.inputs[0].shape[-1]}->{out_c} @{out_h}x{out_w}"
    return OpWork(op.name, "float", float_macs=macs, bytes_moved=_bytes_moved(op), detail=detail)


def depthwise_conv_2d(op: Op) -> OpWork:
    out, filters = op.outputs[0], op.inputs[1]
    _, kernel_h, kernel_w, _ = filters.shape
    macs = out.elements * kernel_h * kernel_w
    detail = f"dw {kernel_h}x{kernel_w} {out.shape[-1]} @{out.shape[1]}x{out.shape[2]}"
    return OpWork(op.name, "float", float_macs=macs, bytes_moved=_bytes_moved(op), detail=detail)


def fully_connected(op: Op) -> OpWork:
    out, weights = op.outputs[0], op.inputs[1]
    macs = out.elements * weights.shape[-1]
    detail = f"{weights.shape[-1]}->{weights.shape[0]}"
    return OpWork(op.name, "float", float_macs=macs, bytes_moved=_bytes_moved(op), detail=detail)


def memory_bound(op: Op) -> OpWork:
    """Elementwise, pooling, bit-packing, reductions: a few operations per byte, so bytes decide."""
    return OpWork(op.name, "memory", bytes_moved=_bytes_moved(op), detail=_shape_text(op.outputs[0]))


def free(op: Op) -> OpWork:
    """Reshapes and friends: TFLite aliases or copies nothing worth counting, only the op overhead."""
    return OpWork(op.name, "free", detail=_shape_text(op.outputs[0]) if op.outputs else "")


WORK_COUNTERS: dict[str, Callable[[Op], OpWork]] = {
    "LceBconv2d": lce_bconv2d,
    "CONV_2D": conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d,
    "FULLY_CONNECTED": fully_connected,
    **dict.fromkeys(("RESHAPE", "SQUEEZE", "EXPAND_DIMS"), free),
    **dict.fromkeys(
        (
            "LceQuantize",
            "LceDequantize",
            "LceBMaxPool2d",
            "ADD",
            "SUB",
            "MUL",
            "DIV",
            "MAXIMUM",
            "MINIMUM",
            "RELU",
            "RELU6",
            "RELU_N1_TO_1",
            "PRELU",
            "LEAKY_RELU",
            "LOGISTIC",
            "TANH",
            "HARD_SWISH",
            "MAX_POOL_2D",
            "AVERAGE_POOL_2D",
            "MEAN",
            "SUM",
            "SOFTMAX",
            "LOG_SOFTMAX",
            "PAD",
            "PADV2",
            "CONCATENATION",
            "QUANTIZE",
            "DEQUANTIZE",
            "TRANSPOSE",
            "SELECT",
            "SELECT_V2",
            "GREATER_EQUAL",
            "SIGN",
        ),
        memory_bound,
    ),
}


def count_work(op: Op) -> OpWork:
    """The work of one op; ops without a counter, or with shapes it cannot read, are "unknown" (listed)."""
    counter = WORK_COUNTERS.get(op.name)
    if counter is None:
        return OpWork(op.name, "unknown", detail=_shape_text(op.outputs[0]) if op.outputs else "")
    try:
        return counter(op)
    except (ValueError, IndexError, TypeError, AttributeError):  # shapes the counter does not expect
        return OpWork(op.name, "unknown", detail="unexpected tensor shapes")


@dataclass(frozen=True)
class WorkTotals:
    binary_macs: int
    float_macs: int
    bytes_moved: int
    ops: int  # ops that cost an overhead (everything but unknown ones)


def total_work(works: Iterable[OpWork]) -> WorkTotals:
    works = [w for w in works if w.kind != "unknown"]
    return WorkTotals(
        binary_macs=sum(w.binary_macs for w in works),
        float_macs=sum(w.float_macs for w in works),
        bytes_moved=sum(w.bytes_moved for w in works),
        ops=len(works),
    )


# ---- device rates and the estimate ---------------------------------------------------------------


@dataclass(frozen=True)
class PeakRates:
    """A device's theoretical limits: no kernel can beat them (see docs/estimate.md for the numbers)."""

    core_clock_hz: tuple[float, ...]  # one entry per core, fastest first (big.LITTLE lists both)
    binary_macs_per_cycle: float  # per core: 2 NEON pipes x 128 bits / (EOR + CNT) = 128 on A72
    float_macs_per_cycle: float  # per core: FP32 FMA lanes retired per cycle
    memory_bytes_per_s: float  # DRAM peak (bus width x transfer rate)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], device: str = "") -> PeakRates:
        """From a profile's ``[cost_model.peak]`` table."""
        try:
            return cls(
                core_clock_hz=tuple(float(c) for c in table["core_clock_hz"]),
                binary_macs_per_cycle=float(table["binary_macs_per_cycle"]),
                float_macs_per_cycle=float(table["float_macs_per_cycle"]),
                memory_bytes_per_s=float(table["memory_bytes_per_s"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BenchError(
                f"device {device!r}: [cost_model.peak] is incomplete or invalid ({error})"
            ) from None

    def cores(self, threads: int) -> tuple[float, ...]:
        return self.core_clock_hz[: max(1, min(threads, len(self.core_clock_hz)))]

    def binary_macs_per_s(self, threads: int) -> float:
        return sum(self.cores(threads)) * self.binary_macs_per_cycle

    def float_macs_per_s(self, threads: int) -> float:
        return sum(self.cores(threads)) * self.float_macs_per_cycle


@dataclass(frozen=True)
class CostModel:
    """Single-thread rates of one device (+ how they scale with threads) and its theoretical peak."""

    device: str
    peak: PeakRates
    binary_macs_per_s: float  # LceBconv2d, counted with channel padding
    float_macs_per_s: float  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED (XNNPACK)
    memory_bytes_per_s: float  # what one core streams through memory-bound ops
    op_overhead_s: float  # per op: dispatch, tensor bookkeeping
    thread_efficiency: float  # speedup(threads) = 1 + efficiency * (threads - 1)
    uncertainty: float  # relative half-width of the band (leave-one-model-out error of the fit)
    calibrated: bool  # False: rates are the theoretical peak, the estimate is a lower bound
    sources: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], device: str = "", fallback_peak: PeakRates | None = None):
        """From a profile's ``[cost_model]`` table; without fitted rates, the peak stands in (marked)."""
        if "peak" in table:
            peak = PeakRates.from_table(table["peak"], device)
        elif fallback_peak is not None:
            peak = fallback_peak
        else:
            raise BenchError(f"device {device!r} has no [cost_model.peak] table and no clock/core facts")
        sources = table.get("sources", {})
        if not isinstance(sources, Mapping):
            raise BenchError(f"device {device!r}: [cost_model.sources] must be a table")
        sources = dict(sources)
        rate_keys = ("binary_macs_per_s", "float_macs_per_s", "memory_bytes_per_s", "thread_efficiency")
        if not all(key in table for key in rate_keys):
            return cls.theoretical(device, peak, sources)
        try:
            model = cls(
                device=device,
                peak=peak,
                binary_macs_per_s=float(table["binary_macs_per_s"]),
                float_macs_per_s=float(table["float_macs_per_s"]),
                memory_bytes_per_s=float(table["memory_bytes_per_s"]),
                op_overhead_s=float(table.get("op_overhead_s", 0.0)),
                thread_efficiency=float(table["thread_efficiency"]),
                uncertainty=float(table.get("uncertainty", 0.25)),
                calibrated=True,
                sources=sources,
            )
        except (TypeError, ValueError) as error:
            raise BenchError(f"device {device!r}: invalid [cost_model] rate ({error})") from None
        if min(model.binary_macs_per_s, model.float_macs_per_s, model.memory_bytes_per_s) <= 0 or not (
            0 <= model.thread_efficiency <= 1
        ):
            raise BenchError(
                f"device {device!r}: [cost_model] rates must be positive and thread_efficiency in [0, 1]"
            )
        return model

    @classmethod
    def theoretical(cls, device: str, peak: PeakRates, sources: Mapping[str, str] | None = None):
        """No fitted rates: every core at its peak, perfect scaling, no overhead (a lower bound)."""
        clock = peak.core_clock_hz[0]
        return cls(
            device=device,
            peak=peak,
            binary_macs_per_s=clock * peak.binary_macs_per_cycle,
            float_macs_per_s=clock * peak.float_macs_per_cycle,
            memory_bytes_per_s=peak.memory_bytes_per_s,
            op_overhead_s=0.0,
            thread_efficiency=1.0,
            uncertainty=0.0,
            calibrated=False,
            sources=dict(sources or {}),
        )

    def speedup(self, threads: int) -> float:
        usable = max(1, min(threads, len(self.peak.core_clock_hz)))
        return 1.0 + self.thread_efficiency * (usable - 1)

    def op_seconds(self, work: OpWork, threads: int) -> float:
        if work.kind == "unknown":
            return 0.0
        busy = (
            work.binary_macs / self.binary_macs_per_s
            + work.float_macs / self.float_macs_per_s
            + work.bytes_moved / self.memory_bytes_per_s
        )
        return self.op_overhead_s + busy / self.speedup(threads)

    def bound_seconds(self, work: OpWork, threads: int) -> float:
        """Roofline time at the theoretical peak: the slowest of compute and memory, nothing else."""
        if work.kind == "unknown":
            return 0.0
        compute = work.binary_macs / self.peak.binary_macs_per_s(threads) + work.float_macs / (
            self.peak.float_macs_per_s(threads)
        )
        return max(compute, work.bytes_moved / self.peak.memory_bytes_per_s)


@dataclass(frozen=True)
class OpEstimate:
    work: OpWork
    ms: float
    bound_ms: float


@dataclass(frozen=True)
class Estimate:
    device: str
    threads: int
    calibrated: bool
    ops: list[OpEstimate]
    totals: WorkTotals
    total_ms: float
    low_ms: float
    high_ms: float
    bound_ms: float  # the theoretical limit of this graph on this device
    unknown_ops: list[str]  # op names the cost model has no counter for (not in the total)

    @property
    def peak_fraction(self) -> float:
        """Share of the theoretical peak the estimate implies (bound time / estimated time)."""
        return self.bound_ms / self.total_ms if self.total_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "threads": self.threads,
            "calibrated": self.calibrated,
            "total_ms": self.total_ms,
            "low_ms": self.low_ms,
            "high_ms": self.high_ms,
            "bound_ms": self.bound_ms,
            "peak_fraction": self.peak_fraction,
            "binary_macs": self.totals.binary_macs,
            "float_macs": self.totals.float_macs,
            "bytes_moved": self.totals.bytes_moved,
            "op_count": self.totals.ops,
            "unknown_ops": self.unknown_ops,
            "ops": [
                {
                    "op": e.work.op,
                    "kind": e.work.kind,
                    "detail": e.work.detail,
                    "binary_macs": e.work.binary_macs,
                    "float_macs": e.work.float_macs,
                    "bytes_moved": e.work.bytes_moved,
                    "ms": e.ms,
                    "bound_ms": e.bound_ms,
                }
                for e in self.ops
            ],
        }


def estimate(ops: Iterable[Op], model: CostModel, threads: int = 1) -> Estimate:
    """Latency of one inference of ``ops`` on ``model``'s device (pure: no I/O)."""
    if threads < 1:
        raise BenchError(f"--threads must be at least 1, not {threads}")
    works = [count_work(op) for op in ops]
    per_op = [
        OpEstimate(w, 1e3 * model.op_seconds(w, threads), 1e3 * model.bound_seconds(w, threads))
        for w in works
    ]
    total = sum(e.ms for e in per_op)
    bound = sum(e.bound_ms for e in per_op)
    # Uncalibrated: the peak rates make the total a lower bound; say so with an open-ended band.
    low, high = (total * (1 - model.uncertainty), total * (1 + model.uncertainty))
    if not model.calibrated:
        low, high = total, math.inf
    return Estimate(
        device=model.device,
        threads=threads,
        calibrated=model.calibrated,
        ops=per_op,
        totals=total_work(works),
        total_ms=total,
        low_ms=low,
        high_ms=high,
        bound_ms=bound,
        unknown_ops=sorted({w.op for w in works if w.kind == "unknown"}),
    )
