"""Session fixtures: tiny real models (built once per session, in a child process so that TensorFlow,
needed only to build them, never enters the test process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    """{"binary": LCE .tflite, "float": plain .tflite, "onnx": .onnx with edgebnn.accuracy=0.5}."""
    folder = tmp_path_factory.mktemp("models")
    done = subprocess.run(
        [sys.executable, str(HERE / "models.py"), str(folder)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    paths = {
        "binary": folder / "tiny_bnn.tflite",
        "float": folder / "tiny_float.tflite",
        "onnx": folder / "tiny_cnn.onnx",
    }
    assert all(path.is_file() for path in paths.values())
    return paths


@pytest.fixture(scope="session")
def corrupt_tflite(tmp_path_factory, models) -> Path:
    """A file with the TFLite identifier and a truncated body: passes detection, fails in the runtime."""
    path = tmp_path_factory.mktemp("bad") / "corrupt.tflite"
    content = models["float"].read_bytes()
    path.write_bytes(content[:64])
    return path
