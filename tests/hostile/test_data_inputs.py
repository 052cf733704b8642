"""Hostile dataset files (IDX, CIFAR-10 pickles) through `edgebnn data show` and `edgebnn train`.

Every case: exit 2, one line naming the file, no traceback, nothing created or changed; for the
pickles also that the payload never ran (it would create a marker file).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile_files import REPO, assert_refused, snapshot, write_cifar_folder, write_fmnist_folder, write_idx


class Payload:
    """Unpickling it runs ``command`` (a shell command that creates a marker file)."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payloads(marker: Path) -> dict[str, bytes]:
    """Batches that each try to run code in another way."""
    shell = f"touch {marker}"
    as_data = {
        "os.system as b'data'": {b"data": Payload(os.system, shell), b"labels": [1]},
        "os.system as a label": {
            b"data": np.zeros((1, 3072), np.uint8),
            b"labels": [Payload(os.system, shell)],
        },
        "eval as the batch": Payload(eval, f"__import__('os').system({shell!r})"),
        "exec in a key": {Payload(exec, f"open({str(marker)!r}, 'w')"): 1},
        "subprocess.call": {b"data": Payload(subprocess.call, ["touch", str(marker)]), b"labels": []},
    }
    blobs = {name: pickle.dumps(obj, protocol=2) for name, obj in as_data.items()}
    # A hand-written protocol-0 pickle: GLOBAL 'posix system' (what `pickle.dumps(os.system)` writes).
    blobs["protocol-0 posix.system"] = f"cposix\nsystem\n(V{shell}\ntR.".encode()
    # numpy's own globals beyond the few a batch needs: numpy.load would read a file.
    blobs["numpy.load"] = pickle.dumps({b"data": Payload(np.load, str(marker)), b"labels": [0]}, protocol=2)
    return blobs


@pytest.mark.parametrize("case", list(payloads(Path("/x"))))
def test_cifar_pickle_payload_never_runs(case: str, tmp_path: Path, edgebnn) -> None:
    folder = write_cifar_folder(tmp_path / "cifar")
    marker = tmp_path / "PWNED"
    (folder / "data_batch_2").write_bytes(payloads(marker)[case])
    before = snapshot(tmp_path)
    message = assert_refused(edgebnn("data", "show", "cifar10", "--data-dir", folder), "data_batch_2")
    assert "CIFAR-10" in message
    assert not marker.exists(), "the pickle payload ran"
    assert snapshot(tmp_path) == before


def test_cifar_payload_through_train_in_a_real_process(tmp_path: Path) -> None:
    """The exit path of a real `edgebnn train` run: exit 2, no code ran, no run folder left behind."""
    folder = write_cifar_folder(tmp_path / "cifar")
    marker = tmp_path / "PWNED"
    (folder / "test_batch").write_bytes(payloads(marker)["os.system as b'data'"])
    done = subprocess.run(
        [sys.executable, "-m", "edgebnn", "train", "--model", "resnet20", "--data", "cifar10", "--data-dir",
         str(folder), "--out", str(tmp_path / "run"), "--epochs", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "test_batch" in done.stderr
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_cifar_reader_accepts_every_pickle_protocol(tmp_path: Path) -> None:
    """The restricted unpickler still reads real batches, whatever protocol wrote them."""
    from trainer.data import load_dataset

    for protocol in (0, 2, 4, 5):
        folder = write_cifar_folder(tmp_path / f"p{protocol}", protocol=protocol)
        assert len(load_dataset("cifar10", str(folder)).train_x) == 20


def _batch(**fields) -> bytes:
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    batch.update({key.encode(): value for key, value in fields.items()})
    return pickle.dumps(batch, protocol=2)


CIFAR_CASES = {
    "labels are strings": _batch(labels=["cat", "dog"]),
    "labels are floats": _batch(labels=[0.5, 1.0]),
    "labels out of range": _batch(labels=[3, 12]),
    "labels negative": _batch(labels=[-1, 0]),
    "labels nested": _batch(labels=[[0], [1]]),
    "labels a dict": _batch(labels={0: 1}),
    "data of floats": _batch(data=np.zeros((2, 3072), np.float32)),
    "data of objects": _batch(data=np.array([[None] * 3072] * 2, dtype=object)),
    "data wrong width": _batch(data=np.zeros((2, 100), np.uint8)),
    "data a list": _batch(data=[[0] * 3072, [0] * 3072]),
    "count mismatch": _batch(labels=[0, 1, 2]),
    "not a dict": pickle.dumps([1, 2, 3], protocol=2),
    "empty file": b"",
    "truncated pickle": _batch()[:100],
    "random bytes": bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)),
    "deep nesting": b"(" * 100000 + b"l" * 100000 + b".",
}


