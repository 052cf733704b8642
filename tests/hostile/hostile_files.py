"""Helpers of the hostile-input suite: writers of dataset files, folder snapshots, the refusal check.

A module of its own (not conftest.py): tests/ holds several conftest.py files, and
``from conftest import ...`` would pick whichever was imported first.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def write_fmnist_folder(folder: Path, count: int = 40, size: int = 28, test_size: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, s in (("train", count, size), ("t10k", count // 2, test_size or size)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, s, s)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return folder


def write_cifar_folder(folder: Path, per_batch: int = 4, protocol: int = 2) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"filenames": [f"img{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (hidden and temporary files too)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            state[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            state[str(path.relative_to(folder)) + "/"] = "dir"
    return state


def assert_refused(result: tuple[int, str], *names: str, code: int = 2) -> str:
    """Exit ``code``, one error line (after any progress output), naming every one of ``names``."""
    rc, err = result
    assert rc == code, f"exit {rc}, stderr: {err}"
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [
        line
        for line in lines
        if line.startswith("edgebnn: error:") or line.startswith("usage:") or "error:" in line
    ]
    assert errors, err
    message = errors[-1]
    for name in names:
        assert str(name) in message, f"{name!r} not in {message!r}"
    return message
