"""Every zoo model (random weights, small inputs) through trainer.export -> converter: all binary
convolutions become LceBconv2d and the LCE model matches ONNX Runtime. Also checkpoints in the CLI.

The trainer is imported like any module: if it breaks, these tests fail (they never skip)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from converter_nets import randomize_batchnorm

from converter.audit import audit
from converter.conversion import convert_with_report
from edgebnn.cli import main
from runtime.verify import verify
from trainer import export, zoo

# Small inputs keep the ImageNet layouts cheap; every model still has all of its layers.
INPUT_SIZES = {"fmnist-bnn": 28, "resnet20": 32, "vgg-small": 32}
IMAGENET_SIZE = 64


def zoo_cases():
    for name in zoo.MODELS:
        marks = [] if name == "fmnist-bnn" else [pytest.mark.slow]
        yield pytest.param(name, marks=marks, id=name)


CASES = list(zoo_cases())


def test_every_zoo_model_is_a_case():
    assert len(CASES) == len(zoo.MODELS) and {"fmnist-bnn", "quicknet"} <= set(zoo.MODELS)


@pytest.mark.parametrize("name", CASES)
def test_zoo_model_converts_fully_binary_and_verifies(name):
    torch.manual_seed(0)
    spec = zoo.MODELS[name]
    size = INPUT_SIZES.get(name, IMAGENET_SIZE)
    model = zoo.create_model(name, input_size=size, num_classes=10).eval()
    # Fresh BatchNorms are identities: binary conv outputs (sums of +-1) then reach the next
    # binarizer as exact zeros, where ORT's and LCE's summation orders legitimately disagree.
    # Trained statistics never sit there; random ones stand in for them.
    randomize_batchnorm(model)
    shape = (spec.in_channels, size, size)
    proto = export.export_onnx(model, input_shape=shape)
    conversion = convert_with_report(proto)
    report = audit(conversion.flatbuffer, conversion)
    assert report.expected_binary_convs > 0
    assert report.binary_convs == report.expected_binary_convs, report.warnings
    assert report.warnings == []
    inputs = np.random.default_rng(0).standard_normal((8, *shape), dtype=np.float32)
    result = verify(proto, conversion.flatbuffer, inputs)
    assert result.passed, result.describe()


def test_checkpoint_summary_and_convert(tmp_path, capsys):
    from trainer.checkpoint import new_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = zoo.create_model("fmnist-bnn", num_classes=10, in_channels=1, input_size=28)
    checkpoint = tmp_path / "fmnist.pt"
    save_checkpoint(checkpoint, new_checkpoint(model, epoch=0))
    assert main(["summary", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "LceBconv2d" in out and "% of MACs binary" in out
    output = tmp_path / "fmnist.tflite"
    assert main(["convert", str(checkpoint), "-o", str(output)]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 binary convolutions became LceBconv2d" in out and "verify PASS" in out
    assert output.is_file()
