"""edgebnn's native runtime against LCE, LiteRT and ONNX Runtime on this host, at 1 and 2 threads.

    nice -n 10 .venv/bin/python benchmarks/native_vs_lce.py                  # ~10-15 minutes on 2 cores
    nice -n 10 .venv/bin/python benchmarks/native_vs_lce.py --runs 30 --json runs/native_vs_lce.json \\
        --markdown runs/native_vs_lce.md

Everything is built by the product and measured through its one benchmark path
(``devices.bench.benchmark``: a fresh worker process per configuration, the configurations of all
models interleaved in rounds), so the figures are what ``edgebnn bench`` shows a user:

(a) Single binary layers, each a small ONNX graph (where-binarizer, ``Pad(value=1)``, a 3x3 or 1x1
    binary conv with +-a weights, then a global average pool so that the output is small and needs
    no layout change), converted by edgebnn to an LCE .tflite and to an .ebnn: native vs LCE's
    default kernel and ``use_indirect_bgemm``. G binary MAC/s = output elements x KH x KW x Cin /
    median latency of the whole graph (binarizing the input and the pool included, for both). The
    native BCONV2D op alone (the library's per-op timing of the same files, as ``edgebnn bench
    --profile`` shows it, here as medians from the native core's ``bench_kernels model``) is
    set beside the roofline measured by the native core's benchmark (``bench_kernels roofline``, a
    tight xor-popcount loop on L1 data, one thread, best kernel set of this CPU).
(b) Whole models with random weights (fmnist-bnn 28x28, resnet20 32x32, quicknet-small 224x224):
    the .ebnn in the native runtime, the LCE .tflite in LCE (both kernels), the float twin
    (.tflite target tflite) in LiteRT, the ONNX model in ONNX Runtime: median and p90 latency, peak
    RSS of the worker, file size.

Each ratio sets native at N threads against the other runtime's fastest configuration at N threads
or fewer ("LCE fastest": the faster kernel; at 2 threads also its 1-thread figure, since LCE's
binary kernels use one thread and a second thread only adds contention on a shared machine): the
baselines get their best case, so the ratios are conservative.

The goals of issue 12 are printed with each ratio: binary layers >= 5x LCE's fastest at 1 thread,
>= 8x at 2 threads, >= 60% of the roofline; whole models >= 2x LCE's fastest and >= 3x LiteRT float
at 1 and 2 threads. A missed goal is printed with the native per-op profile of that layer or model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

BENCH_KERNELS = ROOT / "runtime" / "native" / "build" / platform.machine() / "bench_kernels"
GOALS = {"layer_x_lce": {1: 5.0, 2: 8.0}, "layer_roofline": 0.60, "model_x_lce": 2.0, "model_x_litert": 3.0}


@dataclass(frozen=True)
class Layer:
    name: str
    channels: int
    size: int
    kernel: int

    @property
    def binary_macs(self) -> int:
        return self.size * self.size * self.channels * self.channels * self.kernel * self.kernel


LAYERS = [
    Layer("bconv 3x3 64->64 @56x56", 64, 56, 3),
    Layer("bconv 3x3 128->128 @28x28", 128, 28, 3),
    Layer("bconv 3x3 256->256 @14x14", 256, 14, 3),
    Layer("bconv 3x3 512->512 @7x7", 512, 7, 3),
    Layer("bconv 1x1 256->256 @14x14", 256, 14, 1),
]
MODELS = {"fmnist-bnn": 28, "resnet20": 32, "quicknet-small": 224}


def bconv_onnx(cin: int, cout: int, size: int, kernel: int = 3, seed: int = 0) -> bytes:
    """Binarizer -> one-padding -> binary conv (+-a_o weights) -> global average pool, NCHW."""
    rng = np.random.default_rng(seed)
    pad = (kernel - 1) // 2
    signs = np.where(rng.standard_normal((cout, cin, kernel, kernel)) >= 0, 1.0, -1.0)
    weights = (signs * rng.uniform(0.5, 1.5, (cout, 1, 1, 1))).astype(np.float32)
    constants = {"zero": np.float32(0), "one": np.float32(1), "minus_one": np.float32(-1), "w": weights,
                 "pads": np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64), "pad_value": np.float32(1)}  # fmt: skip
    nodes = [
        helper.make_node("GreaterOrEqual", ["input", "zero"], ["ge"]),
        helper.make_node("Where", ["ge", "one", "minus_one"], ["signs"]),
        helper.make_node("Pad", ["signs", "pads", "pad_value"], ["padded"], mode="constant"),
        helper.make_node("Conv", ["padded", "w"], ["conv"], name="layer"),
        helper.make_node("GlobalAveragePool", ["conv"], ["logits"]),
    ]
    io_info = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, cin, size, size]),
               helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, cout, 1, 1])]  # fmt: skip
    initializers = [numpy_helper.from_array(np.asarray(v), n) for n, v in constants.items()]
    graph = helper.make_graph(nodes, "layer", io_info[:1], io_info[1:], initializers)
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18)])
    return model.SerializeToString()


def layer_onnx(layer: Layer, seed: int = 0) -> bytes:
    """One of ``LAYERS`` as a single-layer graph (``bconv_onnx`` with equal in/out channels)."""
    return bconv_onnx(layer.channels, layer.channels, layer.size, layer.kernel, seed)


def zoo_onnx(name: str, size: int):
    import torch

    from trainer import export, zoo

    sys.path.insert(0, str(ROOT / "tests" / "converter"))
    from converter_nets import randomize_batchnorm

    torch.manual_seed(0)
    spec = zoo.MODELS[name]
    model = zoo.create_model(name, input_size=size, num_classes=spec.num_classes).eval()
    randomize_batchnorm(model)
    return export.export_onnx(model, input_shape=(spec.in_channels, size, size), verify=False)


def build_files(folder: Path, say) -> tuple[dict[str, dict[str, Path]], dict[str, dict[str, Path]]]:
    """{layer or model name: {kind: path}}; every file made by edgebnn's converter."""
    from converter.conversion import convert

    def write(path: Path, data: bytes) -> Path:
        path.write_bytes(data)
        return path

    layers, models = {}, {}
    for index, layer in enumerate(LAYERS):
        say(f"building {layer.name}")
        source = layer_onnx(layer, seed=index)
        stem = f"layer{index}"
        with contextlib.redirect_stderr(io.StringIO()):
            layers[layer.name] = {
                "native": write(folder / f"{stem}.ebnn", convert(source, target="native")),
                "lce": write(folder / f"{stem}-lce.tflite", convert(source, target="lce")),
            }
    for name, size in MODELS.items():
        say(f"building {name} ({size}x{size})")
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            proto = zoo_onnx(name, size)
        onnx_path = write(folder / f"{name}.onnx", proto.SerializeToString())
        models[name] = {
            "native": write(folder / f"{name}.ebnn", convert(proto, target="native")),
            "lce": write(folder / f"{name}-lce.tflite", convert(proto, target="lce")),
            "float": write(folder / f"{name}-float.tflite", convert(proto, target="tflite")),
            "onnx": onnx_path,
        }
    return layers, models


