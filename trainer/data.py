"""Datasets edgebnn trains on: Fashion-MNIST (IDX files), CIFAR-10 (python-pickle folder), synthetic.

Everything is loaded into memory as uint8 tensors ``[N, C, H, W]``: these sets are small, and
batches cut from in-memory tensors keep a 2-core machine busy with training, not with data loading.
The per-channel normalisation (mean, std on the [0, 1] pixel scale, computed on the training split)
travels with the dataset so that checkpoints and exported models can record it.

    >>> from trainer.data import load_dataset, normalize, normalized_split
    >>> ds = load_dataset("synthetic")
    >>> ds.input_shape, len(ds.classes)
    ((1, 28, 28), 10)
    >>> x = normalize(ds.train_x[:4], ds.mean, ds.std)
    >>> x.dtype, tuple(x.shape)
    (torch.float32, (4, 1, 28, 28))
    >>> images, labels = normalized_split("synthetic", None, "test", count=8)  # numpy, for the runtimes
    >>> images.dtype, images.shape, labels.dtype
    (dtype('float32'), (8, 1, 28, 28), dtype('int64'))

Readers raise :class:`DataError` (exit code 2 in the CLI) naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import io
import math
import numbers
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from formats.files import write_atomic
from trainer.errors import TrainerError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


class DataError(TrainerError):
    """A dataset is missing, corrupt or in an unexpected layout."""


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image classification set held in memory (uint8 NCHW images, int64 labels)."""

    name: str
    classes: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.train_x.shape[1:]
        return int(channels), int(height), int(width)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def metadata(self) -> dict:
        """JSON-serialisable facts that checkpoints and exported models record."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "mean": list(self.mean),
            "std": list(self.std),
            "classes": list(self.classes),
        }


# --- pure helpers -------------------------------------------------------------------------------


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> float32 ``(x / 255 - mean) / std`` per channel."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.to(torch.float32) / 255.0 - mean_t) / std_t


def channel_statistics(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``[N, C, H, W]`` images on the [0, 1] scale."""
    # A 256-bin histogram per channel gives exact moments without a float copy of every pixel.
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * levels).sum() / total
        variance = (counts * (levels - mean) ** 2).sum() / max(total - 1, 1)  # unbiased, like torch.std
        means.append(float(mean))
        stds.append(float(variance.sqrt()))
    return tuple(means), tuple(stds)


