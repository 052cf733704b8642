"""Check a converted model against its ONNX source: same inputs through ONNX Runtime and LCE.

Both run through ``runtime.engines`` (the LCE interpreter is loaded from its compiled module, so
verification never imports TensorFlow).

    >>> import numpy as np
    >>> from converter.verify import verify
    >>> inputs = np.random.default_rng(0).standard_normal((64, 1, 28, 28), dtype=np.float32)
    >>> result = verify("model.onnx", open("model.tflite", "rb").read(), inputs)  # doctest: +SKIP
    >>> result.passed, result.agreement, result.relative_max_diff  # doctest: +SKIP
    (True, 1.0, 3.1e-07)

Pass criteria: top-1 agreement >= ``min_agreement`` and mean |difference| <= ``rtol`` times the
logit scale (the standard deviation of the reference logits). The maximum difference is reported,
not judged: one activation that lands exactly on a binarizer's threshold flips one sign.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx

from converter.errors import ConverterError
from converter.graph import ModelSource, graph_input, load_onnx

DEFAULT_MIN_AGREEMENT = 0.999
DEFAULT_RTOL = 1e-3  # mean |diff| relative to the logit scale (float and LCE targets)
INT8_MIN_AGREEMENT = 0.95
INT8_RTOL = 0.1


@dataclass(frozen=True)
class VerifyResult:
    samples: int
    agreement: float  # fraction of samples whose top-1 class matches
    max_abs_diff: float
    mean_abs_diff: float
    logit_scale: float  # standard deviation of the reference (ONNX Runtime) logits
    min_agreement: float
    rtol: float

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
        return (
            f"verify {verdict}: {self.samples} samples, top-1 agreement {self.agreement:.2%} "
            f"(need >= {self.min_agreement:.2%}), max |diff| {self.max_abs_diff:.3g}, "
            f"mean |diff| {self.mean_abs_diff:.3g} = {self.relative_mean_diff:.2e} of the logit scale "
            f"{self.logit_scale:.3g} (need <= {self.rtol:g})"
        )


def _batched(engine, inputs: np.ndarray) -> np.ndarray:
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


def run_onnx(onnx_model: onnx.ModelProto, inputs: np.ndarray) -> np.ndarray:
    from runtime.engines import load_engine

    return _batched(
        load_engine(_with_input_sizes(onnx_model, inputs.shape).SerializeToString(), "onnxruntime"), inputs
    )


def _with_input_sizes(model: onnx.ModelProto, shape: tuple[int, ...]) -> onnx.ModelProto:
    """The model with dynamic non-batch input sizes set to those of ``shape`` (the graph unchanged)."""
    dims = graph_input(model).type.tensor_type.shape.dim
    if all(dim.HasField("dim_value") for dim in dims[1:]):
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for dim, size in zip(graph_input(fixed).type.tensor_type.shape.dim[1:], shape[1:], strict=False):
        dim.dim_value = int(size)
    return fixed


def run_tflite(tflite: bytes, inputs: np.ndarray, input_is_nchw: bool = True) -> np.ndarray:
    """Run NCHW ``inputs`` through a converted model (whose input is NHWC) in the LCE interpreter."""
    from runtime.engines import LceEngine

    engine = LceEngine(tflite, threads=1, kernel="default", xnnpack=False)
    if input_is_nchw and inputs.ndim == 4:
        inputs = np.ascontiguousarray(inputs.transpose(0, 2, 3, 1))
    if tuple(inputs.shape[1:]) != engine.input_shape[1:]:
        raise ConverterError(
            f"inputs of shape {list(inputs.shape[1:])} (NHWC) do not fit the .tflite input "
            f"{list(engine.input_shape)}"
        )
    return _batched(engine, inputs)


def compare(reference: np.ndarray, candidate: np.ndarray, min_agreement: float, rtol: float) -> VerifyResult:
    """The agreement and differences of two logit arrays of shape [N, classes]."""
    difference = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    scale = float(reference.std()) or 1.0
    agreement = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    return VerifyResult(
        samples=len(reference),
        agreement=agreement,
        max_abs_diff=float(difference.max()),
        mean_abs_diff=float(difference.mean()),
        logit_scale=scale,
        min_agreement=min_agreement,
        rtol=rtol,
    )


def verify(
    onnx_model: ModelSource,
    tflite: bytes | str | os.PathLike,
    inputs: np.ndarray,
    *,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    rtol: float = DEFAULT_RTOL,
) -> VerifyResult:
    """Compare ONNX Runtime on ``onnx_model`` with LCE on ``tflite`` for NCHW float32 ``inputs``."""
    from converter.tflite_file import load_bytes, read_tflite

    model = load_onnx(onnx_model)
    read_tflite(tflite)  # a clear error (naming the file) for a corrupt one before the interpreter sees it
    tflite_bytes, _ = load_bytes(tflite)
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    if inputs.ndim < 2 or len(inputs) == 0:
        raise ConverterError(f"verification needs a batch of inputs, got shape {list(inputs.shape)}")
    reference = run_onnx(model, inputs)
    candidate = run_tflite(tflite_bytes, inputs)
    if reference.shape != candidate.shape:
        raise ConverterError(
            f"the ONNX model gives outputs of shape {list(reference.shape)}, the .tflite model "
            f"{list(candidate.shape)}: they are not the same network"
        )
    return compare(reference, candidate, min_agreement, rtol)
