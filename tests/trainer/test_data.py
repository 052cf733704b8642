"""Dataset readers on tiny files written in each real format, corrupt variants, and the real Fashion-MNIST."""

from __future__ import annotations

import doctest
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.data as data
from edgebnn.cli import main as cli_main
from trainer.data import (
    DataError,
    channel_statistics,
    load_dataset,
    normalize,
    normalized_split,
    read_idx,
    train_val_split,
)

FASHION_DIR = Path(data.FASHION_MNIST_DIR)


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    magic = (0x08 << 8) | array.ndim
    payload = (
        struct.pack(">i", magic)
        + struct.pack(f">{array.ndim}i", *array.shape)
        + array.astype(np.uint8).tobytes()
    )
    path.write_bytes(gzip.compress(payload) if compress else payload)


def write_fashion_folder(
    folder: Path, compress: bool, n_train: int = 12, n_test: int = 5
) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28)),
        rng.integers(0, 10, n_train),
        rng.integers(0, 256, (n_test, 28, 28)),
        rng.integers(0, 10, n_test),
    )
    stems = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    for stem, array in zip(stems, arrays, strict=True):
        write_idx(folder / (stem + (".gz" if compress else "")), array, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_reader_round_trips_idx_files(tmp_path: Path, compress: bool) -> None:
    train_images, train_labels, test_images, test_labels = write_fashion_folder(tmp_path, compress)
    ds = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert ds.input_shape == (1, 28, 28)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert np.array_equal(ds.train_x[:, 0].numpy(), train_images)
    assert np.array_equal(ds.test_y.numpy(), test_labels)
    assert np.array_equal(ds.train_y.numpy(), train_labels)
    assert ds.mean[0] == pytest.approx(train_images.mean() / 255, rel=1e-9)
    assert ds.std[0] == pytest.approx(train_images.std(ddof=1) / 255, rel=1e-9)
    assert ds.metadata()["classes"][0] == "T-shirt/top"


def test_idx_wrong_magic_names_the_file(tmp_path: Path) -> None:
    write_fashion_folder(tmp_path, compress=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(labels.read_bytes())  # a labels file where images are expected
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: wrong IDX magic number 2049"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


def test_idx_truncated_file(tmp_path: Path) -> None:
    write_fashion_folder(tmp_path, compress=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: truncated"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="no header"):
        read_idx(path, data.IDX_IMAGES_MAGIC)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"0" * 100)[:20])
    with pytest.raises(DataError, match="cannot read or decompress"):
        read_idx(path, data.IDX_IMAGES_MAGIC)


def test_idx_label_image_count_mismatch(tmp_path: Path) -> None:
    write_fashion_folder(tmp_path, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7), compress=True)
    with pytest.raises(DataError, match="7 labels for 12 images"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


def test_missing_files_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "nowhere"))


def test_missing_default_folder_names_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist()


