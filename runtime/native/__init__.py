"""The native runtime's Python binding: ctypes over ``libedgebnn.so`` (nothing is compiled here).

    >>> import numpy as np
    >>> from formats.ebnn import ModelBuilder
    >>> from runtime.native import NativeModel
    >>> builder = ModelBuilder()
    >>> x = builder.add_input((1, 4))
    >>> builder.set_outputs([builder.add_op("CLIP", [x], out_min=0.0)])
    >>> model = NativeModel(builder.to_bytes(), threads=1)           # doctest: +SKIP (needs make native)
    >>> model.run(np.array([[-1.0, 0.5, 2.0, -3.0]], np.float32))    # doctest: +SKIP
    array([[0. , 0.5, 2. , 0. ]], dtype=float32)

The library is ``EDGEBNN_NATIVE_LIB`` when set, else ``build/<machine>/libedgebnn.so`` next to this
file (``make native`` builds it), else ``libedgebnn.so`` next to this file (the layout of the worker
folder shipped to a device). A missing library is a ``BenchError`` (exit code 2) that says to run
``make native``. The C API is ``include/edgebnn.h``; the engine and its kernels are described in
docs/native-runtime.md.

``NativeModel(source, threads=1, kernel=None, verify_checksum=True, profile=False)``:
``source`` is the ``.ebnn`` bytes or a path; ``kernel`` is ``scalar``/``avx2``/``avx512`` (None: the
environment variable ``EDGEBNN_NATIVE_KERNEL``, else the best the CPU has). ``run(x)`` takes NHWC
float32 of shape ``input_shapes[0]`` with any batch size in place of the leading 1 (or one sample
without it) and returns the output batch. ``set_input``/``invoke``/``output`` are the bare calls
a timing loop measures (one sample, no copies beyond the input's).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import BenchError

HERE = Path(__file__).resolve().parent
LIBRARY_NAME = "libedgebnn.so"
ENV_LIBRARY = "EDGEBNN_NATIVE_LIB"
ENV_KERNEL = "EDGEBNN_NATIVE_KERNEL"
MAX_RANK = 4
LOAD_NO_CHECKSUM, LOAD_IN_PLACE, LOAD_PROFILE = 1, 2, 4


class _Error(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("message", ctypes.c_char * 512)]


class _LoadOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("threads", ctypes.c_int),
        ("kernel", ctypes.c_char_p),
        ("max_memory", ctypes.c_uint64),
    ]


class _OpInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_char_p),
        ("name", ctypes.c_char_p),
        ("time_ns", ctypes.c_uint64),
        ("calls", ctypes.c_uint64),
        ("binary_macs", ctypes.c_uint64),
        ("flops", ctypes.c_uint64),
    ]


@dataclass(frozen=True)
class OpProfile:
    """One op of a profiled model: total time over ``calls`` runs since the last reset."""

    index: int
    type: str
    name: str
    total_ms: float
    calls: int
    binary_macs: int  # per call
    flops: int  # per call

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0


def library_candidates() -> list[Path]:
    """Where the library is looked for, in order."""
    if os.environ.get(ENV_LIBRARY):
        return [Path(os.environ[ENV_LIBRARY])]
    return [HERE / "build" / platform.machine() / LIBRARY_NAME, HERE / LIBRARY_NAME]


def library_path() -> Path:
    """The library this process would load; BenchError (exit 2) when it is not built."""
    candidates = library_candidates()
    for path in candidates:
        if path.is_file():
            return path
    if os.environ.get(ENV_LIBRARY):
        raise BenchError(f"{ENV_LIBRARY}={candidates[0]} does not exist")
    raise BenchError(
        f"the native runtime library is not built (looked for {candidates[0]}): run `make native` "
        "(needs gcc and make: apt-get install gcc make)"
    )


_LIBRARY: ctypes.CDLL | None = None
_LIBRARY_FILE: Path | None = None


def _declare(lib: ctypes.CDLL) -> None:
    c = ctypes
    model_p, size_t = c.c_void_p, c.c_size_t
    signatures = {
        "ebnn_load_options_init": (None, [c.POINTER(_LoadOptions)]),
        "ebnn_model_load_memory": (
            c.c_int,
            [c.c_void_p, size_t, c.POINTER(_LoadOptions), c.POINTER(model_p), c.POINTER(_Error)],
        ),
        "ebnn_model_load_file": (
            c.c_int,
            [c.c_char_p, c.POINTER(_LoadOptions), c.POINTER(model_p), c.POINTER(_Error)],
        ),
        "ebnn_model_free": (None, [model_p]),
        "ebnn_model_last_error": (c.c_char_p, [model_p]),
        "ebnn_model_num_inputs": (size_t, [model_p]),
        "ebnn_model_num_outputs": (size_t, [model_p]),
        "ebnn_model_input_shape": (c.c_int, [model_p, size_t, c.POINTER(c.c_uint32), c.POINTER(size_t)]),
        "ebnn_model_output_shape": (c.c_int, [model_p, size_t, c.POINTER(c.c_uint32), c.POINTER(size_t)]),
        "ebnn_model_input_size": (size_t, [model_p, size_t]),
        "ebnn_model_output_size": (size_t, [model_p, size_t]),
        "ebnn_model_run": (c.c_int, [model_p, size_t, c.POINTER(c.c_void_p), c.POINTER(c.c_void_p)]),
        "ebnn_model_input_buffer": (c.c_void_p, [model_p, size_t]),
        "ebnn_model_output_buffer": (c.c_void_p, [model_p, size_t]),
        "ebnn_model_invoke": (c.c_int, [model_p]),
        "ebnn_model_set_threads": (c.c_int, [model_p, c.c_int]),
        "ebnn_model_threads": (c.c_int, [model_p]),
        "ebnn_model_set_kernel": (c.c_int, [model_p, c.c_char_p]),
        "ebnn_model_kernel": (c.c_char_p, [model_p]),
        "ebnn_model_metadata": (c.c_void_p, [model_p, c.POINTER(size_t)]),
        "ebnn_model_num_ops": (size_t, [model_p]),
        "ebnn_model_op_info": (c.c_int, [model_p, size_t, c.POINTER(_OpInfo)]),
        "ebnn_model_set_profiling": (None, [model_p, c.c_int]),
        "ebnn_model_reset_profile": (None, [model_p]),
        "ebnn_model_memory": (c.c_uint64, [model_p]),
        "ebnn_version": (c.c_char_p, []),
        "ebnn_cpu_features": (size_t, [c.c_char_p, size_t]),
        "ebnn_available_kernels": (size_t, [c.c_char_p, size_t]),
        "ebnn_status_name": (c.c_char_p, [c.c_int]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes


def load_library() -> ctypes.CDLL:
    """The loaded library (once per process); BenchError when it is missing or unusable."""
    global _LIBRARY, _LIBRARY_FILE
    path = library_path()
    if _LIBRARY is not None and path == _LIBRARY_FILE:
        return _LIBRARY
    try:
        lib = ctypes.CDLL(str(path))
        _declare(lib)
    except (OSError, AttributeError) as error:
        raise BenchError(
            f"cannot load the native runtime {path}: {error} (built for another architecture? run `make native`)"
        ) from None
    _LIBRARY, _LIBRARY_FILE = lib, path
    return lib


def _string(function, size: int = 512) -> str:
    buffer = ctypes.create_string_buffer(size)
    function(buffer, size)
    return buffer.value.decode()


def version() -> str:
    return load_library().ebnn_version().decode()


def cpu_features() -> list[str]:
    """CPU features the library detected (cpuid + xgetbv), e.g. ``['popcnt', 'avx2', ...]``."""
    return _string(load_library().ebnn_cpu_features).split()


def available_kernels() -> list[str]:
    """Kernel sets usable on this CPU, best first (``['avx512', 'avx2', 'scalar']``)."""
    return _string(load_library().ebnn_available_kernels).split()


class NativeModel:
    """One loaded ``.ebnn`` model with its own thread pool (see the module docstring)."""

    def __init__(
        self,
        source: bytes | bytearray | memoryview | str | os.PathLike,
        threads: int = 1,
        kernel: str | None = None,
        verify_checksum: bool = True,
        profile: bool = False,
        max_memory: int = 0,
    ) -> None:
        self._lib = load_library()
        self._handle = ctypes.c_void_p()
        options = _LoadOptions()
        self._lib.ebnn_load_options_init(ctypes.byref(options))
        options.threads = int(threads)
        options.kernel = kernel.encode() if kernel else None
        options.flags = (0 if verify_checksum else LOAD_NO_CHECKSUM) | (LOAD_PROFILE if profile else 0)
        options.max_memory = int(max_memory)
        error = _Error()
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
            status = self._lib.ebnn_model_load_memory(
                data, len(data), ctypes.byref(options), ctypes.byref(self._handle), ctypes.byref(error)
            )
            label = "native model"
        else:
            label = str(source)
            status = self._lib.ebnn_model_load_file(
                os.fsencode(source), ctypes.byref(options), ctypes.byref(self._handle), ctypes.byref(error)
            )
        if status != 0:
            self._handle = ctypes.c_void_p()
            message = error.message.decode(errors="replace")
            raise BenchError(message if label != "native model" else f"native model: {message}")
        self.input_shapes = [
            self._shape(i, output=False) for i in range(self._lib.ebnn_model_num_inputs(self._handle))
        ]
        self.output_shapes = [
            self._shape(i, output=True) for i in range(self._lib.ebnn_model_num_outputs(self._handle))
        ]

    # --- lifecycle

    def close(self) -> None:
        if getattr(self, "_handle", None) and self._handle.value:
            self._lib.ebnn_model_free(self._handle)
        self._handle = ctypes.c_void_p()

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> NativeModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self, status: int) -> None:
        if status != 0:
            raise BenchError(f"native runtime: {self._lib.ebnn_model_last_error(self._handle).decode()}")

    @property
    def _live(self) -> ctypes.c_void_p:
        if not self._handle.value:
            raise BenchError("native model is closed")
        return self._handle

    # --- shapes, settings, metadata

    def _shape(self, index: int, output: bool) -> tuple[int, ...]:
        dims = (ctypes.c_uint32 * MAX_RANK)()
        rank = ctypes.c_size_t()
        function = self._lib.ebnn_model_output_shape if output else self._lib.ebnn_model_input_shape
        self._check(function(self._handle, index, dims, ctypes.byref(rank)))
        return tuple(int(d) for d in dims[: rank.value])

    @property
    def threads(self) -> int:
        return int(self._lib.ebnn_model_threads(self._live))

    @threads.setter
    def threads(self, value: int) -> None:
        self._check(self._lib.ebnn_model_set_threads(self._live, int(value)))

    @property
    def kernel(self) -> str:
        """The kernel set in use (``scalar``, ``avx2``, ``avx512``)."""
        return self._lib.ebnn_model_kernel(self._live).decode()

    @kernel.setter
    def kernel(self, name: str) -> None:
        self._check(self._lib.ebnn_model_set_kernel(self._live, name.encode()))

    @property
    def metadata(self) -> dict:
        """The file's deploy metadata JSON as a dict ({} when absent)."""
        size = ctypes.c_size_t()
        pointer = self._lib.ebnn_model_metadata(self._live, ctypes.byref(size))
        if not size.value:
            return {}
        return json.loads(ctypes.string_at(pointer, size.value).decode())

    @property
    def memory_bytes(self) -> int:
        """Activations + scratch + packed weights held by the model."""
        return int(self._lib.ebnn_model_memory(self._live))

    # --- running

    def run(self, *inputs: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Outputs for a batch of NHWC float32 inputs (one array per graph input)."""
        if len(inputs) != len(self.input_shapes):
            raise BenchError(f"native model takes {len(self.input_shapes)} input(s), got {len(inputs)}")
        arrays, batch = [], None
        for array, shape in zip(inputs, self.input_shapes, strict=True):
            array = np.ascontiguousarray(array, dtype=np.float32)
            if array.shape == shape[1:]:
                array = array[None]
            if array.ndim != len(shape) or array.shape[1:] != shape[1:]:
                raise BenchError(
                    f"native model input must have shape [N, {', '.join(map(str, shape[1:]))}] (NHWC), "
                    f"got {list(array.shape)}"
                )
            if batch is not None and array.shape[0] != batch:
                raise BenchError("native model inputs need the same batch size")
            batch = array.shape[0]
            arrays.append(array)
        outputs = [np.empty((batch, *shape[1:]), dtype=np.float32) for shape in self.output_shapes]
        in_pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
        out_pointers = (ctypes.c_void_p * len(outputs))(*[o.ctypes.data for o in outputs])
        self._check(self._lib.ebnn_model_run(self._live, batch, in_pointers, out_pointers))
        return outputs[0] if len(outputs) == 1 else outputs

    def set_input(self, array: np.ndarray, index: int = 0) -> None:
        """Copy one sample into the model's input buffer (for timing loops: then ``invoke``)."""
        shape = self.input_shapes[index]
        array = np.ascontiguousarray(array, dtype=np.float32).reshape(shape)
        ctypes.memmove(self._lib.ebnn_model_input_buffer(self._live, index), array.ctypes.data, array.nbytes)

    def invoke(self) -> None:
        self._check(self._lib.ebnn_model_invoke(self._live))

    def output(self, index: int = 0) -> np.ndarray:
        """A copy of one output after ``invoke``."""
        shape = self.output_shapes[index]
        count = int(np.prod(shape))
        pointer = self._lib.ebnn_model_output_buffer(self._live, index)
        return np.ctypeslib.as_array((ctypes.c_float * count).from_address(pointer)).reshape(shape).copy()

    # --- profile

    def set_profiling(self, enabled: bool) -> None:
        self._lib.ebnn_model_set_profiling(self._live, int(bool(enabled)))

    def reset_profile(self) -> None:
        self._lib.ebnn_model_reset_profile(self._live)

    def profile(self) -> list[OpProfile]:
        """Per-op times since the last reset (enable with ``profile=True`` or ``set_profiling``)."""
        rows = []
        for index in range(self._lib.ebnn_model_num_ops(self._live)):
            info = _OpInfo()
            self._check(self._lib.ebnn_model_op_info(self._live, index, ctypes.byref(info)))
            rows.append(
                OpProfile(
                    index,
                    info.type.decode(),
                    info.name.decode(errors="replace"),
                    info.time_ns / 1e6,
                    int(info.calls),
                    int(info.binary_macs),
                    int(info.flops),
                )
            )
        return rows
