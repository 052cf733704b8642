"""Target native: ONNX -> .ebnn (converter/native.py) run in the native runtime against ONNX Runtime,
the LCE .tflite of the same graph run natively against the LCE interpreter, the audit, the C
embedding (compiled, loaded in place), and the CLI with its errors.

Tolerance: top-1 agreement 100% and max |diff| <= 1e-4 x the logit scale (the standard deviation of
the reference logits). Float32 rounding of the folded BatchNorms, of a different summation order and
of FMA kernels stays near 1e-6 of the scale on these nets (measured 4e-7 .. 1e-5); 1e-4 leaves room
without hiding a real error (a wrong flatten order, sign or pad is > 1e-1). As in tests/converter,
BatchNorm statistics are randomized so that no binarizer input sits exactly on 0: there a different
rounding flips one sign, legitimately. The deeper QuickNets (marked slow) still show such a flip now
and then (quicknet-large: 4e-3 of the scale at one logit); for them the max is bounded by 1e-2 and the
mean by 1e-5 of the scale.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from converter_nets import BinaryConv, ForeignBNN, export, random_inputs, randomize_batchnorm
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from converter.audit import audit
from converter.conversion import convert_with_report
from converter.embed import embed_c
from converter.errors import ConverterError
from edgebnn.cli import main
from formats.ebnn import read
from formats.metadata import read_onnx
from formats.models import read_metadata
from runtime.engines import load_engine
from runtime.native import NativeModel, library_path
from runtime.verify import run_model
from trainer import export as trainer_export
from trainer import zoo

ROOT = Path(__file__).resolve().parents[2]
RTOL_MAX, RTOL_MEAN = 1e-4, 1e-5
INPUT_SIZES = {"fmnist-bnn": 28, "resnet20": 32, "vgg-small": 32}
QUICKNETS = ("quicknet-small", "quicknet", "quicknet-large")


def assert_matches(reference: np.ndarray, candidate: np.ndarray, rtol_max: float = RTOL_MAX) -> None:
    reference, candidate = reference.reshape(len(reference), -1), candidate.reshape(len(candidate), -1)
    assert reference.shape == candidate.shape
    scale = float(reference.std()) or 1.0
    diff = np.abs(reference.astype(np.float64) - candidate)
    assert np.array_equal(reference.argmax(1), candidate.argmax(1)), "top-1 differs"
    assert diff.max() <= rtol_max * scale, f"max |diff| {diff.max():.3g} vs scale {scale:.3g}"
    assert diff.mean() <= RTOL_MEAN * scale, f"mean |diff| {diff.mean():.3g} vs scale {scale:.3g}"


def native_vs_onnxruntime(onnx_model, shape, count: int = 8, rtol_max: float = RTOL_MAX):
    conversion = convert_with_report(onnx_model, target="native")
    inputs = random_inputs(shape, count=count)
    reference = run_model(onnx_model, inputs)
    assert_matches(reference, run_model(conversion.flatbuffer, inputs), rtol_max)
    return conversion


def zoo_cases():
    for name in zoo.MODELS:
        marks = [] if name in INPUT_SIZES else [pytest.mark.slow]
        yield pytest.param(name, marks=marks, id=name)


def test_every_zoo_model_is_a_case():
    assert {case.values[0] for case in zoo_cases()} == set(zoo.MODELS)


@pytest.mark.parametrize("name", list(zoo_cases()))
def test_zoo_model_lowers_completely_and_matches_onnxruntime(name):
    torch.manual_seed(0)
    spec = zoo.MODELS[name]
    size = INPUT_SIZES.get(name, 64)
    model = zoo.create_model(name, input_size=size, num_classes=10).eval()
    randomize_batchnorm(model)
    shape = (spec.in_channels, size, size)
    proto = trainer_export.export_onnx(model, input_shape=shape, verify=False)
    conversion = native_vs_onnxruntime(proto, shape, rtol_max=1e-2 if name in QUICKNETS else RTOL_MAX)
    report = audit(conversion.flatbuffer, conversion)
    assert report.binary_op == "BCONV2D" and report.expected_binary_convs > 0
    assert report.binary_convs == report.expected_binary_convs and report.warnings == []
    assert report.compression_ratio > 1.5


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_foreign_bnn_matches_onnxruntime(foreign_onnx, exporter):
    conversion = native_vs_onnxruntime(foreign_onnx[exporter], (1, 28, 20), count=16)
    ops = [op.op for op in read(conversion.flatbuffer).ops]
    # the max-pool feeding the second binary conv works on bits; the flatten keeps NHWC order
    assert ops.count("BCONV2D") == 2 and "BMAXPOOL2D" in ops and "TRANSPOSE" not in ops


def test_stride2_symmetric_one_padding_is_binary_and_exact():
    torch.manual_seed(1)
    onnx_bytes = export(ForeignBNN(size=(28, 28), stride2_padding="symmetric"), (1, 28, 28), dynamo=True)
    conversion = native_vs_onnxruntime(onnx_bytes, (1, 28, 28))
    bconvs = [op for op in read(conversion.flatbuffer).ops if op.op == "BCONV2D"]
    assert len(bconvs) == 2 and bconvs[1].params["pad_top"] == 1 and bconvs[1].params["pad_bottom"] == 1


class MixedBinarizers(nn.Module):
    """Sign(Sign(x)+0.1) (binary), plain Sign (float: sign(0) = 0) and non-binary weights (float)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 32, 3, padding=1)
        self.signsign = BinaryConv(32, 32, binarizer="signsign")
        self.sign = BinaryConv(32, 32, binarizer="sign", padding="none")
        self.not_binary = BinaryConv(32, 32, binary_weights=False)
        self.fc = nn.Linear(32, 5)
        self.bn1, self.bn2 = nn.BatchNorm2d(32), nn.BatchNorm2d(32)
        randomize_batchnorm(self)

    def forward(self, x):
        x = self.bn1(self.signsign(self.stem(x)))
        x = self.not_binary(self.bn2(self.sign(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_binarizer_variants_are_reported_and_exact():
    torch.manual_seed(2)
    onnx_bytes = export(MixedBinarizers(), (2, 12, 12), dynamo=False)
    conversion = native_vs_onnxruntime(onnx_bytes, (2, 12, 12), count=16)
    assert len(conversion.binary_convs) == 1
    reasons = sorted(conversion.float_binary_convs.values())
    assert "plain Sign" in reasons[0] and "not +-a per output channel" in reasons[1]
    report = audit(conversion.flatbuffer, conversion)
    assert report.headline == "1 of 3 binary convolutions became BCONV2D" and len(report.warnings) == 2
    ops = [op.op for op in read(conversion.flatbuffer).ops]
    assert ops.count("SIGN") == 1 and ops.count("DEQUANTIZE") == 1  # +-1 values for the float conv


class FloatOps(nn.Module):
    """The float ops of foreign graphs (tests/converter/test_convert.py FloatZoo, plus LeakyReLU,
    ReLU6 on a sum, a ceil-mode pool with pads, softmax): depthwise/grouped convs, PReLU, concat,
    pools, a mean, a matmul after a flatten of a non-square map."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 7, stride=2, padding=3)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.prelu = nn.PReLU(16)
        self.bn = nn.BatchNorm2d(32)
        self.weight = nn.Parameter(torch.randn(32 * 4 * 3, 6) * 0.1)
        randomize_batchnorm(self)

    def forward(self, x):
        x = self.stem(x)
        a = F.relu6(self.depthwise(x))
        b = self.prelu(self.grouped(x))
        x = self.bn(torch.cat([a, b], dim=1))
        x = F.leaky_relu(F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True), 0.1)
        x = F.avg_pool2d(x, 2, ceil_mode=True)
        x = F.relu6((x - 0.1) / 2.0 + x.mean(dim=(2, 3), keepdim=True))
        return F.softmax(torch.flatten(x, 1) @ self.weight, dim=1) * 10


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_float_ops_and_flatten_order(exporter):
    torch.manual_seed(5)
    shape = (3, 30, 22)  # -> 4x3 before the flatten: NHWC order differs from NCHW
    onnx_bytes = export(FloatOps(), shape, dynamo=exporter == "dynamo")
    native_vs_onnxruntime(onnx_bytes, shape, count=16)


class NativeOnly(nn.Module):
    """Binary layers LCE keeps in float (grouped, zero-padded) or refuses to fuse, and odd shapes:
    a grouped zero-padded binary conv, a dilated stride-2 one-padded one with 40 -> 36 channels
    writing bits (negative BatchNorm scales flip channels), a ceil-mode max-pool on bits, a 1x1
    binary conv with a Relu after its BatchNorm, a binary conv with a bias."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 40, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(40)
        self.grouped = nn.Parameter(torch.randn(48, 20, 3, 3))
        self.bn1 = nn.BatchNorm2d(48)
        self.dilated = nn.Parameter(torch.randn(36, 48, 3, 3))
        self.bn2 = nn.BatchNorm2d(36)
        self.pointwise = nn.Parameter(torch.randn(20, 36, 1, 1))
        self.bias = nn.Parameter(torch.randn(20))
        self.bn3 = nn.BatchNorm2d(20)
        self.fc = nn.Linear(20 * 4 * 3, 10)
        randomize_batchnorm(self)

    @staticmethod
    def signs(w: torch.Tensor) -> torch.Tensor:
        return torch.sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        b = torch.where(x >= 0, 1.0, -1.0)
        x = self.bn1(F.conv2d(b, self.signs(self.grouped), padding=1, groups=2))  # zero-padding
        b = F.pad(torch.where(x >= 0, 1.0, -1.0), (2, 2, 2, 2), value=1.0)
        x = self.bn2(F.conv2d(b, self.signs(self.dilated), stride=2, dilation=2))
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        b = torch.where(x >= 0, 1.0, -1.0)
        x = F.relu(self.bn3(F.conv2d(b, self.signs(self.pointwise), self.bias)))
        return self.fc(torch.flatten(x, 1))


def test_native_only_binary_layers_are_binary_and_exact():
    torch.manual_seed(7)
    shape = (3, 13, 9)
    onnx_bytes = export(NativeOnly(), shape, dynamo=False)
    conversion = native_vs_onnxruntime(onnx_bytes, shape, count=32)
    assert len(conversion.binary_convs) == 3 and conversion.float_binary_convs == {}
    ops = read(conversion.flatbuffer).ops
    bconvs = [op for op in ops if op.op == "BCONV2D"]
    assert [op.params["groups"] for op in bconvs] == [2, 1, 1]
    assert [op.params["pad_value"] for op in bconvs[:2]] == [0, 1]
    assert bconvs[1].params["dilation_h"] == 2 and bconvs[1].params["stride_w"] == 2
    assert [op.op for op in ops].count("BMAXPOOL2D") == 1
    assert audit(conversion.flatbuffer, conversion).bit_outputs == 2  # both into the next binarizer


def _tanh_model(batch="N") -> bytes:
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
             helper.make_node("Tanh", ["c"], ["logits"], name="squash")]  # fmt: skip
    io = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 4, 4]),
          helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 2, 4, 4])]  # fmt: skip
    weights = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    graph = helper.make_graph(nodes, "tanh", io[:1], io[1:], [weights])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def test_unsupported_op_names_the_node():
    with pytest.raises(
        ConverterError, match="unsupported ONNX op Tanh in node 'squash' for the native target"
    ):
        convert_with_report(_tanh_model(), target="native")
    with pytest.raises(ConverterError, match="static batch size 3"):
        convert_with_report(_tanh_model(batch=3), target="native")


