"""The native runtime behind the engine interface: .ebnn files, LCE .tflite files translated on load
(runtime/translate.py) against the LCE interpreter, the worker's record, the benchmark, and errors.

LCE models here come from larq + LCE (``models.py``, ``native_lce_models.py``, built in child
processes). Tolerance against LCE: top-1 agreement 100% and max |diff| <= 1e-4 of the logit scale:
the binary accumulations are exact in both, LCE folds the back-transformation into its multiplier
and bias in double precision and the float layers sum in another order, which stays near 1e-6.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from devices.bench import benchmark
from formats.ebnn import read
from formats.tflite import schema
from runtime import engines, native, worker
from runtime.engines import detect_runtime, load_engine
from runtime.errors import BenchError
from runtime.record import validate
from runtime.translate import translate_tflite

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def lce_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lce-native")
    done = subprocess.run([sys.executable, str(HERE / "native_lce_models.py"), str(folder)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return {name: folder / f"{name}.tflite" for name in ("features", "grouped")}


@pytest.fixture(scope="module")
def tiny_ebnn(models, tmp_path_factory) -> Path:
    """The tiny larq BNN as a native .ebnn file (translated once, written to disk)."""
    path = tmp_path_factory.mktemp("ebnn") / "tiny_bnn.ebnn"
    path.write_bytes(translate_tflite(models["binary"].read_bytes()))
    return path


def assert_matches(reference: np.ndarray, candidate: np.ndarray) -> None:
    reference, candidate = reference.reshape(len(reference), -1), candidate.reshape(len(candidate), -1)
    scale = float(reference.std())
    assert np.array_equal(reference.argmax(1), candidate.argmax(1))
    assert np.abs(reference - candidate).max() <= 1e-4 * scale, (np.abs(reference - candidate).max(), scale)


def inputs_for(engine, count: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *engine.input_shape[1:])).astype(np.float32)


@pytest.mark.parametrize(
    "case,lce_kernel", [("tiny", "default"), ("features", "default"), ("grouped", "indirect")]
)
def test_lce_tflite_runs_natively_with_lces_outputs(models, lce_models, case, lce_kernel):
    path = models["binary"] if case == "tiny" else lce_models[case]
    lce = load_engine(
        path, "lce", lce_kernel=lce_kernel, xnnpack=False
    )  # grouped: LCE's indirect kernel only
    engine = load_engine(path, "native")
    assert engine.name == "native" and engine.kernel in native.available_kernels()
    x = inputs_for(lce)
    assert_matches(lce.predict(x), engine.predict(x))


def test_translation_keeps_binary_layers_binary(lce_models):
    ops = [op for op in read(translate_tflite(lce_models["features"].read_bytes())).ops]
    names = [op.op for op in ops]
    assert names.count("BCONV2D") == 5 and names.count("BMAXPOOL2D") == 1 and "DEQUANTIZE" not in names
    bconvs = [op for op in ops if op.op == "BCONV2D"]
    assert {op.params["pad_value"] for op in bconvs if op.params["pad_top"]} == {
        0,
        1,
    }  # zero- and one-padding
    assert any(op.params["dilation_h"] == 2 for op in bconvs) and any(
        op.params["stride_h"] == 2 for op in bconvs
    )
    grouped = read(translate_tflite(lce_models["grouped"].read_bytes())).ops
    assert [op.params["groups"] for op in grouped if op.op == "BCONV2D"] == [2]


def test_float_twin_runs_natively(models):
    float_model = models["float"]
    reference = load_engine(float_model, "litert", xnnpack=False)
    x = inputs_for(reference, count=4)
    assert_matches(reference.predict(x), load_engine(float_model, "native").predict(x))


def test_every_kernel_set_and_thread_count_agree(tiny_ebnn):
    x = inputs_for(load_engine(tiny_ebnn), count=4)
    outputs = {}
    for kernel in native.available_kernels():
        for threads in (1, 2):
            engine = load_engine(tiny_ebnn, threads=threads, native_kernel=kernel)
            assert engine.kernel == kernel and engine.threads == threads
            outputs[kernel, threads] = engine.predict(x)
    assert len(outputs) >= 2
    reference = outputs["scalar", 1]
    for (kernel, _threads), y in outputs.items():
        assert np.array_equal(y, outputs[kernel, 1])  # threads never change a result
        assert_matches(reference, y)  # kernels differ only by FMA rounding in float layers


def test_ebnn_is_detected_and_checked(tiny_ebnn, tmp_path):
    assert detect_runtime(tiny_ebnn) == "native"
    assert engines.model_kind(tiny_ebnn.read_bytes()) == "ebnn"
    with pytest.raises(BenchError, match="native .ebnn model; runtime 'lce' cannot run it"):
        load_engine(tiny_ebnn, "lce")
    truncated = tmp_path / "truncated.ebnn"
    truncated.write_bytes(tiny_ebnn.read_bytes()[:500])
    with pytest.raises(BenchError, match="truncated"):
        load_engine(truncated)
    with pytest.raises(BenchError, match="unknown native kernel 'sse'"):
        load_engine(tiny_ebnn, native_kernel="sse")


def _tflite(ops: list[str], input_type: int = 0) -> bytes:
    """A one-subgraph .tflite with a chain of builtin ops on a [1, 4] tensor (schema objects, no TF)."""
    module = schema()
    model = module.ModelT()
    model.version, model.buffers = 3, [module.BufferT()]
    subgraph = module.SubGraphT()
    subgraph.tensors = []
    for index in range(len(ops) + 1):
        tensor = module.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = (
            [1, 4],
            input_type if index == 0 else 0,
            0,
            f"t{index}".encode(),
        )
        subgraph.tensors.append(tensor)
    model.operatorCodes, subgraph.operators = [], []
    for index, name in enumerate(ops):
        code = module.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = getattr(module.BuiltinOperator, name)
        model.operatorCodes.append(code)
        op = module.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, [index], [index + 1]
        subgraph.operators.append(op)
    subgraph.inputs, subgraph.outputs = [0], [len(ops)]
    model.subgraphs = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_translation_errors_name_the_op(tmp_path):
    relu = _tflite(["RELU"])
    engine = load_engine(relu, "native")
    np.testing.assert_array_equal(engine.predict(np.array([[-1, 0, 2, -3]], np.float32)), [[0, 0, 2, 0]])
    with pytest.raises(BenchError, match="cannot run this model: TANH: op not supported"):
        translate_tflite(_tflite(["RELU", "TANH"]))
    with pytest.raises(BenchError, match="int8"):
        translate_tflite(_tflite(["RELU"], input_type=9))
    with pytest.raises(BenchError, match="not a valid .tflite"):
        translate_tflite(relu[:40])


def run_worker(*args) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "runtime.worker", *map(str, args)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def assert_valid(records: list[dict]) -> None:
    system = worker.system_facts() | {"device": "host", "emulated": False}
    validate({"schema": "edgebnn-bench/1", "system": system, "results": records})


def test_worker_measures_ebnn_and_translated_tflite(tiny_ebnn, models):
    code, record = run_worker(tiny_ebnn, "--runs", 12, "--threads", 2, "--profile")
    assert code == 0, record["error"]
    assert record["runtime"] == "native" and record["kernel"] in native.available_kernels()
    assert record["runtime_version"] == native.version() and record["xnnpack"] is None
    assert (
        record["threads"] == 2
        and len(record["latencies_ms"]) == 12
        and record["imported_tensorflow"] is False
    )
    assert 0 < record["min_ms"] <= record["median_ms"] and record["load_ms"] > 0 and record["peak_rss_mb"] > 0
    assert record["model_size_bytes"] == tiny_ebnn.stat().st_size
    profiled = {entry["op"] for entry in record["profile"]}
    assert {"BCONV2D", "QUANTIZE", "CONV2D"} <= profiled and all(e["count"] >= 12 for e in record["profile"])
    code, record = run_worker(
        models["binary"], "--runtime", "native", "--native-kernel", "scalar", "--runs", 3
    )
    assert code == 0 and record["runtime"] == "native" and record["kernel"] == "scalar"
    assert_valid([record])
    code, record = run_worker(_write(models["binary"].parent / "tanh.tflite", _tflite(["TANH"])), "--runtime",
                              "native", "--runs", 2)  # fmt: skip
    assert code == 2 and "TANH" in record["error"] and record["runtime"] == "native"
    assert_valid([record])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_benchmark_native_beside_lce_and_litert(tiny_ebnn, models):
    report = benchmark([tiny_ebnn, models["binary"], models["float"]], threads=(1, 2), runs=6, warmup=1,
                       lce_kernel=("default", "indirect"))  # fmt: skip
    rows = [(r["model_name"], r["runtime"], r["threads"]) for r in report.results]
    assert rows[:2] == [("tiny_bnn", "native", 1), ("tiny_bnn", "native", 2)]
    assert {r[1] for r in rows} == {"native", "lce", "litert"} and report.ok
    for record in report.results:
        assert record["ratio"] == pytest.approx(
            record["median_ms"] / report.results[record["threads"] - 1]["median_ms"]
        )
    assert report.settings["native_kernel"] == ["auto"]
    assert_valid(report.results)


def test_worker_runs_native_standalone_from_the_device_folder(tiny_ebnn, tmp_path):
    """The device layout: WORKER_FILES plus the library as runtime/native/libedgebnn.so."""
    files = worker.worker_files()
    assert worker.WORKER_LIBRARY in files
    folder = tmp_path / "device"
    for name, path in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / name)
    code = (
        f"import sys, runpy; sys.path.insert(0, {str(folder)!r})\n"
        f"sys.argv = ['worker', {str(tiny_ebnn)!r}, '--runs', '3']\n"
        "import runtime.native as n; print('lib', n.library_path(), file=sys.stderr)\n"
        "runpy.run_module('runtime.worker', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    assert f"lib {folder / worker.WORKER_LIBRARY}" in done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and record["status"] == "ok" and record["runtime"] == "native"
