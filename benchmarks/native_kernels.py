"""Kernel benchmark of the native runtime: binary conv layers in G binary MAC/s beside a roofline
measured on this machine, and the float layers of the zoo models in GFLOP/s.

    .venv/bin/python benchmarks/native_kernels.py                 # ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/native_kernels.py --rounds 1 --runs 10 --json runs/native_kernels.json

Every layer is a one-op .ebnn model (formats.ebnn) timed by runtime/native/build/<arch>/bench_kernels
(per-op profile of the real op: staging, kernel and output transform, as in a model), for every
kernel set of this CPU at 1 and 2 threads. The configurations are interleaved over ``--rounds``
rounds and each figure is the median of its round medians (the machine may be shared). The
roofline is a tight xor-popcount-accumulate loop on data in L1, per ISA, one thread
(``bench_kernels roofline``). LCE's figure (44.7 G binary MAC/s, ``use_indirect_bgemm``, 1 thread,
the 3x3 256->256 layer at 14x14) was measured with LCE 0.16's lce_benchmark_model in an earlier session of
this project on this machine type, not in this run; benchmarks/native_vs_lce.py measures both side by side. Those notes
count 231 M "binary MACs" for that layer, which has 14*14*256*256*9 = 115.6 M multiply-accumulates
(the unit used here), so the comparison is made on time: LCE's 5.17 ms (1 thread) and 5.15 ms
(2 threads) against ours.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formats.ebnn import ModelBuilder  # noqa: E402

NATIVE = ROOT / "runtime" / "native"
BENCH = NATIVE / "build" / platform.machine() / "bench_kernels"
# Measured earlier (not in this run): LCE 0.16 use_indirect_bgemm, 3x3 256->256 at 14x14: ms at 1 and 2 threads
LCE_INDIRECT_MS = {1: 5.17, 2: 5.15}
LCE_LAYER = "bconv 3x3 256->256 @14x14"


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # "binary" | "float"
    build: object  # () -> bytes


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def binary_layer(channels_in: int, channels_out: int, size: int, kernel: int, bit_output: bool = False):
    def build() -> bytes:
        rng = np.random.default_rng(channels_in + size)
        b = ModelBuilder()
        x = b.add_input((1, size, size, channels_in))
        filters = np.where(rng.standard_normal((channels_out, kernel, kernel, channels_in)) >= 0, 1.0, -1.0)
        pad = (kernel - 1) // 2
        geometry = dict(pad_top=pad, pad_bottom=pad, pad_left=pad, pad_right=pad)
        q = b.add_op("QUANTIZE", [x])
        if bit_output:
            threshold = b.add_constant(rng.integers(-8, 8, channels_out).astype(np.int32), "i32")
            y = b.add_op(
                "BCONV2D",
                [q, b.add_constant(filters, "bits"), None, None, threshold],
                name="layer",
                **geometry,
            )
            y = b.add_op("DEQUANTIZE", [y])
        else:  # a residual block's conv: ReLU clamp, BatchNorm multiplier and bias fused
            multiplier = b.add_constant(rng.uniform(0.5, 1.5, channels_out).astype(np.float32))
            bias = b.add_constant(rng.standard_normal(channels_out).astype(np.float32))
            y = b.add_op(
                "BCONV2D",
                [q, b.add_constant(filters, "bits"), multiplier, bias],
                clamp_min=0,
                name="layer",
                **geometry,
            )
        b.set_outputs([y])
        return b.to_bytes()

    return build


def float_conv(channels_in: int, channels_out: int, size: int, kernel: int, stride: int, groups: int = 1):
    def build() -> bytes:
        rng = np.random.default_rng(channels_out + size)
        b = ModelBuilder()
        x = b.add_input((1, size, size, channels_in))
        top, bottom = same_pads(size, kernel, stride)
        filters = rng.standard_normal((channels_out, kernel, kernel, channels_in // groups)).astype(
            np.float32
        )
        y = b.add_op(
            "CONV2D",
            [
                x,
                b.add_constant(filters),
                b.add_constant(rng.standard_normal(channels_out).astype(np.float32)),
            ],
            stride_h=stride,
            stride_w=stride,
            pad_top=top,
            pad_bottom=bottom,
            pad_left=top,
            pad_right=bottom,
            groups=groups,
            out_min=0.0,
            name="layer",
        )
        b.set_outputs([y])
        return b.to_bytes()

    return build


def dense(inputs: int, outputs: int):
    def build() -> bytes:
        rng = np.random.default_rng(inputs)
        b = ModelBuilder()
        x = b.add_input((1, inputs))
        w = b.add_constant(rng.standard_normal((outputs, inputs)).astype(np.float32))
        b.set_outputs([b.add_op("DENSE", [x, w], name="layer")])
        return b.to_bytes()

    return build


def quicknet_like(section_blocks=(4, 4, 4, 4), section_filters=(32, 64, 256, 512), size: int = 224):
    """QuickNet-small's graph as the converter lowers it (trainer/zoo.py QuickNet; BatchNorms
    folded), random weights: the float stem, transitions and head beside 16 binary convs."""

    def build() -> bytes:
        rng = np.random.default_rng(0)
        b = ModelBuilder()
        const = lambda *shape: b.add_constant(rng.standard_normal(shape).astype(np.float32) * 0.1)  # noqa: E731

        def conv(x, cin, cout, k, stride, groups=1, relu=False, size_in=None):
            top, bottom = same_pads(size_in, k, stride)
            return b.add_op(
                "CONV2D",
                [x, const(cout, k, k, cin // groups), const(cout)],
                stride_h=stride,
                stride_w=stride,
                pad_top=top,
                pad_bottom=bottom,
                pad_left=top,
                pad_right=bottom,
                groups=groups,
                **({"out_min": 0.0} if relu else {}),
            )

        stem = section_filters[0]
        x = b.add_input((1, size, size, 3))
        x = conv(x, 3, stem // 4, 3, 2, relu=True, size_in=size)
        x = conv(x, stem // 4, stem // 4, 3, 2, groups=stem // 4, size_in=size // 2)
        x = conv(x, stem // 4, stem, 1, 1, size_in=size // 4)
        channels, hw = stem, size // 4
        for count, filters in zip(section_blocks, section_filters, strict=True):
            for _ in range(count):
                if filters != channels:
                    x = b.add_op("CLIP", [x], out_min=0.0)
                    x = b.add_op("MAXPOOL2D", [x], kernel_h=2, kernel_w=2)
                    x = conv(x, channels, channels, 3, 2, groups=channels, size_in=hw - 1)
                    hw = -(-(hw - 1) // 2)
                    x = conv(x, channels, filters, 1, 1, size_in=hw)
                    channels = filters
                filt = np.where(rng.standard_normal((channels, 3, 3, channels)) >= 0, 1.0, -1.0)
                y = b.add_op(
                    "BCONV2D",
                    [
                        b.add_op("QUANTIZE", [x]),
                        b.add_constant(filt, "bits"),
                        const(channels),
                        const(channels),
                    ],
                    pad_top=1,
                    pad_bottom=1,
                    pad_left=1,
                    pad_right=1,
                    clamp_min=0,
                )
                x = b.add_op("ADD", [x, y])
        x = b.add_op("MEAN", [b.add_op("CLIP", [x], out_min=0.0)], axes=0b0110, output_shape=(1, channels))
        b.set_outputs([b.add_op("DENSE", [x, const(1000, channels), const(1000)])])
        return b.to_bytes()

    return build


def fmnist_like(width: int = 64):
    """fmnist-bnn (trainer/zoo.py, default config) as the converter lowers it, random weights."""

    def build() -> bytes:
        rng = np.random.default_rng(1)
        b = ModelBuilder()
        const = lambda *shape: b.add_constant(rng.standard_normal(shape).astype(np.float32) * 0.1)  # noqa: E731
        signs = lambda *shape: b.add_constant(np.where(rng.standard_normal(shape) >= 0, 1.0, -1.0), "bits")  # noqa: E731
        one_pad = dict(pad_top=1, pad_bottom=1, pad_left=1, pad_right=1)
        x = b.add_input((1, 28, 28, 1))
        x = b.add_op("CONV2D", [x, const(width, 3, 3, 1), const(width)], **one_pad)
        y = b.add_op(
            "BCONV2D",
            [b.add_op("QUANTIZE", [x]), signs(width, 3, 3, width), const(width), const(width)],
            clamp_min=0,
            **one_pad,
        )
        x = b.add_op("ADD", [x, y])
        x = b.add_op("MAXPOOL2D", [x], kernel_h=2, kernel_w=2, stride_h=2, stride_w=2)
        y = b.add_op(
            "BCONV2D",
            [b.add_op("QUANTIZE", [x]), signs(2 * width, 3, 3, width), const(2 * width), const(2 * width)],
            clamp_min=0,
            **one_pad,
        )
        x = b.add_op("ADD", [b.add_op("CONCAT", [x, x], axis=3), y])
        y = b.add_op(
            "BCONV2D",
            [
                b.add_op("QUANTIZE", [x]),
                signs(2 * width, 3, 3, 2 * width),
                const(2 * width),
                const(2 * width),
            ],
            clamp_min=0,
            **one_pad,
        )
        x = b.add_op("ADD", [x, y])
        x = b.add_op("MAXPOOL2D", [x], kernel_h=2, kernel_w=2, stride_h=2, stride_w=2)
        x = b.add_op("RESHAPE", [x], output_shape=(1, 7 * 7 * 2 * width))
        b.set_outputs([b.add_op("DENSE", [x, const(10, 7 * 7 * 2 * width), const(10)])])
        return b.to_bytes()

    return build


MODELS = {"fmnist-bnn (synthetic)": fmnist_like(), "quicknet-small (synthetic)": quicknet_like()}

LAYERS = [
    Layer("bconv 3x3 64->64 @56x56", "binary", binary_layer(64, 64, 56, 3)),
    Layer("bconv 3x3 128->128 @28x28", "binary", binary_layer(128, 128, 28, 3)),
    Layer("bconv 3x3 256->256 @14x14", "binary", binary_layer(256, 256, 14, 3)),
    Layer("bconv 3x3 512->512 @7x7", "binary", binary_layer(512, 512, 7, 3)),
    Layer("bconv 1x1 256->256 @14x14", "binary", binary_layer(256, 256, 14, 1)),
    Layer("bconv 3x3 256->256 @14x14 bits out", "binary", binary_layer(256, 256, 14, 3, bit_output=True)),
    Layer("bconv 1x1 256->256 @14x14 bits out", "binary", binary_layer(256, 256, 14, 1, bit_output=True)),
    Layer("conv 3x3/2 3->8 @224 (QuickNet-small stem)", "float", float_conv(3, 8, 224, 3, 2)),
    Layer("conv 3x3/2 3->16 @224 (QuickNet stem)", "float", float_conv(3, 16, 224, 3, 2)),
    Layer("conv 7x7/2 3->64 @224 (Bi-Real stem)", "float", float_conv(3, 64, 224, 7, 2)),
    Layer("conv 3x3 1->64 @28 (fmnist-bnn stem)", "float", float_conv(1, 64, 28, 3, 1)),
    Layer("conv 3x3 3->16 @32 (resnet20 stem)", "float", float_conv(3, 16, 32, 3, 1)),
    Layer("dwconv 3x3/2 8 @112 (QuickNet-small stem)", "float", float_conv(8, 8, 112, 3, 2, groups=8)),
    Layer("dwconv 3x3/2 64 @56 (QuickNet blur pool)", "float", float_conv(64, 64, 56, 3, 2, groups=64)),
    Layer("conv 1x1 8->32 @56 (QuickNet-small stem)", "float", float_conv(8, 32, 56, 1, 1)),
    Layer("conv 1x1 256->512 @7 (QuickNet transition)", "float", float_conv(256, 512, 7, 1, 1)),
    Layer("dense 512->1000 (QuickNet head)", "float", dense(512, 1000)),
    Layer("dense 6272->10 (fmnist-bnn head)", "float", dense(6272, 10)),
]


def run_json(args: list[str]) -> dict:
    done = subprocess.run([str(BENCH), *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"bench_kernels {' '.join(args)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median of their medians)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per configuration and round")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--kernels", default=None, help="comma-separated (default: all this CPU has)")
    parser.add_argument("--only", default=None, help="run only layers/models whose name contains this text")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    build = subprocess.run(
        ["nice", "-n", "10", "make", "-s", "-C", str(NATIVE), "lib", "bench"], capture_output=True, text=True
    )
    if build.returncode != 0:
        raise SystemExit(f"make -C runtime/native failed:\n{build.stderr[-3000:]}")
    from runtime.native import available_kernels, cpu_features

    kernels = args.kernels.split(",") if args.kernels else available_kernels()
    threads = [int(t) for t in args.threads.split(",")]
    layers = [layer for layer in LAYERS if args.only is None or args.only in layer.name]
    models = {name: build for name, build in MODELS.items() if args.only is None or args.only in name}
    print(f"CPU features: {' '.join(cpu_features())}")
    with open("/proc/loadavg") as handle:
        print(f"load average at start: {handle.read().split()[0]} (2 cores; the machine may be shared)")

    rooflines: dict[str, list[float]] = {}
    samples: dict[tuple[str, str, int], list[float]] = {}
    macs: dict[str, tuple[int, int]] = {}
    by_type: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    side_by_side: dict[tuple[str, str, int], list[float]] = {}  # the kernel's ISA roofline, same process
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for name, build_model in [*((layer.name, layer.build) for layer in layers), *models.items()]:
            paths[name] = Path(folder) / f"{len(paths)}.ebnn"
            paths[name].write_bytes(build_model())
        for _ in range(args.rounds):
            for isa, value in run_json(["roofline", "0.3"])["roofline"].items():
                rooflines.setdefault(isa, []).append(value)
            for layer in layers:
                for kernel in kernels:
                    for t in threads:
                        result = run_json(
                            ["model", str(paths[layer.name]), kernel, str(t), str(args.runs), "3"]
                        )
                        op = next(o for o in result["ops"] if o["name"] == "layer")
                        samples.setdefault((layer.name, kernel, t), []).append(op["median_ms"])
                        side_by_side.setdefault((layer.name, kernel, t), []).append(
                            result["isa_roofline_gmacs"]
                        )
                        macs[layer.name] = (op["binary_macs"], op["flops"])
            for name in models:
                for kernel in kernels:
                    for t in threads:
                        result = run_json(["model", str(paths[name]), kernel, str(t), str(args.runs), "3"])
                        samples.setdefault((name, kernel, t), []).append(result["median_ms"])
                        types: dict[str, float] = {}
                        for op in result["ops"]:
                            types[op["type"]] = types.get(op["type"], 0.0) + op["median_ms"]
                        by_type.setdefault((name, kernel, t), []).append(types)

    roof = {isa: max(values) for isa, values in rooflines.items()}  # a ceiling: the best round
    machine_roof = max(value for value in roof.values() if value)
    print(
        "roofline (xor-popcount-accumulate on L1 data, 1 thread, G binary MAC/s, best of rounds): "
        + ", ".join(f"{k} {v:.0f}" for k, v in roof.items())
    )
    rows = []
    print()
    print(f"{'layer':46} {'kernel':7} {'thr':>3} {'ms':>9} {'G/s':>9} {'%roof':>6} {'%isa':>6} {'xLCE':>6}")
    for layer in layers:
        for kernel in kernels:
            for t in threads:
                ms = statistics.median(samples[(layer.name, kernel, t)])
                binary, flops = macs[layer.name]
                row = {
                    "layer": layer.name,
                    "kind": layer.kind,
                    "kernel": kernel,
                    "threads": t,
                    "median_ms": ms,
                }
                if layer.kind == "binary":
                    rate = binary / ms / 1e6
                    lce = LCE_INDIRECT_MS.get(t) if layer.name == LCE_LAYER else None
                    own_roof = statistics.median(side_by_side[(layer.name, kernel, t)])
                    row |= {
                        "g_binary_macs": rate,
                        "pct_machine_roofline": 100 * rate / machine_roof,
                        "isa_roofline_same_process": own_roof,
                        "pct_isa_roofline": 100 * rate / own_roof,
                        "x_lce_indirect_time": lce / ms if lce else None,
                    }
                    isa = row["pct_isa_roofline"]
                    ratio = f"{lce / ms:6.1f}" if lce else f"{'':6}"
                    print(
                        f"{layer.name:46} {kernel:7} {t:>3} {ms:9.4f} {rate:9.1f} {row['pct_machine_roofline']:6.1f} "
                        f"{isa if isa is not None else float('nan'):6.1f} {ratio}"
                    )
                else:
                    rate = flops / ms / 1e6
                    row["gflops"] = rate
                    print(f"{layer.name:46} {kernel:7} {t:>3} {ms:9.4f} {rate:9.1f} {'GFLOP/s':>6}")
                rows.append(row)
    if models:
        print(
            f"\n{'model (random weights)':46} {'kernel':7} {'thr':>3} {'ms':>9}  time by op type (median of rounds, ms)"
        )
    for name in models:
        for kernel in kernels:
            for t in threads:
                ms = statistics.median(samples[(name, kernel, t)])
                rounds = by_type[(name, kernel, t)]
                types = {k: statistics.median(r.get(k, 0.0) for r in rounds) for k in rounds[0]}
                shown = ", ".join(
                    f"{k} {v:.3f}" for k, v in sorted(types.items(), key=lambda kv: -kv[1]) if v >= 0.001
                )
                print(f"{name:46} {kernel:7} {t:>3} {ms:9.4f}  {shown}")
                rows.append(
                    {"model": name, "kernel": kernel, "threads": t, "median_ms": ms, "ms_by_op_type": types}
                )
    print(
        "\n%roof: of the machine's best roofline (the best ISA, 1 thread); %isa: of the kernel's own ISA roofline"
        " measured in the same process as the layer (1 thread; at 2 threads 100% means one full core).\nxLCE: LCE use_indirect_bgemm's time on this layer (measured in an earlier session,"
        " 5.17 ms / 5.15 ms at 1 / 2 threads, not measured here) over ours."
    )
    if args.json:
        args.json.write_text(json.dumps({"roofline": roof, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
