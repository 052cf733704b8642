"""runtime.engines: detection, loading and numerics of the three real runtimes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from runtime import engines
from runtime.engines import detect_runtime, load_engine
from runtime.errors import BenchError


def test_detects_runtime_from_content(models):
    assert detect_runtime(models["binary"]) == "lce"
    assert detect_runtime(models["float"]) == "litert"
    assert detect_runtime(models["onnx"]) == "onnxruntime"
    assert detect_runtime(models["binary"].read_bytes()) == "lce"  # bytes work too


def test_lists_lce_custom_ops(models):
    ops = engines.tflite_custom_ops(models["binary"].read_bytes())
    assert "LceBconv2d" in ops and "LceQuantize" in ops
    assert engines.tflite_custom_ops(models["float"].read_bytes()) == []


@pytest.mark.parametrize(
    "kind,runtime", [("binary", "lce"), ("float", "litert"), ("float", "lce"), ("onnx", "onnxruntime")]
)
def test_each_runtime_predicts(models, kind, runtime):
    engine = load_engine(models[kind], runtime)
    assert engine.name == runtime
    assert engine.version == engines.runtime_version(runtime) != "not installed"
    assert engine.input_dtype == np.float32
    x = np.random.default_rng(1).standard_normal((3, *engine.input_shape[1:])).astype(np.float32)
    batch = engine.predict(x)
    assert batch.shape == (3, 10) and np.isfinite(batch).all()
    rows = np.concatenate([engine.predict(row[None]) for row in x])
    np.testing.assert_allclose(batch, rows, rtol=1e-5, atol=1e-5)
    assert not np.allclose(batch[0], batch[1])  # different inputs give different logits


def test_lce_kernels_agree_and_litert_matches_lce_on_float(models):
    x = np.random.default_rng(2).standard_normal((4, 16, 16, 3)).astype(np.float32)
    outputs = [load_engine(models["binary"], "lce", lce_kernel=k).predict(x) for k in engines.LCE_KERNELS]
    for other in outputs[1:]:
        np.testing.assert_allclose(outputs[0], other, rtol=1e-5, atol=1e-4)
    litert = load_engine(models["float"], "litert", threads=2).predict(x)
    lce = load_engine(models["float"], "lce", threads=2, xnnpack=False).predict(x)
    np.testing.assert_allclose(litert, lce, rtol=1e-4, atol=1e-4)


def test_invoke_uses_the_input_set(models):
    engine = load_engine(models["onnx"])
    x = np.random.default_rng(3).standard_normal(engine.input_shape).astype(np.float32)
    engine.set_input(x)
    engine.invoke()
    np.testing.assert_allclose(engine.output(), engine.predict(x), rtol=1e-6)


def test_lce_model_refused_by_litert(models):
    with pytest.raises(BenchError, match="this model needs the LCE runtime"):
        load_engine(models["binary"], "litert")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"runtime": "tensorrt"}, "unknown runtime 'tensorrt'"),
        ({"threads": 0}, "threads must be an integer >= 1"),
        ({"lce_kernel": "fast"}, "unknown LCE kernel 'fast'"),
    ],
)
def test_bad_options(models, kwargs, message):
    with pytest.raises(BenchError, match=message):
        load_engine(models["binary"], **kwargs)


def test_wrong_format_for_runtime(models):
    with pytest.raises(BenchError, match="is an ONNX model"):
        load_engine(models["onnx"], "lce")
    with pytest.raises(BenchError, match="is a .tflite model"):
        load_engine(models["float"], "onnxruntime")


def test_not_a_model(tmp_path, models):
    text = tmp_path / "notes.tflite"
    text.write_text("hello, not a flatbuffer")
    with pytest.raises(BenchError, match="is not a model file"):
        detect_runtime(text)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(models["float"].read_bytes()[:1000])
    with pytest.raises(BenchError, match="not a valid .tflite flatbuffer"):
        detect_runtime(truncated)
    with pytest.raises(BenchError, match="model file not found"):
        load_engine(tmp_path / "missing.onnx")


def test_wrong_input_shape(models):
    engine = load_engine(models["binary"])
    with pytest.raises(BenchError, match="does not fit the model's input"):
        engine.predict(np.zeros((1, 8, 8, 3), np.float32))


def test_importing_runtime_is_cheap_and_tensorflow_free():
    code = (
        "import sys, runtime.engines, runtime.record, runtime.worker, runtime.report, runtime.verify;"
        "from runtime.engines import import_runtime; import_runtime('lce');"
        "heavy = [m for m in ('tensorflow', 'torch', 'larq', 'larq_compute_engine') if m in sys.modules];"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_lce_detection_without_flatbuffers(models):
    """On a device whose TFLite runtime came without the flatbuffers package, LCE ops are found by name."""
    code = (
        "import sys; sys.modules['flatbuffers'] = None\n"
        "from runtime import engines\n"
        f"print(engines.detect_runtime({str(models['binary'])!r}), engines.detect_runtime({str(models['float'])!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["lce", "litert"]


def test_onnx_with_external_data_files(models, tmp_path):
    """torch's dynamo exporter writes weights to a side file: load from the path, count its bytes."""
    import onnx

    model = onnx.load(str(models["onnx"]))
    path = tmp_path / "external.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="external.onnx.data", size_threshold=0
    )
    data = tmp_path / "external.onnx.data"
    assert data.stat().st_size > path.stat().st_size  # the weights really moved out
    x = np.random.default_rng(4).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(
        load_engine(path).predict(x), load_engine(models["onnx"]).predict(x), rtol=1e-6
    )
    assert engines.model_size_bytes(path) == path.stat().st_size + data.stat().st_size
    assert engines.model_size_bytes(models["binary"]) == models["binary"].stat().st_size
