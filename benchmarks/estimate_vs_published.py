"""Cost model vs LCE's published latencies: leave-one-model-out errors for all 12 figures.

    .venv/bin/python benchmarks/estimate_vs_published.py            # zoo QuickNets, converted by edgebnn
    .venv/bin/python benchmarks/estimate_vs_published.py --tflite-dir DIR   # DIR/<zoo name>.tflite

1. The three QuickNets of ``trainer.zoo`` are built from random weights, exported and converted by
   edgebnn (cached in ~/.cache/edgebnn/estimate: the first run takes a few minutes).
2. Per device, ``runtime.cost_calibration.fit_device`` fits the binary rate and thread efficiency
   to all six figures: the printed ``[cost_model]`` tables are what devices/profiles/*.toml carry.
3. Leave-one-model-out: fit on two QuickNets, predict both thread counts of the third; 12 errors.
4. Sensitivity: the same errors with the fixed assumptions (float efficiency, memory fraction)
   halved and doubled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from devices.profiles import load_profile  # noqa: E402
from edgebnn.zoo_graph import zoo_graph  # noqa: E402
from runtime import cost_calibration as calibration  # noqa: E402
from runtime.estimate import PeakRates, count_work, read_tflite_ops, total_work  # noqa: E402

MODELS = ("quicknet-small", "quicknet", "quicknet-large")
DEVICES = ("rpi4", "pixel1")


def device_peak(device: str) -> PeakRates:
    return PeakRates.from_table(load_profile(device).extra["cost_model"]["peak"], device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tflite-dir", type=Path, help="use DIR/<model>.tflite instead of converting the zoo"
    )
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 120)  # wide enough when piped

    works = {}
    for name in MODELS:
        data = (args.tflite_dir / f"{name}.tflite").read_bytes() if args.tflite_dir else zoo_graph(name)
        works[name] = [count_work(op) for op in read_tflite_ops(data)]
        totals = total_work(works[name])
        console.print(
            f"{name:15s} {totals.binary_macs / 1e9:.3f} G binary MACs, {totals.float_macs / 1e6:.1f} M float MACs, "
            f"{totals.bytes_moved / 1e6:.1f} MB moved, {totals.ops} ops"
        )

    table = Table(title="Leave-one-model-out: fit on the other two QuickNets, predict this one")
    for column in ("device", "model", "threads", "published ms", "predicted ms", "error", "all-6 fit ms"):
        table.add_column(column, justify="left" if column in ("device", "model") else "right", no_wrap=True)
    all_errors = []
    for device in DEVICES:
        peak = device_peak(device)
        figures = [f for f in calibration.PUBLISHED if f.device == device]
        loo = calibration.leave_one_model_out(works, figures, peak)
        loo.sort(key=lambda p: (MODELS.index(p.figure.model), p.figure.threads))
        worst = max(abs(p.relative_error) for p in loo)
        rates = calibration.fit_device(works, figures, peak)
        full = rates.cost_model(device, peak, uncertainty=worst)
        for p in loo:
            fitted = calibration.predict_ms(works[p.figure.model], full, p.figure.threads)
            table.add_row(
                device,
                p.figure.model,
                str(p.figure.threads),
                f"{p.figure.ms:.1f}",
                f"{p.predicted_ms:.1f}",
                f"{p.relative_error:+.1%}",
                f"{fitted:.1f}",
            )
            all_errors.append(p.relative_error)
        print(
            f"\n# {device}: paste into devices/profiles/{device}.toml (keep [cost_model.sources] and .peak)\n"
            + calibration.cost_model_toml(
                device,
                rates,
                worst,
                f"fit {calibration.PUBLISHED_SOURCE}; "
                f"{rates.binary_macs_per_s / peak.core_clock_hz[0]:.1f} binary MACs/cycle on one core",
            )
        )
    console.print(table)
    within = sum(abs(e) <= 0.20 for e in all_errors)
    console.print(
        f"leave-one-out: {within}/{len(all_errors)} within 20%, largest error {max(all_errors, key=abs):+.1%}, "
        f"mean |error| {sum(abs(e) for e in all_errors) / len(all_errors):.1%}"
    )

    console.print("\nSensitivity of the largest leave-one-out error to the fixed assumptions:")
    for float_efficiency in (calibration.FLOAT_EFFICIENCY / 2, calibration.FLOAT_EFFICIENCY, 1.0):
        for memory_fraction in (
            calibration.MEMORY_FRACTION / 2,
            calibration.MEMORY_FRACTION,
            2 * calibration.MEMORY_FRACTION,
        ):
            worst = 0.0
            for device in DEVICES:
                peak = device_peak(device)
                figures = [f for f in calibration.PUBLISHED if f.device == device]
                loo = calibration.leave_one_model_out(
                    works, figures, peak, float_efficiency=float_efficiency, memory_fraction=memory_fraction
                )
                worst = max(worst, max(abs(p.relative_error) for p in loo))
            console.print(
                f"  float efficiency {float_efficiency:.2f}, memory fraction {memory_fraction:.2f}: largest {worst:.1%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
