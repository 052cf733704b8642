"""Atomic writes of every file a user keeps, and the checks made before any long work starts.

    >>> import tempfile, pathlib
    >>> from formats.files import write_atomic, write_files_atomic
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "metrics.jsonl", b'{"epoch": 1}\\n')
    >>> (folder / "metrics.jsonl").read_text()
    '{"epoch": 1}\\n'
    >>> write_files_atomic({folder / "m.h": b"/* h */", folder / "m.c": b"/* c */"})
    >>> sorted(p.name for p in folder.iterdir())
    ['m.c', 'm.h', 'metrics.jsonl']

One behaviour everywhere: the data goes to a temporary file in the target's own folder, is flushed
to disk, then renamed over the target (``os.replace``), so a reader, a crash or a full disk never
leaves a half-written file. The folder must exist: a missing folder is refused (it is usually a
typing mistake), never created; code that owns a folder (a training run, the pipeline) creates it
itself. Every failure is a ``FormatError`` that names the file, e.g. ``cannot write m.onnx: No
space left on device``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from formats.errors import FormatError

PathLike = str | os.PathLike


def check_writable(path: PathLike) -> Path:
    """``path`` as a Path, or FormatError now (before any long work) if it cannot be written."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise FormatError(f"cannot write {path}: it is a directory")
    if not folder.is_dir():
        raise FormatError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FormatError(f"cannot write {path}: permission denied")
    return path


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def _write_temporary(path: Path, data: bytes) -> str:
    """A flushed temporary file next to ``path`` holding ``data``; its name."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return temporary


def write_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring); FormatError on failure."""
    write_files_atomic({path: data})


def write_files_atomic(files: Mapping[PathLike, bytes]) -> None:
    """Write every file or none: all temporary files first, then one rename each."""
    pending: list[tuple[str, Path]] = []
    current: Path | None = None
    try:
        for target, data in files.items():
            current = check_writable(target)
            pending.append((_write_temporary(current, data), current))
        for temporary, current in pending:
            os.replace(temporary, current)
    except OSError as error:
        raise FormatError(f"cannot write {current}: {_reason(error)}") from None
    finally:
        for temporary, _ in pending:
            Path(temporary).unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def refuse_overwriting_inputs(outputs: Mapping[str, PathLike | None], inputs: Iterable[PathLike]) -> None:
    """FormatError when an output would replace an input (same path, symlink or hard link).

    ``outputs`` maps how the user named each output (an option such as ``--json``) to its path;
    ``None`` paths are skipped. Checked before any work, so the input is never touched.

        >>> refuse_overwriting_inputs({"-o": "m.onnx"}, ["m.onnx"])
        Traceback (most recent call last):
        ...
        formats.errors.FormatError: -o m.onnx is also an input: choose another output path (nothing was written)
    """
    sources = [Path(p) for p in inputs]
    for option, output in outputs.items():
        if output is None:
            continue
        for source in sources:
            if _same_file(Path(output), source):
                raise FormatError(
                    f"{option} {output} is also an input: choose another output path (nothing was written)"
                )
