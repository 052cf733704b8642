"""Conversion of foreign ONNX BNNs with the real LCE converter, checked in the real LCE interpreter
against ONNX Runtime (runtime.verify)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from converter_nets import BinaryConv, ForeignBNN, export, random_inputs, randomize_batchnorm
from torch import nn

from converter.audit import audit
from converter.conversion import convert, convert_with_report
from formats.models import read_metadata
from formats.tflite import read_tflite
from formats.tflite import write_deploy_metadata as write_tflite
from runtime.verify import INT8_MIN_AGREEMENT, INT8_RTOL, run_model, verify


def lce_ops(flatbuffer: bytes) -> list[str]:
    return [op.name for op in read_tflite(flatbuffer).operators]


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_foreign_bnn_all_binary_convs_become_lce_and_match_onnxruntime(foreign_onnx, exporter):
    conversion = convert_with_report(foreign_onnx[exporter])
    report = audit(conversion.flatbuffer, conversion)
    assert report.binary_convs == 2 and report.expected_binary_convs == 2, report.op_histogram
    assert report.warnings == [] and report.not_binarized == {}
    assert report.op_histogram["CONV_2D"] == 1  # only the float stem
    assert report.packed_weight_bytes == (32 + 64) * 3 * 3 * 4  # one int32 word per 32 input channels
    assert report.compression_ratio > 1.5
    assert audit(conversion.flatbuffer).not_binarized == {}  # no float conv with binary weights left
    result = verify(foreign_onnx[exporter], conversion.flatbuffer, random_inputs((1, 28, 20)))
    assert result.passed, result.describe()
    assert result.agreement == 1.0 and result.relative_max_diff < 1e-4


def test_stride2_symmetric_one_padding_is_exact():
    """PyTorch-style pad (1,1) at stride 2 on an even size: LCE's fused one-padding would compute
    TF SAME (0,1) silently; the converter pads the float input instead and stays binary and exact."""
    torch.manual_seed(1)
    model = ForeignBNN(size=(28, 28), stride2_padding="symmetric")
    onnx_bytes = export(model, (1, 28, 28), dynamo=True)
    conversion = convert_with_report(onnx_bytes)
    assert lce_ops(conversion.flatbuffer).count("LceBconv2d") == 2
    result = verify(onnx_bytes, conversion.flatbuffer, random_inputs((1, 28, 28)))
    assert result.passed, result.describe()
    assert result.relative_max_diff < 1e-4


class MixedBinarizers(nn.Module):
    """Three binarized convs: Sign(Sign(x)+0.1) (LCE-exact), plain Sign (0 -> 0), and float weights."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 32, 3, padding=1)
        self.signsign = BinaryConv(32, 32, binarizer="signsign")
        self.sign = BinaryConv(32, 32, binarizer="sign", padding="none")
        self.not_binary = BinaryConv(32, 32, binary_weights=False)
        self.fc = nn.Linear(32, 5)
        # BatchNorm between binary convs: a binary conv's output is often exactly 0 (a sum of +-1),
        # where binarizers disagree by design (plain Sign) or by summation order (ORT vs LCE).
        self.bn1, self.bn2 = nn.BatchNorm2d(32), nn.BatchNorm2d(32)
        randomize_batchnorm(self)

    def forward(self, x):
        x = self.stem(x)
        x = self.bn1(self.signsign(x))
        x = self.bn2(self.sign(x))
        x = self.not_binary(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_binarizer_variants_and_non_binary_weights_are_reported():
    torch.manual_seed(2)
    onnx_bytes = export(MixedBinarizers(), (2, 12, 12), dynamo=False)
    conversion = convert_with_report(onnx_bytes)
    report = audit(conversion.flatbuffer, conversion)
    assert report.binary_convs == 1 and report.expected_binary_convs == 3
    reasons = list(conversion.float_binary_convs.values())
    assert any("plain Sign" in reason for reason in reasons), reasons
    assert any("not +-a per output channel" in reason for reason in reasons), reasons
    assert len(report.warnings) == 2 and all("NOT an LceBconv2d" in w for w in report.warnings)
    assert lce_ops(conversion.flatbuffer).count("CONV_2D") == 3  # stem + the two float "binary" convs
    result = verify(onnx_bytes, conversion.flatbuffer, random_inputs((2, 12, 12)))
    assert result.passed, result.describe()


def test_tflite_audit_finds_binary_weights_left_in_float():
    """Without the ONNX side, a CONV_2D whose filter is +-a per channel is flagged by the audit."""
    torch.manual_seed(4)
    onnx_bytes = export(ForeignBNN(), (1, 28, 20), dynamo=True)
    report = audit(convert(onnx_bytes, target="tflite"))
    assert report.binary_convs == 0 and report.expected_binary_convs == 2
    assert len(report.not_binarized) == 2 and report.runtime_required == "stock TFLite"


class FloatZoo(nn.Module):
    """Float ops foreign graphs use: depthwise/grouped convs, PReLU, ReLU6, pools, concat, 7x7/2 stem
    with symmetric padding (LCE's pad fusion would mistake it for SAME), matmul after a flatten."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 7, stride=2, padding=3)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.prelu = nn.PReLU(16)
        self.bn = nn.BatchNorm2d(32)
        self.weight = nn.Parameter(torch.randn(32 * 4 * 3, 6) * 0.1)

    def forward(self, x):
        x = self.stem(x)
        a = F.relu6(self.depthwise(x))
        b = self.prelu(self.grouped(x))
        x = self.bn(torch.cat([a, b], dim=1))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        x = F.avg_pool2d(x, 2, ceil_mode=True)
        x = (x - 0.1) / 2.0 + x.mean(dim=(2, 3), keepdim=True)
        return torch.flatten(x, 1) @ self.weight


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_float_ops_and_flatten_order(exporter):
    torch.manual_seed(5)
    model = FloatZoo()
    shape = (3, 30, 22)  # -> 4x3 before the flatten: NHWC order differs from NCHW
    assert model(torch.zeros(1, *shape)).shape == (1, 6)
    onnx_bytes = export(model, shape, dynamo=exporter == "dynamo")
    flatbuffer = convert(onnx_bytes)
    result = verify(onnx_bytes, flatbuffer, random_inputs(shape))
    assert result.passed, result.describe()
    assert result.relative_max_diff < 1e-4


def test_target_tflite_float_and_int8(foreign_onnx):
    onnx_bytes = foreign_onnx["dynamo"]
    inputs = random_inputs((1, 28, 20), count=64, seed=1)
    float_model = convert(onnx_bytes, target="tflite")
    assert not any(op.startswith("Lce") for op in lce_ops(float_model))
    assert verify(onnx_bytes, float_model, inputs).passed

    # int8 of a BNN: quantised, float I/O, integer weights. (Its agreement is measured, not judged:
    # int8 rounding moves activations across the binarizer thresholds of a random-weight BNN.)
    int8_model = convert(
        onnx_bytes, target="tflite", int8=True, calibration=random_inputs((1, 28, 20), 128, 2)
    )
    parsed = read_tflite(int8_model)
    names = [op.name for op in parsed.operators]
    assert "QUANTIZE" in names and not any(name.startswith("Lce") for name in names)
    conv_weights = [parsed.tensors[op.inputs[1]].dtype for op in parsed.operators if op.name == "CONV_2D"]
    assert conv_weights and all(dtype is np.int8 for dtype in conv_weights)
    assert len(int8_model) < len(float_model)


def test_int8_float_network_stays_close():
    torch.manual_seed(6)
    shape = (3, 30, 22)
    onnx_bytes = export(FloatZoo(), shape, dynamo=True)
    int8_model = convert(onnx_bytes, target="tflite", int8=True, calibration=random_inputs(shape, 128, 2))
    result = verify(
        onnx_bytes, int8_model, random_inputs(shape, 64, 3), min_agreement=INT8_MIN_AGREEMENT, rtol=INT8_RTOL
    )
    assert result.passed, result.describe()
    assert result.relative_max_diff > 1e-5  # really quantised: not bit-exact float


class ReluBatchNormNet(nn.Module):
    """float stem -> two residual blocks ``x + BN(ReLU(binary_conv(x)))`` (QuickNet's order) -> dense.

    ``shared=True`` also adds the second conv's output itself, so that block's ReLU cannot take the
    conv's scale (the Add needs ``a * acc``) and must stay a separate op.
    """

    def __init__(self, shared: bool = False):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv1, self.bn1 = BinaryConv(32, 32), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = BinaryConv(32, 32), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)
        self.shared = shared
        randomize_batchnorm(self)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        x = x + self.bn1(F.relu(self.conv1(x)))
        y = self.conv2(x)
        x = x + self.bn2(F.relu(y)) + (y if self.shared else 0.0)
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("shared", [False, True], ids=["fused", "shared"])
def test_binary_conv_relu_batchnorm_fuse_into_lce_bconv2d(shared):
    """conv(+-a) -> ReLU -> BN lowers as conv(+-1) -> ReLU -> *a -> BN: LCE fuses the ReLU into the
    conv's clamp and the scale and BN into its multiplier and bias, leaving no RELU or MUL."""
    torch.manual_seed(7)
    model = ReluBatchNormNet(shared)
    scales = model.conv1.weight.detach().abs().mean(dim=(1, 2, 3))
    assert not torch.allclose(scales, torch.ones_like(scales))  # the scales really have to move
    onnx_bytes = export(model, (1, 12, 12), dynamo=True)
    conversion = convert_with_report(onnx_bytes)
    histogram = audit(conversion.flatbuffer, conversion).op_histogram
    assert histogram["LceBconv2d"] == 2
    if shared:  # the second block keeps its RELU, and BN's MUL after it; the first still fuses
        assert histogram.get("RELU") == 1 and histogram.get("MUL") == 1, histogram
    else:  # before the fusion: 2 RELU, 2 MUL and 4 ADD
        assert "RELU" not in histogram and "MUL" not in histogram, histogram
        assert histogram["ADD"] == 2, histogram  # only the residual adds: BN's add is fused too
    result = verify(onnx_bytes, conversion.flatbuffer, random_inputs((1, 12, 12), count=32, seed=4))
    assert result.passed, result.describe()
    assert result.agreement == 1.0 and result.relative_max_diff < 1e-4


def test_deploy_metadata_reaches_every_tflite_and_changes_no_output(fmnist_onnx_path):
    """The ONNX model's deploy metadata becomes the `edgebnn` buffer of each .tflite (a re-packed
    flatbuffer); re-packing it again changes no output, bit for bit; verify measures both accuracies."""
    source = read_metadata(fmnist_onnx_path)
    assert source.labels and source.normalization and source.input_shape == (1, 28, 28)
    inputs = random_inputs((1, 28, 28), count=16, seed=9)
    labels = np.arange(16) % 10
    reference = run_model(fmnist_onnx_path, inputs)
    for target in ("lce", "tflite"):
        flatbuffer = convert(fmnist_onnx_path, target=target)
        assert read_metadata(flatbuffer) == source
        again = write_tflite(flatbuffer, source.replace(accuracy=0.5))
        assert read_metadata(again).accuracy == 0.5
        logits = run_model(flatbuffer, inputs)
        np.testing.assert_array_equal(run_model(again, inputs), logits)
        result = verify(fmnist_onnx_path, again, inputs, labels)
        assert result.agreement == 1.0, result.describe()
        assert result.candidate_accuracy == float(np.mean(logits.argmax(1) == labels))
        assert result.reference_accuracy == float(np.mean(reference.argmax(1) == labels))
        assert "accuracy" in result.describe()