def write_cifar_folder(folder: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    written = {}
    for name in [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(batch))
        written[name] = batch[b"data"]
    return written


def test_cifar_reader(tmp_path: Path) -> None:
    written = write_cifar_folder(tmp_path)
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert ds.input_shape == (3, 32, 32)
    assert len(ds.train_x) == 20 and len(ds.test_x) == 4
    # CIFAR rows are channel-major (1024 red, 1024 green, 1024 blue): check one pixel per channel.
    first = written["data_batch_1"][0]
    assert [int(ds.train_x[0, c, 0, 1]) for c in range(3)] == [first[1], first[1024 + 1], first[2048 + 1]]
    assert ds.classes[0] == "airplane"


def test_cifar_wrong_layout_and_missing(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"images": [1, 2]}))
    with pytest.raises(DataError, match=r"data_batch_3: wrong CIFAR-10 pickle layout"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"data_batch_3: not a readable CIFAR-10 pickle"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"data_batch_3: missing"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10")


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(DataError, match="valid datasets: fashion-mnist, cifar10, synthetic"):
        load_dataset("mnist")


def test_split_is_deterministic_and_disjoint() -> None:
    train_a, val_a = train_val_split(1000, val_size=100, seed=3)
    train_b, val_b = train_val_split(1000, val_size=0.1, seed=3)
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    assert len(val_a) == 100 and len(set(train_a.tolist()) | set(val_a.tolist())) == 1000
    assert not torch.equal(val_a, train_val_split(1000, val_size=100, seed=4)[1])
    with pytest.raises(DataError):
        train_val_split(10, val_size=10)


def test_normalize_uses_recorded_statistics() -> None:
    images = torch.randint(0, 256, (16, 3, 4, 4), dtype=torch.uint8)
    mean, std = channel_statistics(images)
    normalised = normalize(images, mean, std)
    assert torch.allclose(normalised.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(normalised.transpose(0, 1).reshape(3, -1).std(dim=1), torch.ones(3), atol=1e-5)


def test_normalized_split_numbers_dtypes_and_counts(tmp_path: Path) -> None:
    _, _, test_images, test_labels = write_fashion_folder(tmp_path, compress=False)
    dataset = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    images, labels = normalized_split("fashion-mnist", str(tmp_path), "test", count=3)
    assert images.dtype == np.float32 and images.shape == (3, 1, 28, 28) and images.flags.c_contiguous
    assert labels.dtype == np.int64 and labels.tolist() == test_labels[:3].tolist()
    # the dataset's own statistics by default: (x / 255 - mean) / std, exactly normalize()'s numbers
    expected = (test_images[:3, None].astype(np.float32) / 255.0 - np.float32(dataset.mean[0])) / np.float32(
        dataset.std[0]
    )
    np.testing.assert_allclose(images, expected, rtol=1e-6, atol=1e-6)
    assert np.array_equal(images, normalize(dataset.test_x[:3], dataset.mean, dataset.std).numpy())
    # a model's recorded normalisation instead, the training split, and all of it
    recorded, _ = normalized_split("fashion-mnist", str(tmp_path), "train", 2, mean=(0.5,), std=(0.25,))
    assert np.array_equal(recorded, normalize(dataset.train_x[:2], (0.5,), (0.25,)).numpy())
    everything, all_labels = normalized_split("fashion-mnist", str(tmp_path), "train")
    assert everything.shape[0] == len(all_labels) == 12
    assert normalized_split("fashion-mnist", str(tmp_path), "test", count=100)[0].shape[0] == 5


@pytest.mark.parametrize("count", [0, -1, 2.5])
def test_normalized_split_rejects_a_bad_count(count) -> None:
    with pytest.raises(data.TrainerError, match="count must be a positive"):
        normalized_split("synthetic", None, "test", count=count)


def test_normalized_split_rejects_a_bad_split_or_half_statistics() -> None:
    with pytest.raises(data.TrainerError, match="split must be one of train, test"):
        normalized_split("synthetic", None, "validation", count=2)
    with pytest.raises(data.TrainerError, match="mean and std"):
        normalized_split("synthetic", None, "test", count=2, mean=(0.5,))


def test_module_docstring_example_runs() -> None:
    assert doctest.testmod(data).failed == 0


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian() -> None:
    ds = load_dataset("fashion-mnist")
    assert ds.input_shape == (1, 28, 28)
    assert (len(ds.train_x), len(ds.test_x)) == (60000, 10000)
    assert torch.bincount(ds.train_y).tolist() == [6000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-3) and ds.std[0] == pytest.approx(0.3530, abs=1e-3)


def test_cli_data_show_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grid.png"
    assert cli_main(["data", "show", "synthetic", "--out", str(out), "--per-class", "3"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "2000 train / 500 test" in printed and "class-9" in printed


def test_cli_errors_exit_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["data", "show", "imagenet"]) == 2
    assert cli_main(["data", "show", "fashion-mnist", "--data-dir", str(tmp_path)]) == 2
    assert cli_main(["data", "show", "synthetic", "--out", str(tmp_path / "no" / "grid.png")]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert "valid datasets" in error and "missing train-images-idx3-ubyte" in error
    assert not list(tmp_path.glob("**/*.png"))