def roofline() -> tuple[str, float]:
    """The best 1-thread roofline of this CPU (the native core's bench_kernels, best of 3)."""
    best: dict[str, float] = {}
    for _ in range(3):
        done = subprocess.run(
            [str(BENCH_KERNELS), "roofline", "0.3"], capture_output=True, text=True, check=True
        )
        for isa, value in json.loads(done.stdout)["roofline"].items():
            best[isa] = max(best.get(isa, 0.0), value)
    isa = max(best, key=best.get)
    return isa, best[isa]


def by_config(results: list[dict]) -> dict[tuple[str, str, str | None, int], dict]:
    return {(Path(r["model"]).name, r["runtime"], r.get("kernel"), r["threads"]): r for r in results}


def median_of(
    results: dict, path: Path, runtime: str, threads: int, kernel: str | None = None, up_to: bool = False
) -> dict | None:
    """The record of ``path`` in ``runtime`` (the fastest of its kernels unless ``kernel`` is given;
    with ``up_to``, the fastest at any thread count up to ``threads``)."""
    found = [r for (name, rt, k, t), r in results.items()
             if name == path.name and rt == runtime and r["status"] == "ok"
             and (t <= threads if up_to else t == threads) and (kernel is None or k == kernel)]  # fmt: skip
    return min(found, key=lambda r: r["median_ms"]) if found else None


