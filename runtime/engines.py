"""Inference engines behind one small interface: LCE, LiteRT, ONNX Runtime and edgebnn's native runtime.

An engine wraps one loaded model. ``predict`` is for correctness checks (``runtime.verify``);
``set_input`` + ``invoke`` is the bare call a timing loop measures. A tiny ONNX model built here:

    >>> import numpy as np
    >>> from onnx import TensorProto, helper
    >>> from runtime.engines import detect_runtime, load_engine
    >>> x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    >>> y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    >>> graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x_info], [y_info])
    >>> model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18)])
    >>> relu = model.SerializeToString()
    >>> detect_runtime(relu)                      # .tflite: "lce" with LCE ops inside, else "litert"
    'onnxruntime'
    >>> engine = load_engine(relu, threads=1)
    >>> engine.predict(np.array([[-1.0, 0.0, 2.0, -3.0]], np.float32))
    array([[0., 0., 2., 0.]], dtype=float32)
    >>> engine.set_input(np.ones((1, 4), np.float32)); engine.invoke()   # what the worker times
    >>> engine.output()
    array([[1., 1., 1., 1.]], dtype=float32)

Runtimes (registry ``RUNTIMES``; ``RUNTIMES_FOR_KIND`` says which runs which kind of file):

- ``lce``: the Larq Compute Engine interpreter (TFLite + LCE binary ops). Its compiled module
  ``interpreter_wrapper_lite`` is loaded on its own, because importing the ``larq_compute_engine``
  package imports TensorFlow (~600 MB). Its only call is ``predict`` (copy in, invoke, copy out),
  so ``invoke`` includes those two copies.
- ``litert``: Google's LiteRT (``ai_edge_litert``), stock TFLite kernels; refuses LCE ops.
- ``onnxruntime``: ONNX Runtime's CPU provider; ``invoke`` runs a pre-bound IOBinding.
- ``native``: edgebnn's own engine (``runtime.native``, the C library ``libedgebnn``) for ``.ebnn``
  files; a ``.tflite`` (LCE or stock float32) is translated on load (``runtime.translate``).
  ``native_kernel`` picks its kernel set (``auto``: ``EDGEBNN_NATIVE_KERNEL``, else the best the
  CPU has; ``scalar``, ``avx2``, ``avx512``); ``Engine.kernel`` is the set in use. ``invoke`` is
  the library's zero-copy invoke on the model's own input buffer.

This file needs only the standard library, numpy and the ``runtime``/``formats`` modules the
benchmark worker ships with it (``runtime.worker.WORKER_FILES``), so that it runs on a device
without the rest of edgebnn. Files are sniffed by ``formats.kinds`` and .tflite op codes read by
``formats.tflite``; on a device whose TFLite runtime came without ``ai_edge_litert``'s schema code
(or without ``flatbuffers``), ``needs_lce`` looks for LCE's op names in the bytes instead.
"""

from __future__ import annotations

import glob
import importlib.machinery
import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from formats import kinds, tflite
from formats.errors import FormatError
from runtime.errors import BenchError

RUNTIMES = ("lce", "litert", "onnxruntime", "native")
RUNTIMES_FOR_KIND = {"tflite": ("lce", "litert", "native"), "onnx": ("onnxruntime",), "ebnn": ("native",)}
LCE_KERNELS = ("default", "indirect", "reference")
NATIVE_KERNELS = ("auto", "scalar", "avx2", "avx512", "neon")  # neon: aarch64 builds
LCE_OP_PREFIX = "Lce"
LCE_OPS = ("LceQuantize", "LceDequantize", "LceBconv2d", "LceBMaxPool2d")  # for the byte search

Model = str | os.PathLike | bytes


# ---------------------------------------------------------------------------------------------
# Model inspection (pure functions on bytes)


def read_model(model: Model) -> tuple[bytes, str]:
    """Return (content, display name) of a model given as a path or as bytes."""
    if isinstance(model, bytes | bytearray):
        return bytes(model), "<bytes>"
    path = Path(model)
    if not path.is_file():
        raise BenchError(f"model file not found: {path}")
    return path.read_bytes(), str(path)


