"""Fuzzing every loader: seeded truncations and bit flips of a valid small file.

A damaged file must give either a valid load or the product's own clean error (an exception with
``exit_code == 2``, printed as one line by the CLI): never another exception (a traceback) and
never a crash. Each loader sees ``VARIANTS`` variants (half truncations, half 1-8 flipped bits).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

VARIANTS = 60


def variants(data: bytes, seed: int, count: int = VARIANTS) -> Iterator[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    for index in range(count):
        if index % 2 == 0:  # truncation, biased towards the header where the parsing decisions are
            cut = (
                int(rng.integers(0, min(len(data), 256)))
                if index % 4 == 0
                else int(rng.integers(0, len(data)))
            )
            yield f"truncated to {cut}", data[:cut]
        else:
            flipped = bytearray(data)
            region = min(len(data), 512) if index % 3 == 0 else len(data)
            for position in rng.integers(0, region, int(rng.integers(1, 9))):
                flipped[position] ^= 1 << int(rng.integers(0, 8))
            yield "bit flips", bytes(flipped)


def fuzz(data: bytes, seed: int, load: Callable[[bytes], object]) -> dict[str, int]:
    """Run ``load`` on every variant; fail on any exception that is not a clean product error."""
    outcomes = {"loaded": 0, "refused": 0}
    for label, variant in variants(data, seed):
        try:
            load(variant)
        except Exception as error:  # noqa: BLE001 - what we check is which exceptions escape
            if getattr(error, "exit_code", None) != 2:
                raise AssertionError(f"{label}: {type(error).__name__}: {error}") from error
            assert "\n" not in str(error).strip(), f"{label}: multi-line message {error}"
            outcomes["refused"] += 1
        else:
            outcomes["loaded"] += 1
    assert outcomes["refused"] > 0  # the fuzzer does reach the checks
    return outcomes


def _via_file(tmp_path: Path, name: str, reader: Callable[[Path], object]) -> Callable[[bytes], object]:
    path = tmp_path / name

    def load(data: bytes) -> object:
        path.write_bytes(data)
        return reader(path)

    return load


def test_fuzz_idx(tmp_path: Path, valid) -> None:
    from trainer.data import IDX_IMAGES_MAGIC, read_idx

    data = (valid["fmnist"] / "train-images-idx3-ubyte").read_bytes()
    fuzz(data, 1, _via_file(tmp_path, "images", lambda p: read_idx(p, IDX_IMAGES_MAGIC)))
    import gzip

    fuzz(gzip.compress(data), 2, _via_file(tmp_path, "images.gz", lambda p: read_idx(p, IDX_IMAGES_MAGIC)))


def test_fuzz_cifar(tmp_path: Path, valid) -> None:
    from trainer.data import _read_cifar_batch

    data = (valid["cifar"] / "data_batch_1").read_bytes()
    fuzz(data, 3, _via_file(tmp_path, "data_batch_1", _read_cifar_batch))


def test_fuzz_checkpoint(tmp_path: Path, valid) -> None:
    from trainer.checkpoint import load_checkpoint, model_from_checkpoint

    fuzz(valid["checkpoint"].read_bytes(), 4,
         _via_file(tmp_path, "c.pt", lambda p: model_from_checkpoint(load_checkpoint(p))))  # fmt: skip


def test_fuzz_onnx(tmp_path: Path, valid) -> None:
    from converter.graph import load_onnx, resolve_input_shape
    from formats.models import read_metadata

    def load(path: Path) -> object:
        model = load_onnx(str(path))
        read_metadata(path)
        return resolve_input_shape(model, None)

    fuzz(valid["onnx"].read_bytes(), 5, _via_file(tmp_path, "m.onnx", load))


def test_fuzz_tflite(tmp_path: Path, valid) -> None:
    from formats.tflite import custom_ops, metadata_buffers, read_deploy_metadata
    from runtime.estimate import read_tflite_ops

    def load(data: bytes) -> object:
        custom_ops(data, "m.tflite")
        metadata_buffers(data, "m.tflite")
        read_deploy_metadata(data, "m.tflite")
        return read_tflite_ops(data, "m.tflite")

    fuzz(valid["tflite"].read_bytes(), 6, load)


def test_fuzz_ebnn(valid) -> None:
    from formats.ebnn import read

    data = valid["ebnn"].read_bytes()
    fuzz(data, 7, lambda d: read(d, source="m.ebnn"))
    fuzz(data, 8, lambda d: read(d, verify_checksum=False, source="m.ebnn"))  # past the checksum


def test_fuzz_device_profile(tmp_path: Path, valid) -> None:
    from devices.profiles import read_profile_file
    from edgebnn.estimate_cmd import load_cost_model

    fuzz(valid["profile"].read_bytes(), 9,
         _via_file(tmp_path, "board.toml", lambda p: (read_profile_file(p), load_cost_model("x", str(p)))))  # fmt: skip


def test_fuzz_pipeline_config(tmp_path: Path, valid) -> None:
    from edgebnn.pipeline import PipelineConfig

    fuzz(valid["pipeline"].read_bytes(), 10, _via_file(tmp_path, "p.toml", PipelineConfig.from_toml))


def test_fuzz_npy(tmp_path: Path, valid) -> None:
    from edgebnn.convert_cmds import calibration_inputs

    def load(path: Path) -> object:
        return calibration_inputs(None, argparse.Namespace(calibration_data=str(path)), None)

    fuzz(valid["npy"].read_bytes(), 11, _via_file(tmp_path, "x.npy", load))
