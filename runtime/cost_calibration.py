"""The reproducible fit of the cost model's per-device rates to LCE's published latencies.

LCE's README publishes 12 latencies (``PUBLISHED``: QuickNetSmall / QuickNet / QuickNetLarge on a
Raspberry Pi 4B and a Pixel 1, 1 and 4 threads, ``lce_benchmark_model`` with XNNPACK). Per device,
two parameters are fitted to its six figures:

- ``binary_macs_per_s``: the single-thread rate of ``LceBconv2d`` (closed-form weighted least squares);
- ``thread_efficiency``: speedup(threads) = 1 + e * (threads - 1) (grid search over e in [0, 1]).

The QuickNets hold too few float MACs and too little memory traffic to identify the other rates,
so those are fixed from the device's theoretical peak (``[cost_model.peak]``) with documented
assumptions (``FLOAT_EFFICIENCY``, ``MEMORY_FRACTION``, ``OP_OVERHEAD_S``). The residuals are
relative (a 10% miss on 8.9 ms counts as much as one on 77 ms). Leave-one-model-out validation
fits on two QuickNet sizes and predicts both thread counts of the third.

    >>> from runtime.cost_calibration import PUBLISHED, fit_device, leave_one_model_out
    >>> [(p.model, p.threads, p.ms) for p in PUBLISHED if p.device == "rpi4"][:2]
    [('quicknet-small', 1, 27.7), ('quicknet-small', 4, 12.1)]
    >>> works = {name: [count_work(op) for op in read_tflite_ops(data)] for name, data in graphs.items()}  # doctest: +SKIP
    >>> rates = fit_device(works, [p for p in PUBLISHED if p.device == "rpi4"], peak)  # doctest: +SKIP

``benchmarks/estimate_vs_published.py`` runs it on the QuickNets of ``trainer.zoo`` converted by
edgebnn and prints the ``[cost_model]`` tables that ``devices/profiles/*.toml`` carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.estimate import CostModel, OpWork, PeakRates, total_work

PUBLISHED_SOURCE = "larq/compute-engine README, lce_benchmark_model with XNNPACK"

# Not identifiable from the QuickNets (binary MACs dominate): fixed, and the benchmark shows how
# little the leave-one-out errors move when they are halved or doubled.
FLOAT_EFFICIENCY = 0.5  # XNNPACK's f32 convs reach about half of one core's FMA peak
MEMORY_FRACTION = 1 / 3  # one core streams about a third of the DRAM peak
OP_OVERHEAD_S = 2e-6  # TFLite op dispatch and tensor bookkeeping


@dataclass(frozen=True)
class Published:
    model: str  # trainer.zoo name
    device: str  # device profile name
    threads: int
    ms: float


PUBLISHED: tuple[Published, ...] = tuple(
    Published(model, device, threads, ms)
    for model, figures in {
        "quicknet-small": {("rpi4", 1): 27.7, ("rpi4", 4): 12.1, ("pixel1", 1): 16.8, ("pixel1", 4): 8.9},
        "quicknet": {("rpi4", 1): 45.0, ("rpi4", 4): 20.8, ("pixel1", 1): 25.5, ("pixel1", 4): 12.6},
        "quicknet-large": {("rpi4", 1): 77.0, ("rpi4", 4): 31.7, ("pixel1", 1): 44.2, ("pixel1", 4): 22.8},
    }.items()
    for (device, threads), ms in figures.items()
)


@dataclass(frozen=True)
class FittedRates:
    binary_macs_per_s: float
    float_macs_per_s: float
    memory_bytes_per_s: float
    op_overhead_s: float
    thread_efficiency: float

    def cost_model(self, device: str, peak: PeakRates, uncertainty: float) -> CostModel:
        return CostModel(
            device=device,
            peak=peak,
            binary_macs_per_s=self.binary_macs_per_s,
            float_macs_per_s=self.float_macs_per_s,
            memory_bytes_per_s=self.memory_bytes_per_s,
            op_overhead_s=self.op_overhead_s,
            thread_efficiency=self.thread_efficiency,
            uncertainty=uncertainty,
            calibrated=True,
        )


def fit_device(
    works: Mapping[str, Sequence[OpWork]],
    figures: Sequence[Published],
    peak: PeakRates,
    float_efficiency: float = FLOAT_EFFICIENCY,
    memory_fraction: float = MEMORY_FRACTION,
    op_overhead_s: float = OP_OVERHEAD_S,
) -> FittedRates:
    """Fit one device's binary rate and thread efficiency to its published ``figures``."""
    if not figures:
        raise ValueError("no published figures to fit")
    float_rate = float_efficiency * peak.core_clock_hz[0] * peak.float_macs_per_cycle
    memory_rate = memory_fraction * peak.memory_bytes_per_s
    cores = len(peak.core_clock_hz)
    measured = np.array([f.ms / 1e3 for f in figures])
    totals = [total_work(works[f.model]) for f in figures]
    binary = np.array([t.binary_macs for t in totals], dtype=float)
    rest = np.array([t.float_macs / float_rate + t.bytes_moved / memory_rate for t in totals])
    overhead = np.array([t.ops * op_overhead_s for t in totals])
    usable_threads = np.array([min(f.threads, cores) for f in figures], dtype=float)

    best: tuple[float, float, float] | None = None  # (squared relative error, efficiency, 1/binary rate)
    for efficiency in np.linspace(0.0, 1.0, 201):
        speedup = 1.0 + efficiency * (usable_threads - 1.0)
        # measured = overhead + (binary * s + rest) / speedup, solve for s = 1/binary_rate in the
        # relative least-squares sense: minimise sum(((a * s - y) / measured)^2).
        a = binary / speedup / measured
        y = (measured - overhead - rest / speedup) / measured
        seconds_per_mac = float(a @ y / (a @ a))
        if seconds_per_mac <= 0:
            continue
        error = float(np.sum((a * seconds_per_mac - y) ** 2))
        if best is None or error < best[0]:
            best = (error, float(efficiency), seconds_per_mac)
    if best is None:
        raise ValueError("no positive binary rate fits these figures")
    _, efficiency, seconds_per_mac = best
    return FittedRates(
        binary_macs_per_s=1.0 / seconds_per_mac,
        float_macs_per_s=float_rate,
        memory_bytes_per_s=memory_rate,
        op_overhead_s=op_overhead_s,
        thread_efficiency=efficiency,
    )