def op_medians(paths: list[Path], threads: tuple[int, ...], rounds: int = 3, runs: int = 100) -> dict:
    """{(file name, threads): {op type: ms}}: per-op medians from the native core's benchmark
    (``bench_kernels model``, the library's per-op profile of the same .ebnn files; the median of
    each op over ``runs``, then the median over interleaved ``rounds``). Medians, unlike the means
    of ``edgebnn bench --profile``, are not moved by the scheduler on a shared machine."""
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for path in paths:
            for t in threads:
                done = subprocess.run(
                    [str(BENCH_KERNELS), "model", str(path), "auto", str(t), str(runs), "10"],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                types: dict[str, float] = {}
                for op in json.loads(done.stdout)["ops"]:
                    types[op["type"]] = types.get(op["type"], 0.0) + op["median_ms"]
                samples.setdefault((path.name, t), []).append(types)
    return {
        key: {op: statistics.median(r.get(op, 0.0) for r in rounds_) for op in rounds_[0]}
        for key, rounds_ in samples.items()
    }


def _layer_line(layer, t, mine, default, indirect, best, ratio, op_rate, share) -> str:
    if not (ratio and op_rate):
        return f"| {layer.name} | {t} | failed: {(mine or {}).get('error')} |||||||"

    def ms(r):
        return f"{r['median_ms']:.3f}" if r else "-"

    def rate(r):
        return f"{layer.binary_macs / r['median_ms'] / 1e6:.0f}" if r else "-"

    return (
        f"| {layer.name} | {t} | {ms(mine)} | {ms(default)} | {ms(indirect)} | {rate(mine)} | {rate(best)} | "
        f"{ratio:.1f}x ({verdict(ratio, GOALS['layer_x_lce'][t])}) | "
        f"{op_rate:.0f} | {100 * share:.0f}% ({verdict(share, GOALS['layer_roofline'])}) |"
    )


def _cell(record: dict | None, kind: str, size: int) -> str:
    if not record:
        return "failed"
    kernel = (
        f" [{record['kernel']}]"
        if kind == "native"
        else f" [{record['kernel'] or ''} {record['threads']}t]".replace("[ ", "[")
    )
    return f"{record['median_ms']:.2f} / {record['p90_ms']:.2f}{kernel}, {record['peak_rss_mb']:.0f} MB, {size / 1024:.0f} KB"


def _x(value: float | None, goal: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" + (f" ({verdict(value, goal)})" if goal else "")


def verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value >= goal else f"MISSED by {100 * (1 - value / goal):.0f}%"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=60, help="timed runs per configuration, over the rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (fresh processes each)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--json", type=Path, default=None, help="write every record and ratio here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables as markdown here")
    args = parser.parse_args()
    threads = tuple(int(t) for t in args.threads.split(","))

    from devices.bench import benchmark
    from runtime.native import available_kernels, cpu_features

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with open("/proc/loadavg") as handle:
        load = handle.read().split()[0]
    say(
        f"CPU features: {' '.join(cpu_features())}; native kernels {available_kernels()}; load {load} at start"
    )
    with tempfile.TemporaryDirectory(prefix="native-vs-lce-") as tmp:
        folder = Path(tmp)
        layers, models = build_files(folder, say)
        files = [f for group in (layers, models) for kinds in group.values() for f in kinds.values()]
        say(f"measuring {len(files)} files, threads {threads}, {args.rounds} interleaved rounds")
        report = benchmark(files, threads=threads, runs=args.runs, warmup=5, rounds=args.rounds,
                           lce_kernel=("default", "indirect"), timeout_s=600,
                           on_record=lambda r: say(f"  {Path(r['model']).name} {r['runtime']}[{r.get('kernel')}] "
                                                   f"{r['threads']}t: {r['median_ms'] or r['error']}"))  # fmt: skip
        results = by_config(report.results)
        natives = [kinds["native"] for group in (layers, models) for kinds in group.values()]
        say("per-op medians of the native files (bench_kernels)")
        profile = op_medians(natives, threads)
        sizes = {f.name: f.stat().st_size for f in files}
    isa, roof = roofline()

    lines: list[str] = []
    table: dict = {"system": report.system, "roofline": {"isa": isa, "g_binary_macs": roof}, "layers": [],
                   "models": [], "warnings": report.warnings}  # fmt: skip
    lines += [
        f"Host: {report.system['cpu_model']}, {report.system['cores']} cores, native kernels "
        f"{', '.join(available_kernels())}; roofline {roof:.0f} G binary MAC/s ({isa}, 1 thread, L1 data). "
        f"Load average at start {load}.",
        "",
        "Single binary layers (G binary MAC/s of the whole graph; `native op` = the BCONV2D op alone):",
        "",
        "| layer | thr | native ms | LCE default ms | LCE indirect ms | native G/s | LCE best G/s | x LCE fastest (goal) | native op G/s | % roofline (goal 60%) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    missed: list[tuple[str, Path, int]] = []
    for layer in LAYERS:
        paths = layers[layer.name]
        for t in threads:
            mine = median_of(results, paths["native"], "native", t)
            default = median_of(results, paths["lce"], "lce", t, "default")
            indirect = median_of(results, paths["lce"], "lce", t, "indirect")
            best = median_of(results, paths["lce"], "lce", t, up_to=True)  # LCE's fastest mode, <= t threads
            ratio = best["median_ms"] / mine["median_ms"] if mine and best else None
            op_ms = profile[paths["native"].name, t].get("BCONV2D")
            op_rate = layer.binary_macs / op_ms / 1e6 if op_ms else None
            share = op_rate / (roof * t) if op_rate else None  # at 2 threads: of two cores' roofline
            row = {"layer": layer.name, "threads": t, "binary_macs": layer.binary_macs,
                   "native_ms": mine and mine["median_ms"], "lce_default_ms": default and default["median_ms"],
                   "lce_indirect_ms": indirect and indirect["median_ms"], "x_lce_fastest": ratio,
                   "native_op_ms": op_ms, "native_op_g_binary_macs": op_rate, "roofline_share": share}  # fmt: skip
            table["layers"].append(row)

            lines.append(_layer_line(layer, t, mine, default, indirect, best, ratio, op_rate, share))
            if (ratio or 0) < GOALS["layer_x_lce"][t] or (share or 0) < GOALS["layer_roofline"]:
                missed.append((layer.name, paths["native"], t))
    lines += [
        "",
        "Whole models, random weights (median / p90 ms, peak RSS MB of the worker, file KB):",
        "",
        "| model | thr | native | LCE fastest | LiteRT float | ONNX Runtime | x LCE (goal 2x) | x LiteRT (goal 3x) | x ORT |",
        "|---|---:|---|---|---|---|---:|---:|---:|",
    ]
    for name, paths in models.items():
        for t in threads:
            records = {
                "native": median_of(results, paths["native"], "native", t),
                "lce": median_of(results, paths["lce"], "lce", t, up_to=True),
                "litert": median_of(results, paths["float"], "litert", t, up_to=True),
                "onnxruntime": median_of(results, paths["onnx"], "onnxruntime", t, up_to=True),
            }
            mine = records["native"]
            ratios = {
                k: (r["median_ms"] / mine["median_ms"] if r and mine else None) for k, r in records.items()
            }
            file_of = {
                "native": paths["native"],
                "lce": paths["lce"],
                "litert": paths["float"],
                "onnxruntime": paths["onnx"],
            }

            lines.append(
                f"| {name} | {t} | "
                + " | ".join(_cell(records[k], k, sizes[file_of[k].name]) for k in file_of)
                + f" | {_x(ratios['lce'], GOALS['model_x_lce'])} | {_x(ratios['litert'], GOALS['model_x_litert'])}"
                f" | {_x(ratios['onnxruntime'])} |"
            )
            table["models"].append({"model": name, "threads": t, "ratios": ratios,
                                    **{k: r for k, r in records.items()}})  # fmt: skip
            if (ratios["lce"] or 0) < GOALS["model_x_lce"] or (ratios["litert"] or 0) < GOALS[
                "model_x_litert"
            ]:
                missed.append((name, paths["native"], t))
    if missed:
        lines += [
            "",
            "Where the time goes where a goal is missed (native per-op profile, ms per op type):",
            "",
        ]
        for name, path, t in missed:
            times = profile[path.name, t]
            total = sum(times.values()) or 1.0
            shown = ", ".join(f"{op} {ms:.3f} ({100 * ms / total:.0f}%)" for op, ms in
                              sorted(times.items(), key=lambda kv: -kv[1]) if ms >= 0.001)  # fmt: skip
            lines.append(f"- {name}, {t} thread(s): {shown}")
    if report.warnings:
        lines += ["", *[f"warning: {w}" for w in report.warnings]]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1, default=str))
    return 0 if all(math.isfinite(r.get("median_ms") or math.nan) for r in report.results) else 1


if __name__ == "__main__":
    sys.exit(main())