def test_metadata_goes_into_the_ebnn(fmnist_onnx_path):
    conversion = convert_with_report(fmnist_onnx_path, target="native")
    meta = read_onnx(onnx.load(fmnist_onnx_path))
    assert meta.labels and read_metadata(conversion.flatbuffer) == meta
    assert NativeModel(conversion.flatbuffer).metadata == meta.to_dict()


# ------------------------------------------------------------------ LCE .tflite, run natively


def lce_vs_native(onnx_model, shape, count: int = 8) -> None:
    """edgebnn's LCE .tflite of the same graph: the native runtime (translated on load) gives LCE's outputs."""
    flatbuffer = convert_with_report(onnx_model, target="lce").flatbuffer
    inputs = random_inputs(shape, count=count).transpose(0, 2, 3, 1)
    lce = load_engine(flatbuffer, "lce", xnnpack=False).predict(inputs)
    assert_matches(lce, load_engine(flatbuffer, "native").predict(inputs))


def test_lce_tflite_of_the_foreign_bnn_runs_natively(foreign_onnx):
    lce_vs_native(foreign_onnx["dynamo"], (1, 28, 20), count=16)


@pytest.mark.parametrize("name", ["vgg-small", pytest.param("birealnet18", marks=pytest.mark.slow)])
def test_lce_tflite_of_zoo_models_runs_natively(name):
    """vgg-small: bit-output LceBconv2d and LceBMaxPool2d; birealnet18: the PAD + CONV_2D +
    STRIDED_SLICE stem the LCE lowering emits (folded into one CONV2D)."""
    torch.manual_seed(0)
    spec = zoo.MODELS[name]
    size = INPUT_SIZES.get(name, 64)
    model = zoo.create_model(name, input_size=size, num_classes=10).eval()
    randomize_batchnorm(model)
    shape = (spec.in_channels, size, size)
    lce_vs_native(trainer_export.export_onnx(model, input_shape=shape, verify=False), shape)


