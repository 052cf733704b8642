"""Deploy metadata in .tflite files (formats.tflite, formats.metadata): written into real LCE and
LiteRT flatbuffers, read back, and the rewritten models compute exactly what the originals did."""

from __future__ import annotations

import numpy as np
import pytest

from formats.errors import FormatError
from formats.metadata import DeployMetadata
from formats.models import read_metadata
from formats.tflite import BUFFER_ALIGNMENT, metadata_buffers
from formats.tflite import read_deploy_metadata as read_tflite
from formats.tflite import read_tflite as parse_tflite
from formats.tflite import write_deploy_metadata as write_tflite
from runtime.engines import load_engine

META = DeployMetadata(model="tiny", input_shape=(3, 16, 16), mean=(0.5,) * 3, std=(0.25,) * 3,
                      labels=tuple(f"class {i}" for i in range(10)), accuracy=0.75)  # fmt: skip


@pytest.mark.parametrize("kind,runtime", [("binary", "lce"), ("float", "litert"), ("float", "lce")])
def test_rewritten_model_runs_identically(models, kind, runtime):
    original = models[kind].read_bytes()
    tagged = write_tflite(original, META)
    assert read_tflite(original) == DeployMetadata()
    assert read_tflite(tagged) == META and read_metadata(tagged) == META
    before, after = parse_tflite(original), parse_tflite(tagged)
    assert [(op.name, op.inputs, op.outputs, op.options) for op in after.operators] == [
        (op.name, op.inputs, op.outputs, op.options) for op in before.operators
    ]
    assert [(t.name, t.shape, t.data) for t in after.tensors] == [
        (t.name, t.shape, t.data) for t in before.tensors
    ]
    x = np.random.default_rng(7).standard_normal((4, 16, 16, 3)).astype(np.float32)
    for kernel in ("default", "indirect") if runtime == "lce" else ("default",):
        expected = load_engine(original, runtime, lce_kernel=kernel).predict(x)
        np.testing.assert_array_equal(load_engine(tagged, runtime, lce_kernel=kernel).predict(x), expected)


def test_buffers_stay_aligned_and_metadata_is_replaced_not_added(models):
    from formats.tflite import schema

    once = write_tflite(models["binary"].read_bytes(), META)
    twice = write_tflite(once, META.replace(accuracy=0.5))
    assert metadata_buffers(twice).keys() == metadata_buffers(once).keys()
    assert read_tflite(twice).accuracy == 0.5
    model = schema().Model.GetRootAs(twice, 0)
    starts = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            starts.append(buffer._tab.Vector(buffer._tab.Offset(4)))  # the data's position in the file
    assert starts and all(start % BUFFER_ALIGNMENT == 0 for start in starts)


def test_onnx_metadata_and_bad_files(models, tmp_path):
    assert read_metadata(models["onnx"]).accuracy == 0.5 and read_metadata(models["onnx"]).model == "tiny-cnn"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    with pytest.raises(FormatError, match="notes.txt"):
        read_metadata(notes)
    with pytest.raises(FormatError, match="corrupt or truncated"):
        write_tflite(models["float"].read_bytes()[:300], META)