def train_val_split(
    num_train: int, val_size: int | float = 5000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic split of ``range(num_train)`` into (train, validation) index tensors.

    ``val_size`` is a count, or a fraction when below 1. The same seed gives the same split on
    every machine (torch's CPU generator is platform independent).
    """
    count = int(round(val_size * num_train)) if 0 < val_size < 1 else int(val_size)
    if not 0 <= count < num_train:
        raise DataError(f"validation size {val_size} does not fit a training split of {num_train} images")
    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
    return order[count:].sort().values, order[:count].sort().values


def training_split(
    num_train: int, val_size: int | None, subset: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (train, validation) indices of a training run: ``train_val_split`` of the full training set
    (``val_size`` default: 5000, or a tenth of a set under 20k images), then the first ``subset``
    training images.

    >>> [len(part) for part in training_split(1000, None, 50, seed=0)]
    [50, 100]
    """
    if val_size is None:
        val_size = 5000 if num_train >= 20000 else num_train // 10
    train_idx, val_idx = train_val_split(num_train, val_size, seed=seed)
    if subset is not None:
        if subset > len(train_idx):
            raise TrainerError(
                f"--subset {subset}: only {len(train_idx)} training images after the validation split"
            )
        train_idx = train_idx[:subset]
    return train_idx, val_idx


# --- IDX (Fashion-MNIST, MNIST) -----------------------------------------------------------------


IDX_MAX_BYTES = 1 << 30  # 1 GiB decompressed: Fashion-MNIST's largest file is 47 MB


def _decompress_gzip(raw: bytes, path: Path) -> bytes:
    """The content of a gzip file, at most IDX_MAX_BYTES (a gzip bomb is refused, not inflated)."""
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
        data = stream.read(IDX_MAX_BYTES + 1)
    if len(data) > IDX_MAX_BYTES:
        raise DataError(
            f"{path}: decompresses to more than {IDX_MAX_BYTES >> 20} MiB; not an IDX dataset file"
        )
    return data


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Read one IDX file (gzip-compressed or plain) into a uint8 array of its declared shape."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = _decompress_gzip(raw, path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an IDX file") from None
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read or decompress ({error})") from None
    if len(raw) < 8:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    (magic,) = struct.unpack(">i", raw[:4])
    if magic != expected_magic:
        raise DataError(
            f"{path}: wrong IDX magic number {magic} (expected {expected_magic}); not an IDX file?"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}i", raw[4:header_size])
    if any(size < 0 for size in shape):
        raise DataError(f"{path}: negative dimension in the IDX header {list(shape)}")
    expected = math.prod(shape)  # Python ints: a hostile header cannot overflow the check
    if len(raw) - header_size != expected:
        raise DataError(
            f"{path}: truncated or padded IDX data: header declares shape {shape} "
            f"({expected} bytes) but the file holds {len(raw) - header_size}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: missing {stem}[.gz]")


def _idx_split(folder: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    images_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{labels_path}: label {labels.max()} out of range 0..9")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load_fashion_mnist(data_dir: str | None = None) -> ImageDataset:
    """Fashion-MNIST from the standard IDX files (Debian's ``dataset-fashion-mnist`` by default)."""
    folder = Path(data_dir or FASHION_MNIST_DIR)
    if not folder.is_dir():
        hint = (
            f"install the Debian package: sudo apt-get install {FASHION_MNIST_PACKAGE}"
            if data_dir is None
            else "pass --data-dir with a folder holding the IDX files"
        )
        raise DataError(
            f"Fashion-MNIST not found: {folder} does not exist ({hint}; expected files "
            "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
            "t10k-labels-idx1-ubyte[.gz])"
        )
    train_x, train_y = _idx_split(folder, "train")
    test_x, test_y = _idx_split(folder, "t10k")
    if train_x.shape[1:] != test_x.shape[1:]:
        # Found here, at load time: otherwise only the test pass after a whole training run fails.
        raise DataError(
            f"{folder}: test images are {list(test_x.shape[2:])} but training images are "
            f"{list(train_x.shape[2:])} (t10k-images-idx3-ubyte and train-images-idx3-ubyte must match)"
        )
    mean, std = channel_statistics(train_x)
    return ImageDataset("fashion-mnist", FASHION_MNIST_CLASSES, train_x, train_y, test_x, test_y, mean, std)


# --- CIFAR-10 (python pickle batches) -----------------------------------------------------------


# What a CIFAR-10 python batch pickles, and nothing else: numpy arrays (both pickle protocols numpy
# writes) and their dtypes; ``_codecs.encode`` is how Python 3 protocol-2 pickles store bytes.
# Every other global (os.system, builtins.eval, ...) is refused before it is looked up, so a crafted
# batch cannot run code (issue 15).
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
CIFAR_MAX_BATCH_BYTES = 512 * 1024 * 1024  # a real batch is 31 MB; refuse anything absurd unread


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` restricted to what pickle uses it for: str -> bytes in latin-1."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not allowed")
    return text.encode("latin1", errors)


def _safe_dtype(*args: object) -> np.dtype:
    """``numpy.dtype`` for plain numeric types only (an object dtype would unpickle arbitrary items)."""
    if not args or not isinstance(args[0], str):
        raise pickle.UnpicklingError("numpy.dtype with a non-string type is not allowed")
    dtype = np.dtype(args[0])
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise pickle.UnpicklingError(f"numpy dtype {args[0]!r} is not allowed in a CIFAR-10 batch")
    return np.dtype(*args)  # type: ignore[call-overload]


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_CIFAR_GLOBALS`` (and a latin-1 encoder)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) == ("numpy", "dtype"):
            return _safe_dtype
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing global {module}.{name}: a CIFAR-10 batch holds only a dict, lists, bytes and numpy arrays"
        )

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids are not allowed in a CIFAR-10 batch")


def load_cifar_pickle(path: Path) -> object:
    """Unpickle one CIFAR-10 batch file with the restricted unpickler; DataError naming ``path``."""
    try:
        size = path.stat().st_size
        if size > CIFAR_MAX_BATCH_BYTES:
            raise DataError(f"{path}: {size} bytes is far too large for a CIFAR-10 batch (31 MB)")
        with path.open("rb") as handle:
            return _CifarUnpickler(handle, encoding="bytes").load()
    except DataError:
        raise
    except RecursionError:
        raise DataError(f"{path}: not a readable CIFAR-10 pickle (nested too deeply)") from None
    except MemoryError:
        raise DataError(
            f"{path}: not a readable CIFAR-10 pickle (declares more memory than exists)"
        ) from None
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a corrupt or hostile file
        reason = str(error).splitlines()[0][:200] if str(error) else ""
        raise DataError(
            f"{path}: not a readable CIFAR-10 pickle ({type(error).__name__}: {reason})"
        ) from None


def _cifar_labels(path: Path, raw: object) -> np.ndarray:
    """The labels of a batch as int64; DataError for strings, floats, nesting or out-of-range values."""
    if isinstance(raw, np.ndarray):
        values = raw
    elif isinstance(raw, (list, tuple)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw):
            bad = next(v for v in raw if not isinstance(v, (int, np.integer)) or isinstance(v, bool))
            raise DataError(
                f"{path}: b'labels' must be integers 0..9, found {type(bad).__name__} {bad!r:.40}"
            )
        try:
            values = np.asarray(raw, dtype=np.int64)
        except OverflowError:
            raise DataError(f"{path}: labels out of range 0..9") from None
    else:
        raise DataError(f"{path}: b'labels' must be a list of integers, got {type(raw).__name__}")
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise DataError(
            f"{path}: b'labels' must be a flat list of integers, got {values.dtype} {list(values.shape)}"
        )
    return values.astype(np.int64)


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.exists():
        raise DataError(f"{path}: missing CIFAR-10 batch file")
    batch = load_cifar_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(
            f"{path}: wrong CIFAR-10 pickle layout: expected keys b'data' and b'labels', got {keys}"
        )
    data = batch[b"data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: b'data' must be a uint8 array [N, 3072], got {type(data).__name__}")
    labels = _cifar_labels(path, batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: b'data' must be uint8 [N, 3072], got {data.dtype} {list(data.shape)}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels out of range 0..9")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def load_cifar10(data_dir: str | None = None) -> ImageDataset:
    """CIFAR-10 from its standard python folder (``data_batch_1..5``, ``test_batch``)."""
    if data_dir is None:
        raise DataError(
            "CIFAR-10 cannot be downloaded here: pass --data-dir with the standard python folder "
            "(cifar-10-batches-py: data_batch_1..data_batch_5, test_batch)"
        )
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 folder {folder} does not exist (expected data_batch_1..5 and test_batch)")
    parts = [_read_cifar_batch(folder / f"data_batch_{index}") for index in range(1, 6)]
    test_x, test_y = _read_cifar_batch(folder / "test_batch")
    train_x = torch.cat([images for images, _ in parts])
    train_y = torch.cat([labels for _, labels in parts])
    mean, std = channel_statistics(train_x)
    return ImageDataset("cifar10", CIFAR10_CLASSES, train_x, train_y, test_x, test_y, mean, std)


# --- synthetic ----------------------------------------------------------------------------------


def make_synthetic(
    num_train: int = 2000,
    num_test: int = 500,
    shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    seed: int = 0,
) -> ImageDataset:
    """A learnable toy set for smoke tests: one smooth random template per class plus noise."""
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = shape
    coarse = torch.rand(num_classes, channels, max(height // 4, 1), max(width // 4, 1), generator=generator)
    templates = torch.nn.functional.interpolate(
        coarse, size=(height, width), mode="bilinear", align_corners=False
    )

    def split(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, num_classes, (count,), generator=generator)
        noise = 0.25 * torch.randn(count, channels, height, width, generator=generator)
        images = ((templates[labels] + noise).clamp(0, 1) * 255).round().to(torch.uint8)
        return images, labels

    train_x, train_y = split(num_train)
    test_x, test_y = split(num_test)
    mean, std = channel_statistics(train_x)
    classes = tuple(f"class-{index}" for index in range(num_classes))
    return ImageDataset("synthetic", classes, train_x, train_y, test_x, test_y, mean, std)


DATASETS: dict[str, Callable[[str | None], ImageDataset]] = {
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "synthetic": lambda data_dir=None: make_synthetic(),
}


def load_dataset(name: str, data_dir: str | None = None) -> ImageDataset:
    """Load a dataset by name (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return DATASETS[name](data_dir)


SPLITS = ("train", "test")


def normalized_split(
    dataset_name: str,
    data_dir: str | None,
    split: str,
    count: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` images of split ``split`` (``train``/``test``) as model inputs, and their labels.

    Images come back as float32 NCHW ``(x / 255 - mean) / std`` (``normalize``), with the given
    per-channel ``mean``/``std`` (a model's recorded normalisation) or, by default, the dataset's own;
    labels as int64. ``count=None`` takes the whole split; a count beyond its size takes all of it.
    """
    if split not in SPLITS:
        raise TrainerError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if count is not None and (
        isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1
    ):
        raise TrainerError(f"count must be a positive number of images, got {count!r}")
    if (mean is None) != (std is None):
        raise TrainerError("mean and std must be given together (or neither, for the dataset's own)")
    dataset = load_dataset(dataset_name, data_dir=data_dir)
    images = dataset.test_x if split == "test" else dataset.train_x
    labels = dataset.test_y if split == "test" else dataset.train_y
    if mean is None:
        mean, std = dataset.mean, dataset.std
    inputs = normalize(images[:count], tuple(mean), tuple(std))
    return np.ascontiguousarray(inputs.numpy()), labels[:count].numpy()


# --- presentation (used by `edgebnn data show`) --------------------------------------------------


def describe_dataset(dataset: ImageDataset) -> None:
    """Print split sizes, shape, classes with counts and pixel statistics as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    channels, height, width = dataset.input_shape
    console.print(
        f"[bold]{dataset.name}[/bold]: {len(dataset.train_x)} train / {len(dataset.test_x)} test images, "
        f"{height}x{width}, {channels} channel(s), {dataset.num_classes} classes"
    )
    stats = Table(title="pixel statistics (training split, [0, 1] scale)")
    for column in ("channel", "mean", "std", "min", "max"):
        stats.add_column(column, justify="right")
    for channel in range(channels):
        pixels = dataset.train_x[:, channel]
        stats.add_row(
            str(channel),
            f"{dataset.mean[channel]:.4f}",
            f"{dataset.std[channel]:.4f}",
            f"{int(pixels.min()) / 255:.3f}",
            f"{int(pixels.max()) / 255:.3f}",
        )
    console.print(stats)
    counts = Table(title="images per class")
    for column in ("label", "class", "train", "test"):
        counts.add_column(column, justify="right" if column != "class" else "left")
    train_counts = torch.bincount(dataset.train_y, minlength=dataset.num_classes)
    test_counts = torch.bincount(dataset.test_y, minlength=dataset.num_classes)
    for label, class_name in enumerate(dataset.classes):
        counts.add_row(str(label), class_name, str(int(train_counts[label])), str(int(test_counts[label])))
    console.print(counts)


def save_sample_grid(dataset: ImageDataset, path: str | os.PathLike, per_class: int = 8) -> None:
    """Write a PNG grid: one row per class, ``per_class`` training samples each. Atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: folder {path.parent} does not exist")
    figure, axes = plt.subplots(
        dataset.num_classes,
        per_class,
        figsize=(per_class * 0.9 + 1.6, dataset.num_classes * 0.9),
        squeeze=False,
    )
    for label, class_name in enumerate(dataset.classes):
        indices = torch.nonzero(dataset.train_y == label).flatten()[:per_class]
        for column in range(per_class):
            axis = axes[label][column]
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(indices):
                image = dataset.train_x[indices[column]].permute(1, 2, 0).numpy()
                axis.imshow(
                    image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255
                )
            if column == 0:
                axis.set_ylabel(class_name, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(f"{dataset.name}: {per_class} training samples per class")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())  # a FormatError naming the file if that fails
