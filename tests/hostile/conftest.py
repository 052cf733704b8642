"""Fixtures of the hostile-input suite: one small valid file of every format edgebnn reads.

Built once per session. The checkpoint, ONNX and .ebnn files come from a real (tiny) training run,
export and native conversion in this process (no TensorFlow); the .tflite comes from a child
process so that TensorFlow never enters the test process (its import alone takes ~10 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile_files import REPO, write_cifar_folder, write_fmnist_folder


@pytest.fixture(scope="session")
def valid(tmp_path_factory) -> dict[str, Path]:
    """Valid small files: checkpoint (with loop state), onnx, ebnn, tflite, npy, idx, cifar, profile, pipeline."""
    from converter.conversion import convert_with_report
    from trainer.export import export_checkpoint
    from trainer.train import TrainConfig, train

    root = tmp_path_factory.mktemp("valid")
    run = root / "run"
    train(TrainConfig(model="fmnist-bnn", model_options={"width": 8}, data="synthetic", epochs=1,
                      subset=64, val_size=16, batch_size=32, out=str(run), verbose=False, threads=1))  # fmt: skip
    onnx_path = root / "tiny.onnx"
    export_checkpoint(run / "best.pt", onnx_path)
    ebnn_path = root / "tiny.ebnn"
    ebnn_path.write_bytes(convert_with_report(onnx_path, target="native").flatbuffer)
    tflite_path = root / "tiny.tflite"
    code = (
        "import sys; from converter.conversion import convert; "
        "open(sys.argv[2], 'wb').write(convert(sys.argv[1], target='lce'))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(onnx_path), str(tflite_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    npy_path = root / "inputs.npy"
    np.save(npy_path, np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32))
    fmnist = write_fmnist_folder(root / "fmnist")
    cifar = write_cifar_folder(root / "cifar")
    profile = root / "board.toml"
    profile.write_text(
        (REPO / "devices/profiles/rpi4.toml").read_text().replace('name = "rpi4"', 'name = "board"')
    )
    pipeline = root / "pipeline.toml"
    pipeline.write_text(
        "model_options = { width = 8 }\nsubset = 600\nbench_threads = [1]\n[baseline]\nepochs = 1\n"
    )
    return {
        "run": run, "checkpoint": run / "best.pt", "last": run / "last.pt", "onnx": onnx_path,
        "ebnn": ebnn_path, "tflite": tflite_path, "npy": npy_path, "fmnist": fmnist, "cifar": cifar,
        "profile": profile, "pipeline": pipeline,
    }  # fmt: skip


@pytest.fixture
def work(tmp_path: Path, valid: dict[str, Path]) -> Path:
    """A fresh folder holding copies of the valid files (tests may damage them)."""
    for name in ("checkpoint", "onnx", "ebnn", "tflite", "npy", "profile", "pipeline"):
        shutil.copy(valid[name], tmp_path / valid[name].name)
    return tmp_path


@pytest.fixture
def edgebnn(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """Run the CLI in this process: (exit code, stderr); asserts a clean one-line error on failure."""
    from edgebnn.cli import main

    def run(*argv: str | os.PathLike) -> tuple[int, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:  # argparse
            code = int(stop.code or 0)
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        return code, err

    return run
