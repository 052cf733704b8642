"""The Python binding runtime.native: finding the library, NativeModel's API and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runtime.native as native
from formats.ebnn import ModelBuilder
from runtime.errors import BenchError
from runtime.native import NativeModel

ROOT = Path(__file__).resolve().parents[2]


def clip_model() -> bytes:
    b = ModelBuilder(metadata=b'{"model": "clip"}')
    x = b.add_input((1, 2, 2, 3))
    b.set_outputs([b.add_op("CLIP", [x], out_min=0.0, name="relu")])
    return b.to_bytes()


def test_library_and_cpu(native_build) -> None:
    assert native.library_path() == native_build / "libedgebnn.so"
    assert native.version() == "0.1.0"
    assert native.available_kernels()[-1] == "scalar"
    features = native.cpu_features()
    if "avx512" in native.available_kernels():
        assert {"avx512f", "avx512vpopcntdq", "os_zmm"} <= set(features)


def test_missing_library_says_make_native(native_build, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(native, "HERE", tmp_path)
    monkeypatch.delenv(native.ENV_LIBRARY, raising=False)
    with pytest.raises(BenchError, match="run `make native`") as raised:
        native.library_path()
    assert raised.value.exit_code == 2
    monkeypatch.setenv(native.ENV_LIBRARY, str(tmp_path / "nope.so"))
    with pytest.raises(BenchError, match="nope.so does not exist"):
        native.library_path()


def test_import_compiles_nothing_and_loads_no_torch() -> None:
    probe = "import sys, runtime.native; print('torch' in sys.modules, 'tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_native_model_from_bytes_and_path(native_build, model_files) -> None:
    path = model_files["binary_net"]
    inputs = np.random.default_rng(0).standard_normal((3, 10, 10, 1)).astype(np.float32)
    with NativeModel(path.read_bytes()) as from_bytes, NativeModel(path) as from_path:
        assert from_bytes.input_shapes == [(1, 10, 10, 1)] and from_bytes.output_shapes == [(1, 5)]
        out = from_bytes.run(inputs)
        assert out.shape == (3, 5)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)  # softmax
        np.testing.assert_array_equal(out, from_path.run(inputs))
        np.testing.assert_array_equal(from_path.run(inputs[1]), out[1:2])  # one sample without batch axis
        assert from_path.metadata["model"] == "test-bnn" and from_path.metadata["labels"] == list("abcde")
        assert from_path.memory_bytes > 0
        from_path.set_input(inputs[2])
        from_path.invoke()
        np.testing.assert_array_equal(from_path.output(), out[2:3])


def test_threads_and_kernels(native_build, model_files, monkeypatch) -> None:
    data = model_files["binary_net"].read_bytes()
    inputs = np.random.default_rng(1).standard_normal((2, 10, 10, 1)).astype(np.float32)
    model = NativeModel(data, threads=2, kernel="scalar")
    assert model.threads == 2 and model.kernel == "scalar"
    reference = model.run(inputs)
    model.threads = 1
    np.testing.assert_array_equal(model.run(inputs), reference)
    best = native.available_kernels()[0]
    model.kernel = best
    assert model.kernel == best
    np.testing.assert_allclose(model.run(inputs), reference, rtol=1e-5, atol=1e-6)
    with pytest.raises(BenchError, match="unknown kernel 'fast'"):
        model.kernel = "fast"
    with pytest.raises(BenchError, match="threads must be 1 to 1024"):
        model.threads = 0
    monkeypatch.setenv("EDGEBNN_NATIVE_KERNEL", "scalar")
    assert NativeModel(data).kernel == "scalar"
    monkeypatch.setenv("EDGEBNN_NATIVE_KERNEL", "quantum")
    with pytest.raises(BenchError, match="EDGEBNN_NATIVE_KERNEL asks for unknown kernel 'quantum'"):
        NativeModel(data)
    monkeypatch.delenv("EDGEBNN_NATIVE_KERNEL")
    if "avx512" not in native.available_kernels():
        with pytest.raises(BenchError, match="kernel 'avx512'"):
            NativeModel(data, kernel="avx512")


def test_errors_are_bench_errors(native_build, tmp_path) -> None:
    data = bytearray(clip_model())
    data[-3] ^= 0xFF
    with pytest.raises(BenchError, match="checksum mismatch"):
        NativeModel(bytes(data))
    NativeModel(bytes(data), verify_checksum=False).close()  # the damage hit the padding of STRINGS
    with pytest.raises(BenchError, match="truncated"):
        NativeModel(clip_model()[:100])
    with pytest.raises(BenchError, match="cannot open .*missing.ebnn"):
        NativeModel(tmp_path / "missing.ebnn")
    model = NativeModel(clip_model())
    with pytest.raises(BenchError, match=r"shape \[N, 2, 2, 3\]"):
        model.run(np.zeros((1, 3, 2, 2), np.float32))
    model.close()
    with pytest.raises(BenchError, match="closed"):
        model.run(np.zeros((1, 2, 2, 3), np.float32))


def test_profile(native_build, model_files) -> None:
    model = NativeModel(model_files["binary_net"], profile=True)
    inputs = np.zeros((4, 10, 10, 1), np.float32)
    model.run(inputs)
    ops = model.profile()
    assert [op.type for op in ops][:3] == ["CONV2D", "QUANTIZE", "BCONV2D"]
    assert all(op.calls == 4 for op in ops)
    assert ops[2].name == "bconv1" and ops[2].binary_macs == 5 * 5 * 48 * 9 * 40
    assert ops[0].flops == 2 * 10 * 10 * 40 * 9
    assert sum(op.total_ms for op in ops) > 0
    model.reset_profile()
    assert all(op.calls == 0 for op in model.profile())
    model.set_profiling(False)
    model.run(inputs)
    assert all(op.calls == 0 for op in model.profile())
