"""Does a candidate model compute what its reference computes? The same inputs through both.

``verify(reference, candidate, inputs, labels=None)`` runs NCHW float32 ``inputs`` through two
model files (or their bytes): an ``.onnx`` in ONNX Runtime, a ``.tflite`` in the LCE interpreter
(which runs stock TFLite ops too; LiteRT where LCE is not installed), a native ``.ebnn`` in the
native runtime. ``candidate_runtime="native"`` runs a candidate .tflite in the native runtime too
(translated on load). A .tflite or .ebnn takes the same inputs transposed to NHWC, as the
converter makes it. Both run through ``runtime.engines``, so
verification never imports TensorFlow. A tiny ONNX model checked against itself:

    >>> import numpy as np
    >>> from onnx import TensorProto, helper
    >>> from runtime.verify import verify
    >>> info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("x", "y")]
    >>> graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "neg", info[:1], info[1:])
    >>> neg = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 18)])
    >>> inputs = np.random.default_rng(0).standard_normal((8, 3), dtype=np.float32)
    >>> result = verify(neg.SerializeToString(), neg.SerializeToString(), inputs, labels=np.zeros(8, np.int64))
    >>> result.passed, result.agreement, result.max_abs_diff
    (True, 1.0, 0.0)
    >>> result.describe()[:40]
    'verify PASS: 8 samples, top-1 agreement '

Pass criteria: top-1 agreement >= ``min_agreement`` and mean |difference| <= ``rtol`` times the
logit scale (the standard deviation of the reference logits). The maximum difference is reported,
not judged: one activation that lands exactly on a binarizer's threshold flips one sign. With
``labels`` the top-1 accuracy of each model is measured too.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import numpy as np

from formats.tflite import read_tflite
from runtime import engines
from runtime.errors import BenchError

DEFAULT_MIN_AGREEMENT = 0.999
DEFAULT_RTOL = 1e-3  # mean |diff| relative to the logit scale (float and LCE targets)
INT8_MIN_AGREEMENT = 0.95
INT8_RTOL = 0.1

ModelSource = str | os.PathLike | bytes  # or anything with SerializeToString() (an onnx.ModelProto)


@dataclass(frozen=True)
class VerifyResult:
    samples: int
    agreement: float  # fraction of samples whose top-1 class matches
    max_abs_diff: float
    mean_abs_diff: float
    logit_scale: float  # standard deviation of the reference logits
    min_agreement: float
    rtol: float
    reference_accuracy: float | None = None  # top-1 accuracy on the labels, when given
    candidate_accuracy: float | None = None

    @property
    def relative_max_diff(self) -> float:
        return self.max_abs_diff / self.logit_scale

    @property
    def relative_mean_diff(self) -> float:
        return self.mean_abs_diff / self.logit_scale

    @property
    def passed(self) -> bool:
        return self.agreement >= self.min_agreement and self.relative_mean_diff <= self.rtol

    def describe(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        text = (
            f"verify {verdict}: {self.samples} samples, top-1 agreement {self.agreement:.2%} "
            f"(need >= {self.min_agreement:.2%}), max |diff| {self.max_abs_diff:.3g}, "
            f"mean |diff| {self.mean_abs_diff:.3g} = {self.relative_mean_diff:.2e} of the logit scale "
            f"{self.logit_scale:.3g} (need <= {self.rtol:g})"
        )
        if self.reference_accuracy is not None and self.candidate_accuracy is not None:
            text += f"; accuracy {self.reference_accuracy:.2%} (reference), {self.candidate_accuracy:.2%} (candidate)"
        return text


def _bytes_of(model: ModelSource) -> tuple[bytes, str]:
    if hasattr(model, "SerializeToString"):
        return model.SerializeToString(), "ONNX model"
    return engines.read_model(model)


def _with_input_sizes(content: bytes, shape: tuple[int, ...]) -> bytes:
    """An ONNX model with dynamic non-batch input sizes set to those of ``shape`` (the graph unchanged)."""
    import onnx

    model = onnx.load_model_from_string(content)
    initializers = {init.name for init in model.graph.initializer}
    (value,) = [v for v in model.graph.input if v.name not in initializers][:1] or [None]
    if value is None:
        return content
    dims = value.type.tensor_type.shape.dim
    if all(dim.HasField("dim_value") for dim in dims[1:]):
        return content
    for dim, size in zip(dims[1:], shape[1:], strict=False):
        dim.dim_value = int(size)
    return model.SerializeToString()


def tflite_runtime() -> str:
    """The runtime that runs a .tflite here: the LCE interpreter if installed (it runs every op)."""
    return "lce" if importlib.util.find_spec("larq_compute_engine") else "litert"


def _batched(engine: engines.Engine, inputs: np.ndarray) -> np.ndarray:
    """Run ``inputs`` in the engine's batch size (the last batch padded with zeros, then cut)."""
    batch = len(inputs) if engine.batch_dynamic else engine.input_shape[0]
    outputs = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        missing = batch - len(chunk)
        if missing:
            chunk = np.concatenate([chunk, np.zeros((missing, *chunk.shape[1:]), chunk.dtype)])
        output = np.asarray(engine.predict(chunk))
        outputs.append(output[: batch - missing])
    return np.concatenate(outputs).reshape(len(inputs), -1)