# ----------------------------------------------------------------------------- C embedding


def test_c_embedding_loads_in_place_and_runs(fmnist_onnx_path, tmp_path):
    conversion = convert_with_report(fmnist_onnx_path, target="native")
    files = embed_c(conversion.flatbuffer, "foreign-bnn", {"runtime": "edgebnn native"})
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert json.loads(files["foreign-bnn.json"])["alignment"] == 64
    (tmp_path / "app.c").write_text(
        '#include <stdint.h>\n#include <stdio.h>\n#include "edgebnn.h"\n#include "foreign-bnn.h"\n'
        "int main(void) {\n"
        '  if ((uintptr_t)foreign_bnn % EBNN_ALIGNMENT) { puts("misaligned"); return 3; }\n'
        "  ebnn_load_options o; ebnn_load_options_init(&o); o.flags |= EBNN_LOAD_IN_PLACE;\n"
        "  ebnn_model* m; ebnn_error e;\n"
        "  if (ebnn_model_load_memory(foreign_bnn, foreign_bnn_len, &o, &m, &e)) { puts(e.message); return 2; }\n"
        "  static float x[28 * 28], y[10];\n"
        "  if (fread(x, sizeof(float), 28 * 28, stdin) != 28 * 28) return 4;\n"
        "  const float* in[] = {x}; float* out[] = {y};\n"
        "  if (ebnn_model_run(m, 1, in, out)) return 5;\n"
        '  for (int i = 0; i < 10; i++) printf("%.9g\\n", y[i]);\n'
        "  ebnn_model_free(m); return 0;\n}\n"
    )
    native = ROOT / "runtime" / "native"
    archive = library_path().with_name("libedgebnn.a")
    subprocess.run(["gcc", "-std=c11", "-O1", "-o", str(tmp_path / "app"), str(tmp_path / "app.c"),
                    str(tmp_path / "foreign-bnn.c"), f"-I{native / 'include'}", f"-I{tmp_path}",
                    str(archive), "-lm", "-pthread"], check=True, capture_output=True)  # fmt: skip
    x = random_inputs((28, 28, 1), count=1)
    done = subprocess.run([str(tmp_path / "app")], input=x.tobytes(), capture_output=True, check=True)
    printed = np.array([float(v) for v in done.stdout.split()], np.float32)
    np.testing.assert_array_equal(printed, NativeModel(conversion.flatbuffer).run(x)[0])


