"""The one safe reader of ``.npy`` input arrays (calibration data, benchmark inputs).

    >>> import tempfile, pathlib, numpy as np
    >>> from formats.arrays import load_npy
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
    >>> np.save(path, np.zeros((2, 1, 4, 4), np.float32))
    >>> load_npy(path).shape
    (2, 1, 4, 4)
    >>> np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    >>> load_npy(path, "--input")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    formats.errors.FormatError: --input ...x.npy: cannot read a .npy array (it holds pickled Python objects, which edgebnn refuses to load: they could run code)

``allow_pickle=False`` always: an object array is a pickle, and unpickling runs code. A damaged
header (numpy parses it with ``ast.literal_eval``) or a truncated body is one FormatError naming
the file; only plain numeric arrays are returned.
"""

from __future__ import annotations

import os

import numpy as np

from formats.errors import FormatError


def load_npy(path: str | os.PathLike, option: str = "") -> np.ndarray:
    """A numeric array from the ``.npy`` file ``path``; FormatError naming it (and ``option``) otherwise."""
    label = f"{option} {path}" if option else str(path)
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        reason = str(error).splitlines()[0] if str(error) else "corrupt"
        if "allow_pickle" in reason or "pickle" in reason.lower():
            reason = "it holds pickled Python objects, which edgebnn refuses to load: they could run code"
        raise FormatError(f"{label}: cannot read a .npy array ({reason})") from None
    except OSError as error:
        raise FormatError(f"{label}: cannot read a .npy array ({error.strerror or error})") from None
    except Exception as error:  # noqa: BLE001 - a damaged header fails inside numpy's parser (SyntaxError, ...)
        raise FormatError(
            f"{label}: cannot read a .npy array (damaged header: {type(error).__name__})"
        ) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf" or array.dtype.hasobject:
        kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise FormatError(f"{label}: expected a numeric array, got {kind}")
    return array
