"""The fixtures themselves load cleanly (a broken fixture would make every refusal below vacuous)."""

from __future__ import annotations

from pathlib import Path


def test_valid_files_load(valid: dict[str, Path]) -> None:
    from converter.graph import load_onnx
    from formats.ebnn import read
    from formats.tflite import read_tflite
    from trainer.checkpoint import load_checkpoint
    from trainer.data import load_dataset

    assert load_checkpoint(valid["checkpoint"])["format"] == "edgebnn-checkpoint/1"
    assert load_onnx(str(valid["onnx"])).graph.node
    assert read(valid["ebnn"].read_bytes(), source="x").ops
    assert read_tflite(valid["tflite"]).operators
    assert load_dataset("fashion-mnist", str(valid["fmnist"])).input_shape == (1, 28, 28)
    assert load_dataset("cifar10", str(valid["cifar"])).input_shape == (3, 32, 32)
