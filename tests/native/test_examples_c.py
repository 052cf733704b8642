"""examples/c: the C app that embeds a model (``edgebnn convert ... --target native --embed c``),
built with its Makefile natively, cross-compiled for aarch64 (NEON) and 32-bit armv7 (scalar) and
run under qemu; it classifies Fashion-MNIST test images given as PGM or raw files, and its scores
equal ONNX Runtime's on the same preprocessed pixels (within float rounding)."""

from __future__ import annotations

import gzip
import runpy
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nativebuild import ROOT

from edgebnn.cli import main as edgebnn_main

EXAMPLE = ROOT / "examples" / "c"
DATASET = Path("/usr/share/datasets/fashion-mnist")
CROSS = {
    "aarch64": ("aarch64-linux-gnu-gcc", "qemu-aarch64", "cortex-a72", Path("/usr/aarch64-linux-gnu")),
    "armv7l": ("arm-linux-gnueabihf-gcc", "qemu-arm", "cortex-a15", Path("/usr/arm-linux-gnueabihf")),
}
IMAGES = (0, 1, 2)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    """fmnist-bnn (random weights, Fashion-MNIST metadata) as NAME.{ebnn,h,c,json}, through the CLI."""
    folder = tmp_path_factory.mktemp("embed")
    onnx_path = folder / "fmnist-bnn.onnx"
    runpy.run_path(str(EXAMPLE / "make_model.py"))["main"](str(onnx_path))
    stem = folder / "fmnist-bnn"
    code = edgebnn_main(
        ["convert", str(onnx_path), "-o", f"{stem}.ebnn", "--target", "native", "--embed", "c"]
    )
    assert code == 0
    return stem


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[int, tuple[Path, Path, np.ndarray, int]]:
    """Test images as PGM and raw files (as `make image` writes them), their pixels and labels."""
    folder = tmp_path_factory.mktemp("images")
    if DATASET.is_dir():
        pixels = np.frombuffer(gzip.open(DATASET / "t10k-images-idx3-ubyte.gz").read()[16:], np.uint8)
        labels = np.frombuffer(gzip.open(DATASET / "t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)
    else:  # synthetic stand-ins where the dataset package is missing
        pixels = np.random.default_rng(0).integers(0, 256, 784 * len(IMAGES), dtype=np.uint8)
        labels = np.zeros(len(IMAGES), np.uint8)
    found = {}
    for n in IMAGES:
        image = pixels[784 * n : 784 * (n + 1)]
        pgm, raw = folder / f"image{n}.pgm", folder / f"image{n}.raw"
        pgm.write_bytes(b"P5\n# a comment\n28 28\n255\n" + image.tobytes())
        raw.write_bytes(image.tobytes())
        found[n] = (pgm, raw, image, int(labels[n]))
    return found


def _build(embedded: Path, build: Path, cc: str | None = None) -> Path:
    args = ["nice", "-n", "10", "make", "-s", "-C", str(EXAMPLE), f"MODEL={embedded}", f"BUILD={build}"]
    done = subprocess.run([*args, *([f"CC={cc}"] if cc else [])], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return build / "classify"


def _classify(argv: list[str]) -> tuple[int, str, np.ndarray]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first.startswith("class ") and second.startswith("scores ")
    label = first.split("(", 1)[1].rstrip(")")
    return int(first.split()[1]), label, np.array(second.split()[1:], np.float32)


def _onnx_scores(onnx_path: Path, image: np.ndarray) -> np.ndarray:
    import onnxruntime

    mean, std = np.float32(0.2860), np.float32(0.3530)  # make_model.py's metadata
    x = ((image.astype(np.float32) / np.float32(255.0) - mean) / std).reshape(1, 1, 28, 28)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0][0]


def _check(program: list[str], embedded: Path, images) -> None:
    from trainer.data import FASHION_MNIST_CLASSES

    for pgm, raw, image, _label in images.values():
        predicted, name, scores = _classify([*program, str(pgm)])
        assert _classify([*program, str(raw)])[2].tolist() == scores.tolist()  # raw = PGM
        reference = _onnx_scores(embedded.with_suffix(".onnx"), image)
        np.testing.assert_allclose(scores, reference, rtol=1e-4, atol=1e-4)
        assert predicted == int(np.argmax(reference)) and name == FASHION_MNIST_CLASSES[predicted]


def test_native_build_classifies_like_onnx_runtime(embedded, images, tmp_path) -> None:
    program = _build(embedded, tmp_path / "host")
    _check([str(program)], embedded, images)
    done = subprocess.run([str(program), str(tmp_path / "missing.pgm")], capture_output=True, text=True)
    assert done.returncode == 2 and "is not a 28x28 8-bit PGM or 784 raw bytes" in done.stderr


@pytest.mark.parametrize("arch", sorted(CROSS))
def test_cross_compiled_build_classifies_like_onnx_runtime_under_qemu(
    arch, embedded, images, tmp_path
) -> None:
    cc, qemu, cpu, sysroot = CROSS[arch]
    if shutil.which(cc) is None or shutil.which(qemu) is None or not sysroot.is_dir():
        pytest.skip(f"needs {cc} and {qemu} (scripts/ensure-system.sh test)")
    program = _build(embedded, tmp_path / arch, cc)
    assert ("ARM aarch64" if arch == "aarch64" else "ARM, EABI5") in subprocess.run(
        ["file", str(program)], capture_output=True, text=True
    ).stdout
    _check([qemu, "-cpu", cpu, "-L", str(sysroot), str(program)], embedded, images)


def test_makefile_extracts_a_test_image(tmp_path) -> None:
    if not DATASET.is_dir():
        pytest.skip("needs the dataset-fashion-mnist Debian package")
    work = tmp_path / "example"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("build"))
    done = subprocess.run(["make", "-s", "-C", str(work), "image", "N=3"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    labels = gzip.open(DATASET / "t10k-labels-idx1-ubyte.gz").read()[8:]
    assert done.stdout.strip() == f"build/image3.pgm: label {labels[3]}"
    pixels = gzip.open(DATASET / "t10k-images-idx3-ubyte.gz").read()[16 + 784 * 3 : 16 + 784 * 4]
    assert (work / "build" / "image3.pgm").read_bytes() == b"P5\n28 28\n255\n" + pixels