def model_kind(content: bytes, name: str = "<bytes>") -> str:
    """'tflite', 'onnx' or 'ebnn' (``formats.kinds``); BenchError for any other file."""
    kind = kinds.kind_of_bytes(content[: kinds.HEAD_BYTES])
    if kind in RUNTIMES_FOR_KIND:
        return kind
    found = f"is {kinds.DESCRIPTIONS[kind]}" if kind else "is not a model file"
    raise BenchError(f"{name} {found} (expected a .tflite flatbuffer, an .onnx protobuf or a native .ebnn)")


def check_ebnn(content: bytes, name: str = "<bytes>") -> None:
    """BenchError (one line) for a truncated, corrupt or too new .ebnn file, before any engine sees it."""
    from formats import ebnn

    try:
        ebnn.read(content, source=name)
    except FormatError as error:
        raise BenchError(str(error)) from None


def tflite_custom_ops(content: bytes, name: str = "<bytes>") -> list[str]:
    """Names of the custom operators a .tflite model uses (``formats.tflite.custom_ops``)."""
    try:
        return tflite.custom_ops(content, name)
    except ImportError:  # a device without ai_edge_litert's schema code: look for LCE's op names
        return [op for op in LCE_OPS if op.encode() in content]
    except FormatError:
        raise BenchError(f"{name} is not a valid .tflite flatbuffer (truncated or corrupt)") from None


def needs_lce(content: bytes, name: str = "<bytes>") -> bool:
    return any(op.startswith(LCE_OP_PREFIX) for op in tflite_custom_ops(content, name))


def detect_runtime(model: Model) -> str:
    """The runtime that runs a model: "lce" (LCE ops inside), "litert" (plain .tflite), "onnxruntime",
    or "native" (.ebnn)."""
    content, name = read_model(model)
    return _detect(content, name)


def check_runtime(content: bytes, name: str, runtime: str) -> str:
    """Resolve "auto" and refuse a runtime that cannot run this model. Returns the runtime."""
    if runtime == "auto":
        return _detect(content, name)
    if runtime not in RUNTIMES:
        raise BenchError(f"unknown runtime {runtime!r}; choose one of: auto, {', '.join(RUNTIMES)}")
    kind = model_kind(content, name)
    if kind == "ebnn":
        if runtime != "native":
            raise BenchError(
                f"{name} is a native .ebnn model; runtime {runtime!r} cannot run it (use native)"
            )
        check_ebnn(content, name)
        return runtime
    if kind == "onnx" and runtime != "onnxruntime":
        raise BenchError(f"{name} is an ONNX model; runtime {runtime!r} runs .tflite files (use onnxruntime)")
    if kind == "tflite" and runtime == "onnxruntime":
        raise BenchError(
            f"{name} is a .tflite model; onnxruntime runs .onnx files (use lce, litert or native)"
        )
    if runtime == "litert" and needs_lce(content, name):
        raise BenchError(f"{name}: this model needs the LCE runtime (it has Larq Compute Engine ops)")
    return runtime


def _detect(content: bytes, name: str) -> str:
    kind = model_kind(content, name)
    if kind == "ebnn":
        check_ebnn(content, name)
    if kind == "tflite":
        return "lce" if needs_lce(content, name) else "litert"
    return RUNTIMES_FOR_KIND[kind][0]


