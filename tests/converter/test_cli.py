"""``edgebnn convert / verify / summary`` through ``edgebnn.cli.main``: outputs, exit codes, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from converter_nets import ForeignBNN, export
from torch import nn

from edgebnn.cli import main

FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("edgebnn: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory, fmnist_onnx_path):
    """The Fashion-MNIST-shaped foreign BNN converted by the CLI with --embed c."""
    folder = tmp_path_factory.mktemp("cli")
    output = folder / "foreign-bnn.tflite"
    code = main(["convert", fmnist_onnx_path, "-o", str(output), "--embed", "c"])
    assert code == 0
    return output


def test_convert_writes_tflite_and_c_artifacts(converted, tmp_path):
    names = sorted(p.name for p in converted.parent.iterdir())
    assert names == ["foreign-bnn.c", "foreign-bnn.h", "foreign-bnn.json", "foreign-bnn.tflite"]
    manifest = json.loads(converted.with_suffix(".json").read_text())
    assert manifest["runtime_required"] == "LCE >= 0.16 custom ops"
    assert manifest["input"] == {"shape": [1, 28, 28, 1], "layout": "NHWC", "dtype": "float32"}
    assert manifest["normalization"]["mean"] == [0.286] and len(manifest["labels"]) == 10
    assert manifest["ops"]["LceBconv2d"] == 2 and manifest["size_bytes"] == converted.stat().st_size


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_embedding_compiles_to_the_same_bytes(converted, tmp_path):
    main_c = tmp_path / "main.c"
    main_c.write_text(
        '#include <stdio.h>\n#include <stdint.h>\n#include "foreign-bnn.h"\n'
        "int main(int argc, char **argv) {\n"
        "  if ((uintptr_t)foreign_bnn % 16 != 0) return 3;\n"
        '  FILE *f = fopen(argv[1], "wb");\n'
        "  if (fwrite(foreign_bnn, 1, foreign_bnn_len, f) != foreign_bnn_len) return 4;\n"
        "  return fclose(f);\n}\n"
    )
    binary = tmp_path / "dump"
    subprocess.run(
        ["gcc", "-std=c11", "-Wall", "-Werror", "-I", str(converted.parent), str(main_c),
         str(converted.with_suffix(".c")), "-o", str(binary)],
        check=True,
    )  # fmt: skip
    dumped = tmp_path / "dumped.tflite"
    subprocess.run([str(binary), str(dumped)], check=True)
    assert dumped.read_bytes() == converted.read_bytes()


@pytest.mark.skipif(not FMNIST.is_file(), reason="needs Debian's dataset-fashion-mnist")
def test_verify_on_real_fashion_mnist(capsys, converted, fmnist_onnx_path):
    code, out, _ = run_cli(
        capsys, "verify", fmnist_onnx_path, converted, "--data", "fashion-mnist", "--n", "300"
    )
    assert code == 0, out
    assert "verify PASS: 300 samples" in out


def test_verify_fails_for_a_different_network(capsys, converted, tmp_path):
    torch.manual_seed(11)  # same architecture, other weights
    other = tmp_path / "other.onnx"
    other.write_bytes(export(ForeignBNN(size=(28, 28)), (1, 28, 28), dynamo=True))
    code, out, _ = run_cli(capsys, "verify", other, converted, "--random", "32")
    assert code == 1
    assert "verify FAIL" in out


def test_summary_of_onnx_and_tflite(capsys, converted, fmnist_onnx_path):
    code, out, _ = run_cli(capsys, "summary", fmnist_onnx_path)
    assert code == 0
    assert "1-bit params" in out and "of MACs binary" in out and "LceBconv2d" in out
    code, out, _ = run_cli(capsys, "summary", converted)
    assert code == 0
    assert "2 of 2 binary convolutions became LceBconv2d" in out and "compression ratio" in out


# --------------------------------------------------------------------------------- bad input


def test_truncated_onnx(capsys, tmp_path, fmnist_onnx_path):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(Path(fmnist_onnx_path).read_bytes()[:1000])
    output = tmp_path / "out.tflite"
    code, _, err = run_cli(capsys, "convert", bad, "-o", output)
    assert_user_error(code, err, "truncated.onnx", "not a valid ONNX model")
    assert list(tmp_path.iterdir()) == [bad]


def test_missing_model(capsys, tmp_path):
    code, _, err = run_cli(capsys, "convert", tmp_path / "nope.onnx", "-o", tmp_path / "out.tflite")
    assert_user_error(code, err, "nope.onnx")


def test_corrupt_tflite(capsys, tmp_path, fmnist_onnx_path, converted):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(converted.read_bytes()[:200])
    code, _, err = run_cli(capsys, "summary", bad)
    assert_user_error(code, err, "bad.tflite")
    code, _, err = run_cli(capsys, "verify", fmnist_onnx_path, bad)
    assert_user_error(code, err, "bad.tflite")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00" * 64)
    code, _, err = run_cli(capsys, "verify", fmnist_onnx_path, garbage)
    assert_user_error(code, err, "not a TFLite flatbuffer")


def test_corrupt_checkpoint(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a torch checkpoint")
    code, _, err = run_cli(capsys, "summary", bad)
    assert_user_error(code, err, "bad.pt")
    code, _, err = run_cli(capsys, "convert", bad, "-o", tmp_path / "out.tflite")
    assert_user_error(code, err, "bad.pt")
    assert not (tmp_path / "out.tflite").exists()


class WithCos(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return torch.cos(self.conv(x)).flatten(1)


def test_unsupported_op_is_named(capsys, tmp_path):
    model = tmp_path / "cos.onnx"
    model.write_bytes(export(WithCos(), (1, 8, 8), dynamo=False))
    output = tmp_path / "out.tflite"
    code, _, err = run_cli(capsys, "convert", model, "-o", output)
    assert_user_error(code, err, "unsupported ONNX op Cos", "node '/Cos'")
    assert not output.exists()


def test_dynamic_input_needs_input_shape(capsys, tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "dynamic.onnx"
    axes = {"input": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N"}}
    model.write_bytes(export(nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                             (1, 8, 8), dynamo=False, dynamic_axes=axes))  # fmt: skip
    output = tmp_path / "out.tflite"
    code, _, err = run_cli(capsys, "convert", model, "-o", output)
    assert_user_error(code, err, "dynamic shape", "--input-shape")
    code, _, err = run_cli(capsys, "convert", model, "-o", output, "--input-shape", "2,8,8")
    assert_user_error(code, err, "--input-shape", "axis 1")
    code, _, err = run_cli(capsys, "convert", model, "-o", output, "--input-shape", "one,8")
    assert_user_error(code, err, "--input-shape")
    assert not output.exists()
    code, out, _ = run_cli(capsys, "convert", model, "-o", output, "--input-shape", "1,12,10")
    assert code == 0 and output.is_file(), out
    assert "verify PASS" in out


def test_unwritable_output(capsys, tmp_path, fmnist_onnx_path):
    code, _, err = run_cli(capsys, "convert", fmnist_onnx_path, "-o", tmp_path / "missing" / "out.tflite")
    assert_user_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, "convert", fmnist_onnx_path, "-o", tmp_path)
    assert_user_error(code, err, "is a directory")
    assert list(tmp_path.iterdir()) == []


def test_int8_options(capsys, tmp_path, fmnist_onnx_path):
    output = tmp_path / "out.tflite"
    code, _, err = run_cli(capsys, "convert", fmnist_onnx_path, "-o", output, "--int8")
    assert_user_error(code, err, "--int8 needs --target tflite")
    code, _, err = run_cli(capsys, "convert", fmnist_onnx_path, "-o", output, "--int8", "--target", "tflite")
    assert_user_error(code, err, "--calibration-data")
    code, _, err = run_cli(
        capsys,
        "convert",
        fmnist_onnx_path,
        "-o",
        output,
        "--int8",
        "--target",
        "tflite",
        "--calibration-data",
        "nope",
    )
    assert_user_error(code, err, "nope")
    assert not output.exists()


def test_int8_with_npy_calibration(capsys, tmp_path, fmnist_onnx_path):
    calibration = tmp_path / "calibration.npy"
    np.save(calibration, np.random.default_rng(0).standard_normal((32, 1, 28, 28), dtype=np.float32))
    output = tmp_path / "int8.tflite"
    code, out, _ = run_cli(
        capsys, "convert", fmnist_onnx_path, "-o", output, "--target", "tflite", "--int8",
        "--calibration-data", calibration,
    )  # fmt: skip
    assert code == 0 and output.is_file(), out
    assert "runtime required" in out and "stock TFLite" in out