# ------------------------------------------------------------------------------------- CLI


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("edgebnn: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def cli_ebnn(tmp_path_factory, fmnist_onnx_path) -> Path:
    output = tmp_path_factory.mktemp("native-cli") / "foreign.ebnn"
    assert (
        main(["convert", fmnist_onnx_path, "-o", str(output), "--embed", "c"]) == 0
    )  # target from the suffix
    return output


def test_cli_convert_summary_and_embed(cli_ebnn, fmnist_onnx_path, capsys):
    assert sorted(p.name for p in cli_ebnn.parent.iterdir()) == [
        "foreign.c", "foreign.ebnn", "foreign.h", "foreign.json"]  # fmt: skip
    manifest = json.loads(cli_ebnn.with_suffix(".json").read_text())
    assert manifest["runtime"] == "edgebnn native" and manifest["target"] == "native"
    assert manifest["ops"]["BCONV2D"] == 2 and manifest["size_bytes"] == cli_ebnn.stat().st_size
    code, out, _ = run_cli(capsys, "summary", cli_ebnn)
    assert code == 0 and "2 of 2 binary convolutions became BCONV2D" in out
    assert "edgebnn native runtime" in out and "compression ratio" in out


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist"
)
def test_cli_verify_ebnn_on_real_images(cli_ebnn, fmnist_onnx_path, capsys):
    code, out, _ = run_cli(
        capsys, "verify", fmnist_onnx_path, cli_ebnn, "--data", "fashion-mnist", "--n", "300"
    )
    assert code == 0 and "verify PASS: 300 samples, top-1 agreement 100.00%" in out


