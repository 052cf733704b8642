"""How much does the harness add to what it measures? Harness median versus a bare invoke loop.

For each model, alternately in fresh processes (harness, bare, harness, bare, ...):

- harness: ``devices.bench.benchmark`` with one round (the worker process ``edgebnn bench`` uses);
- bare: a hand-written loop on the runtime's own Python API, no edgebnn code at all
  (LCE ``LiteInterpreter.predict``, LiteRT ``Interpreter.invoke``, ONNX Runtime ``run_with_iobinding``),
  timed the same way (``perf_counter_ns`` around the call, gc off).

It prints both pooled medians and their ratio; the target is within 2 % (ratio 0.98-1.02). On a
busy machine run more rounds: the ratio is only as steady as the machine.

    .venv/bin/python benchmarks/bench_overhead.py                  # builds the tiny test models
    .venv/bin/python benchmarks/bench_overhead.py model.tflite --runs 300 --rounds 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devices.bench import benchmark  # noqa: E402
from runtime import engines  # noqa: E402

# The bare loop: only the runtime's own API. argv: model runtime runs warmup; prints latencies (ms) as JSON.
BARE_LOOP = r"""
import gc, json, sys, time
import numpy as np
model, runtime, runs, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
content = open(model, "rb").read()
if runtime == "lce":
    import glob, importlib.machinery, importlib.util
    base = importlib.util.find_spec("larq_compute_engine").submodule_search_locations[0]
    so = glob.glob(base + "/tflite/python/interpreter_wrapper_lite*.so")[0]
    loader = importlib.machinery.ExtensionFileLoader("interpreter_wrapper_lite", so)
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location("interpreter_wrapper_lite", so, loader=loader))
    loader.exec_module(module)
    interpreter = module.LiteInterpreter(content, 1, False, False, True)
    inputs = [np.random.default_rng(0).standard_normal(interpreter.input_shapes[0]).astype(np.float32)]
    call = lambda: interpreter.predict(inputs)
elif runtime == "litert":
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.random.default_rng(0).standard_normal(detail["shape"]).astype(np.float32))
    call = interpreter.invoke
else:
    import onnxruntime as ort
    options = ort.SessionOptions(); options.intra_op_num_threads = 1; options.inter_op_num_threads = 1
    session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    binding = session.io_binding(); binding.bind_cpu_input(first.name, x)
    for output in session.get_outputs(): binding.bind_output(output.name, "cpu")
    call = lambda: session.run_with_iobinding(binding)
call()
latencies = [0] * runs
gc.disable()
for _ in range(warmup): call()
for i in range(runs):
    start = time.perf_counter_ns(); call(); latencies[i] = time.perf_counter_ns() - start
gc.enable()
print(json.dumps([t / 1e6 for t in latencies]))
"""


def bare(model: str, runtime: str, runs: int, warmup: int) -> list[float]:
    argv = [sys.executable, "-c", BARE_LOOP, model, runtime, str(runs), str(warmup)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def harness(model: str, runtime: str, runs: int, warmup: int) -> list[float]:
    (record,) = benchmark(model, runtime=runtime, runs=runs, warmup=warmup, rounds=1, timeout_s=600).results
    if record["status"] != "ok":
        raise SystemExit(f"{model}: {record['error']}")
    return record["latencies_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", help="default: the tiny binary/float/ONNX test models, built now"
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    models = args.models
    if not models:
        folder = tempfile.mkdtemp(prefix="edgebnn-overhead-")
        subprocess.run([sys.executable, str(REPO / "tests/runtime/models.py"), folder], check=True,
                       capture_output=True)  # fmt: skip
        models = [str(p) for p in sorted(Path(folder).iterdir())]

    print(f"{'model':<24} {'runtime':<12} {'harness ms':>11} {'bare ms':>9} {'ratio':>7}   per-round ratios")
    for model in models:
        runtime = engines.detect_runtime(model)
        pooled_harness: list[float] = []
        pooled_bare: list[float] = []
        round_ratios = []
        for round_index in range(args.rounds):  # alternate (and swap who goes first): drift hits both alike
            if round_index % 2:
                bare_round = bare(model, runtime, args.runs, args.warmup)
            harness_round = harness(model, runtime, args.runs, args.warmup)
            if not round_index % 2:
                bare_round = bare(model, runtime, args.runs, args.warmup)
            pooled_harness += harness_round
            pooled_bare += bare_round
            round_ratios.append(statistics.median(harness_round) / statistics.median(bare_round))
        h, b = statistics.median(pooled_harness), statistics.median(pooled_bare)
        verdict = "ok" if abs(h / b - 1) <= 0.02 else "outside 2%"
        spread = (
            f"median {statistics.median(round_ratios):.3f}, {min(round_ratios):.3f}-{max(round_ratios):.3f}"
        )
        print(
            f"{Path(model).name:<24} {runtime:<12} {h:>11.4f} {b:>9.4f} {h / b:>7.3f}   {spread}  {verdict}"
        )


if __name__ == "__main__":
    main()