@pytest.mark.parametrize("case", list(CIFAR_CASES))
def test_cifar_bad_batch(case: str, tmp_path: Path, edgebnn) -> None:
    folder = write_cifar_folder(tmp_path / "cifar")
    (folder / "data_batch_4").write_bytes(CIFAR_CASES[case])
    before = snapshot(tmp_path)
    assert_refused(
        edgebnn("data", "show", "cifar10", "--data-dir", folder, "--out", tmp_path / "g.png"), "data_batch_4"
    )
    assert snapshot(tmp_path) == before


def _idx(magic: int, shape: tuple[int, ...], payload: bytes | None = None) -> bytes:
    header = struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in shape)
    return header + (payload if payload is not None else bytes(max(0, int(np.prod(shape)))))


IDX_CASES = {
    "truncated data": lambda good: good[:-10],
    "padded data": lambda good: good + b"\0" * 7,
    "header only": lambda good: good[:10],
    "empty": lambda good: b"",
    "wrong magic": lambda good: struct.pack(">i", 2049) + good[4:],
    "negative dimension": lambda good: _idx(2051, (-40, 28, 28), b""),
    "dimensions overflow": lambda good: _idx(2051, (2**31 - 1, 2**31 - 1, 2**31 - 1), b"\0" * 64),
    "corrupt gzip": lambda good: gzip.compress(good)[:40] + b"\xff" * 40,
    "truncated gzip": lambda good: gzip.compress(good)[:-30],
    "gzip of garbage": lambda good: gzip.compress(b"not an idx file at all"),
}


@pytest.mark.parametrize("case", list(IDX_CASES))
def test_idx_bad_images(case: str, tmp_path: Path, edgebnn) -> None:
    folder = write_fmnist_folder(tmp_path / "fm")
    target = folder / "train-images-idx3-ubyte"
    target.write_bytes(IDX_CASES[case](target.read_bytes()))
    before = snapshot(tmp_path)
    assert_refused(edgebnn("data", "show", "fashion-mnist", "--data-dir", folder), "train-images-idx3-ubyte")
    assert snapshot(tmp_path) == before


def test_idx_labels_out_of_range_and_count_mismatch(tmp_path: Path, edgebnn) -> None:
    folder = write_fmnist_folder(tmp_path / "fm")
    write_idx(folder / "train-labels-idx1-ubyte", np.full(40, 11))
    assert_refused(edgebnn("data", "show", "fashion-mnist", "--data-dir", folder), "train-labels-idx1-ubyte")
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(39))
    assert_refused(edgebnn("data", "show", "fashion-mnist", "--data-dir", folder), "train-labels-idx1-ubyte")


def test_test_images_of_another_size_are_refused_before_training(tmp_path: Path, edgebnn) -> None:
    folder = write_fmnist_folder(tmp_path / "fm", test_size=32)
    message = assert_refused(
        edgebnn("train", "--model", "fmnist-bnn", "--model-option", "width=8", "--data", "fashion-mnist",
                "--data-dir", folder, "--out", tmp_path / "run", "--epochs", "1"),
        str(folder),
    )  # fmt: skip
    assert "[32, 32]" in message and "[28, 28]" in message
    assert not (tmp_path / "run").exists()  # refused at load time: no run folder, no epoch


def test_data_show_out_over_a_dataset_file(tmp_path: Path, edgebnn) -> None:
    folder = write_fmnist_folder(tmp_path / "fm")
    before = snapshot(tmp_path)
    target = folder / "t10k-labels-idx1-ubyte"
    assert_refused(edgebnn("data", "show", "fashion-mnist", "--data-dir", folder, "--out", target), "--out")
    assert snapshot(tmp_path) == before