def test_cli_verify_tflite_in_the_native_runtime(fmnist_onnx_path, tmp_path, capsys):
    lce = tmp_path / "foreign.tflite"
    assert main(["convert", fmnist_onnx_path, "-o", str(lce), "--no-verify"]) == 0
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "verify", fmnist_onnx_path, lce, "--runtime", "native", "--random", "32")
    assert code == 0 and "top-1 agreement 100.00%" in out


def test_cli_refuses_mismatched_targets_and_bad_ebnn(cli_ebnn, fmnist_onnx_path, tmp_path, capsys):
    code, _, err = run_cli(capsys, "convert", fmnist_onnx_path, "-o", tmp_path / "m.ebnn", "--target", "lce")
    assert_user_error(code, err, "--target native")
    code, _, err = run_cli(
        capsys, "convert", fmnist_onnx_path, "-o", tmp_path / "m.tflite", "--target", "native"
    )
    assert_user_error(code, err, "writes an .ebnn")
    code, _, err = run_cli(capsys, "verify", fmnist_onnx_path, cli_ebnn, "--runtime", "lce")
    assert_user_error(code, err, "--runtime native only")
    data = cli_ebnn.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    newer = bytearray(data)
    newer[4] = 2  # major version 2
    damaged = {"truncated": (data[: len(data) // 3], "truncated"), "flipped": (bytes(flipped), "checksum"),
               "newer": (bytes(newer), "version 2.0")}  # fmt: skip
    for label, (content, fragment) in damaged.items():
        path = tmp_path / f"{label}.ebnn"
        path.write_bytes(content)
        for argv in (("summary", path), ("verify", fmnist_onnx_path, path), ("bench", path, "--runs", "2")):
            code, _, err = run_cli(capsys, *argv)
            assert_user_error(code, err, fragment)