def model_size_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk of a model, with the external data files an ONNX model's weights live in."""
    path = Path(path)
    size = path.stat().st_size
    if path.suffix != ".onnx":
        return size
    try:
        import onnx
    except ImportError:  # a device without the onnx package: count a conventional sibling
        sibling = path.with_name(path.name + ".data")
        return size + (sibling.stat().st_size if sibling.is_file() else 0)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not loadable: the runtime will say why
        return size
    locations = {
        entry.value
        for tensor in model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return size + sum(
        (path.parent / loc).stat().st_size for loc in locations if (path.parent / loc).is_file()
    )


def runtime_version(runtime: str) -> str:
    """Installed version of a runtime's package, without importing it (native: the library's own)."""
    if runtime == "native":
        try:
            from runtime import native

            return native.version()
        except BenchError:
            return "not built"
    package = {"lce": "larq-compute-engine", "litert": "ai-edge-litert", "onnxruntime": "onnxruntime"}[
        runtime
    ]
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------------------------------
# Engines


class Engine:
    """One loaded model. Subclasses fill the attributes and implement ``set_input``/``invoke``/``output``."""

    name: str
    version: str
    input_shape: tuple[int, ...]
    input_dtype: np.dtype
    threads: int
    kernel: str | None = None
    xnnpack: bool | None = None
    batch_dynamic: bool = False

    def set_input(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def invoke(self) -> None:
        raise NotImplementedError

    def output(self) -> np.ndarray:
        raise NotImplementedError

    def profile(self) -> list[dict[str, Any]] | None:
        """Per-op times of the runs so far, where the runtime exposes them (None otherwise)."""
        return None

    def reset_profile(self) -> None:
        """Forget the per-op times so far (after the warm-up), where the runtime can."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run a batch. A model with a fixed batch of 1 runs the rows one by one."""
        x = np.asarray(x, dtype=self.input_dtype)
        if tuple(x.shape) == self.input_shape or (
            self.batch_dynamic and tuple(x.shape[1:]) == self.input_shape[1:]
        ):
            self.set_input(x)
            self.invoke()
            return self.output().copy()
        if self.input_shape[0] == 1 and tuple(x.shape[1:]) == self.input_shape[1:]:
            return np.concatenate([self.predict(row[None]) for row in x])
        raise BenchError(f"input of shape {tuple(x.shape)} does not fit the model's input {self.input_shape}")


_RUNTIME_MODULES: dict[str, Any] = {}


def import_runtime(runtime: str) -> Any:
    """Import (once) the Python module of a runtime, so callers can time it apart from model loading."""
    if runtime in _RUNTIME_MODULES:
        return _RUNTIME_MODULES[runtime]
    if runtime == "lce":
        module = _load_lce_wrapper()
    elif runtime == "litert":
        try:
            from ai_edge_litert import interpreter as module
        except ImportError:
            raise BenchError("the litert runtime needs the ai-edge-litert package") from None
    elif runtime == "onnxruntime":
        try:
            import onnxruntime as module
        except ImportError:
            raise BenchError("the onnxruntime runtime needs the onnxruntime package") from None
    elif runtime == "native":
        from runtime import native as module

        module.load_library()  # the ctypes library: BenchError naming `make native` when missing
    else:
        raise BenchError(f"unknown runtime {runtime!r}; choose one of: auto, {', '.join(RUNTIMES)}")
    _RUNTIME_MODULES[runtime] = module
    return module


def _load_lce_wrapper() -> Any:
    """Import LCE's compiled interpreter module without importing the (TensorFlow-importing) package."""
    spec = importlib.util.find_spec("larq_compute_engine")  # locates, does not execute the package
    if spec is None or not spec.submodule_search_locations:
        raise BenchError(
            "the lce runtime needs the larq-compute-engine package (pip install larq-compute-engine)"
        )
    base = spec.submodule_search_locations[0]
    found = glob.glob(os.path.join(base, "tflite", "python", "interpreter_wrapper_lite*.so"))
    if not found:
        raise BenchError(f"larq-compute-engine at {base} has no compiled interpreter_wrapper_lite module")
    loader = importlib.machinery.ExtensionFileLoader("interpreter_wrapper_lite", found[0])
    module_spec = importlib.util.spec_from_file_location("interpreter_wrapper_lite", found[0], loader=loader)
    module = importlib.util.module_from_spec(module_spec)
    loader.exec_module(module)
    return module


class LceEngine(Engine):
    name = "lce"

    def __init__(self, content: bytes, threads: int, kernel: str, xnnpack: bool):
        wrapper = import_runtime("lce")
        try:
            self._interpreter = wrapper.LiteInterpreter(
                content, threads, kernel == "reference", kernel == "indirect", xnnpack
            )
        except Exception as error:  # noqa: BLE001 - the C++ side reports bad models as RuntimeError
            raise BenchError(f"LCE interpreter could not load the model: {error}") from None
        if len(self._interpreter.input_shapes) != 1:
            raise BenchError("only single-input models are supported")
        self.version = runtime_version("lce")
        self.input_shape = tuple(int(d) for d in self._interpreter.input_shapes[0])
        self.input_dtype = np.dtype(self._interpreter.input_types[0])
        self.threads, self.kernel, self.xnnpack = threads, kernel, xnnpack
        self._inputs = [np.zeros(self.input_shape, self.input_dtype)]
        self._outputs: list[np.ndarray] = []

    def set_input(self, x: np.ndarray) -> None:
        self._inputs = [np.ascontiguousarray(x, dtype=self.input_dtype)]

    def invoke(self) -> None:
        self._outputs = self._interpreter.predict(self._inputs)

    def output(self) -> np.ndarray:
        return self._outputs[0]


class LiteRtEngine(Engine):
    name = "litert"

    def __init__(self, content: bytes, threads: int, xnnpack: bool):
        litert = import_runtime("litert")
        resolver = (
            litert.OpResolverType.AUTO if xnnpack else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        try:
            self._interpreter = litert.Interpreter(
                model_content=content, num_threads=threads, experimental_op_resolver_type=resolver
            )
            self._interpreter.allocate_tensors()
        except Exception as error:  # noqa: BLE001
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if "Lce" in str(error):
                raise BenchError(
                    "this model needs the LCE runtime (it has Larq Compute Engine ops)"
                ) from None
            raise BenchError(f"LiteRT could not load the model: {message}") from None
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise BenchError("only single-input models are supported")
        self._input_index = inputs[0]["index"]
        self._output_index = self._interpreter.get_output_details()[0]["index"]
        self.version = runtime_version("litert")
        self.input_shape = tuple(int(d) for d in inputs[0]["shape"])
        self.input_dtype = np.dtype(inputs[0]["dtype"])
        self.threads, self.xnnpack = threads, xnnpack

    def set_input(self, x: np.ndarray) -> None:
        self._interpreter.set_tensor(self._input_index, np.ascontiguousarray(x, dtype=self.input_dtype))

    def invoke(self) -> None:
        self._interpreter.invoke()

    def output(self) -> np.ndarray:
        return self._interpreter.get_tensor(self._output_index)


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
               "tensor(int64)": np.int64}  # fmt: skip


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, content: bytes | str, threads: int, profile_dir: str | None = None):
        """``content``: the model's bytes, or its path (needed when weights live in external data files)."""
        ort = import_runtime("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        if profile_dir:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(profile_dir, "ort_profile")
        try:
            self._session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BenchError(f"ONNX Runtime could not load the model: {message}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BenchError("only single-input models are supported")
        self._input_name = inputs[0].name
        shape = inputs[0].shape
        self.batch_dynamic = not isinstance(shape[0], int)
        if any(not isinstance(d, int) for d in shape[1:]):
            raise BenchError(f"input {self._input_name!r} has dynamic dimensions beyond the batch: {shape}")
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in shape)
        self.input_dtype = np.dtype(_ORT_DTYPES.get(inputs[0].type, np.float32))
        self.version = runtime_version("onnxruntime")
        self.threads = threads
        self._binding = self._session.io_binding()
        self._profiling = bool(profile_dir)
        self.set_input(np.zeros(self.input_shape, self.input_dtype))

    def set_input(self, x: np.ndarray) -> None:
        self._input = np.ascontiguousarray(x, dtype=self.input_dtype)  # keep alive: the binding points at it
        self._binding.clear_binding_inputs()
        self._binding.clear_binding_outputs()
        self._binding.bind_cpu_input(self._input_name, self._input)
        for output in self._session.get_outputs():
            self._binding.bind_output(output.name, "cpu")

    def invoke(self) -> None:
        self._session.run_with_iobinding(self._binding)

    def output(self) -> np.ndarray:
        return self._binding.copy_outputs_to_cpu()[0]

    def profile(self) -> list[dict[str, Any]] | None:
        """Per-node mean times from ONNX Runtime's profiler (chrome-trace JSON)."""
        if not self._profiling:
            return None
        import json

        path = self._session.end_profiling()
        with open(path) as f:
            events = json.load(f)
        os.remove(path)
        return summarize_ort_profile(events)


class NativeEngine(Engine):
    """edgebnn's native runtime (``runtime.native``): an .ebnn, or a .tflite translated on load."""

    name = "native"
    batch_dynamic = True  # the library runs a batch of N as N single samples

    def __init__(self, content: bytes, threads: int, kernel: str = "auto", profile: bool = False):
        from runtime import native
        from runtime.translate import translate_tflite

        if kernel not in NATIVE_KERNELS:
            raise BenchError(f"unknown native kernel {kernel!r}; choose one of: {', '.join(NATIVE_KERNELS)}")
        if model_kind(content) == "tflite":
            content = translate_tflite(content)
        self._model = native.NativeModel(
            content, threads=threads, kernel=None if kernel == "auto" else kernel, profile=profile
        )
        if len(self._model.input_shapes) != 1 or len(self._model.output_shapes) != 1:
            raise BenchError("only single-input, single-output models are supported")
        self.version = native.version()
        self.input_shape = self._model.input_shapes[0]
        self.input_dtype = np.dtype(np.float32)
        self.threads = threads
        self.kernel = self._model.kernel  # the set in use: scalar, avx2 or avx512
        self._profiling = profile

    def set_input(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32)
        if x.shape not in (self.input_shape, self.input_shape[1:]):
            raise BenchError(
                f"input of shape {tuple(x.shape)} does not fit the model's input {self.input_shape} "
                "(the native runtime is timed one sample at a time)"
            )
        self._model.set_input(x)

    def invoke(self) -> None:
        self._model.invoke()

    def output(self) -> np.ndarray:
        return self._model.output()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._model.run(np.asarray(x, dtype=np.float32))

    def reset_profile(self) -> None:
        if self._profiling:
            self._model.reset_profile()

    def profile(self) -> list[dict[str, Any]] | None:
        """Per-op times from the library (``EBNN_LOAD_PROFILE``) since the last reset, slowest first."""
        if not self._profiling:
            return None
        rows = [
            {"op": op.type, "node": op.name or f"op {op.index}", "total_us": 1000 * op.total_ms,
             "count": op.calls, "mean_us": 1000 * op.mean_ms}
            for op in self._model.profile()
        ]  # fmt: skip
        return sorted(rows, key=lambda row: -row["total_us"])


def summarize_ort_profile(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-node totals of ONNX Runtime's kernel events, slowest first."""
    nodes: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        node = event["name"][: -len("_kernel_time")]
        entry = nodes.setdefault(node, {"op": event.get("args", {}).get("op_name", "?"), "node": node,
                                        "total_us": 0, "count": 0})  # fmt: skip
        entry["total_us"] += int(event.get("dur", 0))
        entry["count"] += 1
    for entry in nodes.values():
        entry["mean_us"] = entry["total_us"] / max(entry["count"], 1)
    return sorted(nodes.values(), key=lambda e: -e["total_us"])


def load_engine(
    model: Model,
    runtime: str = "auto",
    threads: int = 1,
    lce_kernel: str = "default",
    xnnpack: bool = True,
    profile_dir: str | None = None,
    native_kernel: str = "auto",
) -> Engine:
    """Load a .tflite, .onnx or .ebnn model (path or bytes) into the runtime that runs it.

    ``runtime="auto"`` picks "lce" for models with LCE ops, "litert" for other .tflite files,
    "onnxruntime" for .onnx and "native" for .ebnn ("native" also runs a .tflite, translated).
    ``lce_kernel`` selects LCE's binary conv kernel (default, indirect BGEMM, or the reference
    loops); ``xnnpack`` toggles TFLite's XNNPACK delegate (lce, litert); ``native_kernel`` the native
    runtime's kernel set. ``profile_dir`` turns on per-op profiling where the runtime has it
    (onnxruntime writes its trace there; native times every op).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BenchError(f"threads must be an integer >= 1, got {threads!r}", parameter="threads")
    if lce_kernel not in LCE_KERNELS:
        raise BenchError(f"unknown LCE kernel {lce_kernel!r}; choose one of: {', '.join(LCE_KERNELS)}")
    content, name = read_model(model)
    runtime = check_runtime(content, name, runtime)
    if runtime == "lce":
        return LceEngine(content, threads, lce_kernel, xnnpack)
    if runtime == "litert":
        return LiteRtEngine(content, threads, xnnpack)
    if runtime == "native":
        return NativeEngine(content, threads, native_kernel, profile=bool(profile_dir))
    # From its path, so that ONNX Runtime finds weights stored in external data files next to it.
    return OnnxRuntimeEngine(name if name != "<bytes>" else content, threads, profile_dir)
