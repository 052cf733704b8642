"""Hostile model files and outputs through `convert`, `verify`, `summary`, `estimate` and `bench`.

Every case: exit 2, one line naming the file or option, no traceback, nothing created or changed.
TensorFlow never loads here: every case is refused before a conversion starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hostile_files import assert_refused, snapshot


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# --- outputs that are inputs ----------------------------------------------------------------------


def _aliases(work: Path, source: Path) -> list[Path]:
    """The same file three ways: its path, a symlink, a hard link."""
    os.symlink(source, work / f"soft{source.suffix}")
    os.link(source, work / f"hard{source.suffix}")
    return [source, work / f"soft{source.suffix}", work / f"hard{source.suffix}"]


def test_convert_output_is_the_input(work: Path, edgebnn) -> None:
    model = work / "tiny.onnx"
    aliases = _aliases(work, model)
    before = snapshot(work)
    for output in aliases:
        assert_refused(edgebnn("convert", model, "-o", output, "--target", "native"), "-o", str(output))
    assert snapshot(work) == before


def test_convert_embed_output_is_the_input(work: Path, edgebnn) -> None:
    model = work / "m.json"  # `-o m.ebnn --embed c` writes m.json: here that is the input itself
    model.write_bytes((work / "tiny.onnx").read_bytes())
    before = snapshot(work)
    assert_refused(edgebnn("convert", model, "-o", work / "m.ebnn", "--embed", "c"), "--embed", "m.json")
    assert snapshot(work) == before


def test_convert_output_is_the_calibration_data(work: Path, edgebnn) -> None:
    before = snapshot(work)
    npy = work / "inputs.npy"
    assert_refused(edgebnn("convert", work / "tiny.onnx", "-o", npy, "--target", "tflite", "--int8",
                           "--calibration-data", npy), "-o", str(npy))  # fmt: skip
    assert snapshot(work) == before


def test_estimate_json_is_the_model_or_the_profile(work: Path, edgebnn) -> None:
    before = snapshot(work)
    for model in (work / "tiny.onnx", work / "tiny.tflite"):
        assert_refused(edgebnn("estimate", model, "--json", model), "--json", str(model))
    profile = work / "board.toml"
    assert_refused(
        edgebnn("estimate", work / "tiny.tflite", "--device-file", profile, "--json", profile), "--json"
    )
    assert snapshot(work) == before


def test_bench_outputs_are_inputs(work: Path, edgebnn) -> None:
    before = snapshot(work)
    model, npy = work / "tiny.onnx", work / "inputs.npy"
    hard = _aliases(work, model)[2]
    before = snapshot(work)
    assert_refused(edgebnn("bench", model, "--json", model), "--json", str(model))
    assert_refused(edgebnn("bench", model, "--plot", hard), "--plot", str(hard))
    assert_refused(edgebnn("bench", model, "--input", npy, "--json", npy), "--json")
    assert_refused(edgebnn("bench", model, "--json", work / "r.json", "--plot", work / "r.json"), "--plot")
    assert_refused(edgebnn("bench", model, "--json", work / "missing" / "r.json"), "missing")
    assert snapshot(work) == before


# --- corrupt model files --------------------------------------------------------------------------


def _onnx_with_input(work: Path, dims: list) -> Path:
    model = onnx.load(str(work / "tiny.onnx"))
    shape = model.graph.input[0].type.tensor_type.shape
    for dim, value in zip(shape.dim, dims, strict=True):
        dim.Clear()
        if isinstance(value, int):
            dim.dim_value = value
        else:
            dim.dim_param = value
    path = work / "shaped.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_declaring_a_huge_input_is_refused_before_allocating(work: Path, edgebnn) -> None:
    huge = _onnx_with_input(work, [1, 1, 1_000_000, 1_000_000])
    before = snapshot(work)
    message = assert_refused(edgebnn("convert", huge, "-o", work / "h.ebnn"), "limit")
    assert "1000000" in message
    assert snapshot(work) == before


def test_input_shape_option_declaring_a_huge_input(work: Path, edgebnn) -> None:
    dynamic = _onnx_with_input(work, ["N", 1, "H", "W"])
    before = snapshot(work)
    assert_refused(
        edgebnn("convert", dynamic, "-o", work / "h.ebnn", "--input-shape", "1,100000,100000"),
        "--input-shape",
    )
    assert_refused(
        edgebnn("convert", dynamic, "-o", work / "h.ebnn", "--input-shape", "one,two"), "--input-shape"
    )
    assert_refused(
        edgebnn("convert", dynamic, "-o", work / "h.ebnn", "--input-shape", "1,0,28"), "--input-shape"
    )
    assert snapshot(work) == before


def test_estimate_has_the_input_shape_its_hint_names(work: Path, edgebnn) -> None:
    dynamic = _onnx_with_input(work, ["N", 1, "H", "W"])
    message = assert_refused(edgebnn("estimate", dynamic))
    assert "--input-shape" in message
    assert_refused(edgebnn("estimate", dynamic, "--input-shape", "1,99999,99999"), "--input-shape")


def _damaged(data: bytes, case: str) -> bytes:
    rng = np.random.default_rng(7)
    if case == "truncated":
        return data[: len(data) // 3]
    if case == "header only":
        return data[:8]
    if case == "bit flips":
        flipped = bytearray(data)
        for index in rng.integers(8, len(data), 40):
            flipped[index] ^= 0xFF
        return bytes(flipped)
    if case == "zeros":
        return data[:8] + bytes(len(data) - 8)
    return data[:8] + bytes(rng.integers(0, 256, 2000, dtype=np.uint8))  # random


DAMAGE = ("truncated", "header only", "bit flips", "zeros", "random")


@pytest.mark.parametrize("kind", ["onnx", "tflite", "ebnn"])
@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_model_file_in_summary(kind: str, case: str, work: Path, edgebnn) -> None:
    bad = work / f"bad.{kind}"
    bad.write_bytes(_damaged((work / f"tiny.{kind}").read_bytes(), case))
    before = snapshot(work)
    rc, err = edgebnn("summary", bad)
    if rc != 0:  # some bit flips leave a valid file; a refusal must name the file
        assert_refused((rc, err), str(bad))
    assert snapshot(work) == before


@pytest.mark.parametrize("kind", ["tflite", "ebnn"])
def test_damaged_converted_model_in_verify_and_estimate(kind: str, work: Path, edgebnn) -> None:
    bad = work / f"bad.{kind}"
    bad.write_bytes(_damaged((work / f"tiny.{kind}").read_bytes(), "truncated"))
    before = snapshot(work)
    assert_refused(edgebnn("verify", work / "tiny.onnx", bad), str(bad))
    if kind == "tflite":
        message = assert_refused(edgebnn("estimate", bad), str(bad))
        assert "model bytes" not in message
    assert snapshot(work) == before


def test_not_a_model_at_all(work: Path, edgebnn) -> None:
    text = work / "notes.onnx"
    text.write_text("hello")
    empty = work / "empty.tflite"
    empty.write_bytes(b"")
    folder = work / "folder.onnx"
    folder.mkdir()
    before = snapshot(work)
    for path in (text, empty, folder, work / "absent.onnx"):
        assert_refused(edgebnn("summary", path), str(path))
        assert_refused(edgebnn("convert", path, "-o", work / "x.ebnn"), str(path))
    assert snapshot(work) == before


# --- .npy inputs ----------------------------------------------------------------------------------


def _npy_cases(work: Path, marker: Path) -> dict[str, Path]:
    cases = {}
    pickled = work / "pickled.npy"
    np.save(pickled, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    cases["pickled objects"] = pickled
    nan = work / "nan.npy"
    array = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    array[0, 0, 0, 0] = np.nan
    np.save(nan, array)
    cases["NaN"] = nan
    inf = work / "inf.npy"
    np.save(inf, np.full((2, 1, 28, 28), np.inf, np.float32))
    cases["inf"] = inf
    truncated = work / "truncated.npy"
    truncated.write_bytes((work / "inputs.npy").read_bytes()[:100])
    cases["truncated"] = truncated
    strings = work / "strings.npy"
    np.save(strings, np.array([["a", "b"]]))
    cases["strings"] = strings
    shape = work / "shape.npy"
    np.save(shape, np.zeros((2, 3, 32, 32), np.float32))
    cases["wrong shape"] = shape
    notnpy = work / "text.npy"
    notnpy.write_text("not numpy")
    cases["not numpy"] = notnpy
    return cases


@pytest.mark.parametrize(
    "case", ["pickled objects", "NaN", "inf", "truncated", "strings", "not numpy", "wrong shape"]
)
def test_bad_calibration_npy(case: str, work: Path, edgebnn) -> None:
    marker = work / "PWNED"
    npy = _npy_cases(work, marker)[case]
    before = snapshot(work)
    assert_refused(edgebnn("convert", work / "tiny.onnx", "-o", work / "q.tflite", "--target", "tflite",
                           "--int8", "--calibration-data", npy), str(npy))  # fmt: skip
    assert not marker.exists()
    assert snapshot(work) == before


@pytest.mark.parametrize("case", ["pickled objects", "truncated", "not numpy"])
def test_bad_bench_input_npy(case: str, work: Path, edgebnn) -> None:
    marker = work / "PWNED"
    npy = _npy_cases(work, marker)[case]
    before = snapshot(work)
    assert_refused(edgebnn("bench", work / "tiny.onnx", "--input", npy, "--runs", "1"), str(npy))
    assert not marker.exists()
    assert snapshot(work) == before


# --- options validated before any work ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,flag",
    [(("verify", "{onnx}", "{ebnn}", "--random", "0"), "--random"),
     (("verify", "{onnx}", "{ebnn}", "--n", "-1", "--data", "synthetic"), "--n"),
     (("verify", "{onnx}", "{ebnn}", "--min-agreement", "2"), "--min-agreement"),
     (("estimate", "{tflite}", "--top", "-1"), "--top"),
     (("estimate", "{tflite}", "--threads", "0"), "--threads"),
     (("convert", "{onnx}", "-o", "{out}", "--int8", "--target", "tflite", "--calibration-data", "synthetic",
       "--calibration-samples", "0"), "--calibration-samples"),
     (("bench", "{onnx}", "--runs", "0"), "--runs"),
     (("data", "show", "synthetic", "--per-class", "0"), "--per-class")],
)  # fmt: skip
def test_bad_option_value(argv: tuple[str, ...], flag: str, work: Path, edgebnn) -> None:
    names = {"onnx": work / "tiny.onnx", "ebnn": work / "tiny.ebnn", "tflite": work / "tiny.tflite",
             "out": work / "q.tflite"}  # fmt: skip
    before = snapshot(work)
    assert_refused(edgebnn(*[a.format(**names) for a in argv]), flag)
    assert snapshot(work) == before