@dataclass(frozen=True)
class Prediction:
    figure: Published
    predicted_ms: float

    @property
    def relative_error(self) -> float:
        return self.predicted_ms / self.figure.ms - 1.0


def predict_ms(works: Sequence[OpWork], model: CostModel, threads: int) -> float:
    return 1e3 * sum(model.op_seconds(w, threads) for w in works)


def leave_one_model_out(
    works: Mapping[str, Sequence[OpWork]], figures: Sequence[Published], peak: PeakRates, **assumptions: float
) -> list[Prediction]:
    """For each model: fit on the other models' figures, predict this model's figures."""
    predictions = []
    for held_out in sorted({f.model for f in figures}):
        train = [f for f in figures if f.model != held_out]
        rates = fit_device(works, train, peak, **assumptions)
        model = rates.cost_model(figures[0].device, peak, uncertainty=0.0)
        for figure in figures:
            if figure.model == held_out:
                predictions.append(Prediction(figure, predict_ms(works[held_out], model, figure.threads)))
    return predictions


def cost_model_toml(device: str, rates: FittedRates, uncertainty: float, note: str) -> str:
    """The fitted part of a profile's ``[cost_model]`` table (the ``peak`` sub-table stays as written)."""
    return "\n".join(
        [
            "[cost_model]",
            f"# {note}",
            f"binary_macs_per_s = {rates.binary_macs_per_s:.4g}",
            f"float_macs_per_s = {rates.float_macs_per_s:.4g}",
            f"memory_bytes_per_s = {rates.memory_bytes_per_s:.4g}",
            f"op_overhead_s = {rates.op_overhead_s:.4g}",
            f"thread_efficiency = {rates.thread_efficiency:.4g}",
            f"uncertainty = {uncertainty:.3g}",
        ]
    )
