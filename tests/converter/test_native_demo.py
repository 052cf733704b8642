"""The demo model, trained (briefly) on real Fashion-MNIST, in the native runtime: it agrees with ONNX
Runtime on all 10,000 test images, through the commands a user types."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgebnn.cli import main
from trainer.train import TrainConfig, train

FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow  # ~1.5 min on 2 busy cores: training, then 10,000 images through both runtimes
@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs the dataset-fashion-mnist Debian package")
def test_trained_demo_model_agrees_on_the_whole_test_set(tmp_path, capsys):
    # The pipeline's fmnist-bnn at a quarter of the demo's width, one short epoch: trained weights and
    # BatchNorm statistics (what the demo deploys), in seconds.
    run = tmp_path / "run"
    train(TrainConfig(model="fmnist-bnn", data="fashion-mnist", out=str(run), model_options={"width": 16},
                      subset=4000, val_size=500, epochs=1, batch_size=128, augment=False, threads=2,
                      verbose=False))  # fmt: skip
    onnx_path, ebnn = tmp_path / "demo.onnx", tmp_path / "demo.ebnn"
    assert main(["export", str(run / "best.pt"), "-o", str(onnx_path)]) == 0
    assert main(["convert", str(onnx_path), "-o", str(ebnn), "--target", "native"]) == 0
    capsys.readouterr()
    code = main(["verify", str(onnx_path), str(ebnn), "--data", "fashion-mnist", "--n", "10000"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verify PASS: 10000 samples, top-1 agreement 100.00%" in out, out
    accuracy = re.search(r"accuracy ([\d.]+)% \(reference\), ([\d.]+)% \(candidate\)", out)
    assert accuracy and accuracy.group(1) == accuracy.group(2) and float(accuracy.group(1)) > 50
