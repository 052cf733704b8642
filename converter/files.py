"""Atomic writes of the files a user keeps: all temporary files first, then ``os.replace`` each.

>>> from converter.files import write_atomically
>>> write_atomically({"model.tflite": flatbuffer})  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from converter.errors import ConverterError


def check_writable(path: str | os.PathLike) -> Path:
    """ConverterError now (before any long work) if ``path`` cannot be written."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConverterError(f"output path {path} is a directory")
    if not folder.is_dir():
        raise ConverterError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConverterError(f"output path {path} is not writable")
    return path


def write_atomically(files: dict[str | os.PathLike, bytes]) -> None:
    """Write every file or none: temporary files in the target folders, then renames."""
    pending: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            path = check_writable(path)
            fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            pending.append((temporary, path))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        for temporary, path in pending:
            os.replace(temporary, path)
    except OSError as error:
        raise ConverterError(
            f"cannot write {error.filename or 'output'}: {error.strerror or error}"
        ) from None
    finally:
        for temporary, _ in pending:
            Path(temporary).unlink(missing_ok=True)