def run_model(model: ModelSource, inputs: np.ndarray, runtime: str = "auto") -> np.ndarray:
    """The outputs ``[N, -1]`` of a model for NCHW float32 ``inputs`` (NHWC for a .tflite/.ebnn, inside).

    ``runtime``: "auto" (ONNX Runtime, LCE or LiteRT, native for .ebnn) or the runtime of a .tflite
    ("lce", "litert", "native").
    """
    content, name = _bytes_of(model)
    kind = engines.model_kind(content, name)
    if kind == "onnx":
        engine = engines.load_engine(_with_input_sizes(content, inputs.shape), "onnxruntime")
        return _batched(engine, inputs)
    if kind == "ebnn" or runtime == "native":
        engine = engines.load_engine(content, "native", threads=1)
    else:
        # A clear error naming the file for a corrupt one, before the interpreter sees it.
        read_tflite(content, label=name)
        engine = engines.load_engine(content, tflite_runtime() if runtime == "auto" else runtime, threads=1,
                                     xnnpack=False)  # fmt: skip
    if inputs.ndim == 4:
        inputs = np.ascontiguousarray(inputs.transpose(0, 2, 3, 1))
    if tuple(inputs.shape[1:]) != engine.input_shape[1:]:
        layout = " (NHWC)" if inputs.ndim == 4 else ""
        raise BenchError(
            f"inputs of shape {list(inputs.shape[1:])}{layout} do not fit the input "
            f"{list(engine.input_shape)} of {name}"
        )
    return _batched(engine, inputs)


def _accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    return None if labels is None else float(np.mean(logits.argmax(axis=1) == labels))


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    rtol: float = DEFAULT_RTOL,
) -> VerifyResult:
    """The agreement and differences of two logit arrays of shape [N, classes]."""
    difference = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    return VerifyResult(
        samples=len(reference),
        agreement=float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1))),
        max_abs_diff=float(difference.max()),
        mean_abs_diff=float(difference.mean()),
        logit_scale=float(reference.std()) or 1.0,
        min_agreement=min_agreement,
        rtol=rtol,
        reference_accuracy=_accuracy(reference, labels),
        candidate_accuracy=_accuracy(candidate, labels),
    )


def verify(
    reference: ModelSource,
    candidate: ModelSource,
    inputs: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    rtol: float = DEFAULT_RTOL,
    candidate_runtime: str = "auto",
) -> VerifyResult:
    """Compare ``candidate`` with ``reference`` on NCHW float32 ``inputs`` (see the module docstring)."""
    if not 0.0 <= min_agreement <= 1.0:
        raise BenchError(f"min_agreement must be in [0, 1], got {min_agreement}", parameter="min_agreement")
    if rtol < 0:
        raise BenchError(f"rtol must be >= 0, got {rtol}", parameter="rtol")
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    if inputs.ndim < 2 or len(inputs) == 0:
        raise BenchError(f"inputs must be a batch [N, ...] with N >= 1, got shape {list(inputs.shape)}",
                         parameter="inputs")  # fmt: skip
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(inputs),):
            raise BenchError(f"labels must have one entry per input ({len(inputs)}), got shape "
                             f"{list(labels.shape)}", parameter="labels")  # fmt: skip
    reference_out = run_model(reference, inputs)
    candidate_out = run_model(candidate, inputs, candidate_runtime)
    if reference_out.shape != candidate_out.shape:
        raise BenchError(
            f"the reference gives outputs of shape {list(reference_out.shape)}, the candidate "
            f"{list(candidate_out.shape)}: they are not the same network"
        )
    return compare(reference_out, candidate_out, labels, min_agreement=min_agreement, rtol=rtol)
