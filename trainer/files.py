"""Atomic file writes for everything the trainer keeps (checkpoints, metrics, curves, ONNX, PNGs).

    >>> import tempfile, pathlib
    >>> from trainer.files import write_atomic
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> write_atomic(path, b'{"epoch": 1}\\n')
    >>> path.read_text()
    '{"epoch": 1}\\n'

A temporary file in the same folder is renamed over the target, so a reader (or a crash) never sees
a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
