"""``convert(onnx_model) -> bytes``: an ONNX BNN as a Larq Compute Engine, stock TFLite or native model.

    >>> from converter import convert
    >>> flatbuffer = convert("model.onnx", input_shape=(1, 28, 28))  # doctest: +SKIP
    >>> open("model.tflite", "wb").write(flatbuffer)  # doctest: +SKIP

Targets:
- ``"lce"``: LCE's converter; binary convolutions become ``LceBconv2d`` (needs LCE >= 0.16 to run).
- ``"tflite"``: the stock TFLite converter, everything float (``int8=True``: full-integer
  quantisation calibrated on ``calibration``, NCHW float32 samples normalised like the model input).
- ``"native"``: edgebnn's own ``.ebnn`` file for the native runtime (``converter.native``: the same
  analysed graph, no TensorFlow); ``Conversion.flatbuffer`` then holds the ``.ebnn`` bytes.

The .tflite (and .ebnn) input is NHWC (``[N, H, W, C]``, same normalisation as the ONNX input); the output is
the ONNX output. The ONNX model's deploy metadata (``formats.metadata``: normalisation, labels,
accuracy...) becomes the ``edgebnn`` metadata buffer of every .tflite made here (the metadata
section of an .ebnn), so the file says itself how to feed it. The pure core takes and returns objects; reading and writing files is the
CLI's job.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass

import numpy as np

from converter.errors import ConverterError
from converter.graph import GraphInfo, ModelSource, analyze, load_onnx, prepare
from converter.lowering import import_tensorflow, lower, native_stderr_silenced
from converter.native import NativeLowering, lower_native
from formats.metadata import read_onnx
from formats.tflite import write_deploy_metadata

TARGETS = ("lce", "tflite", "native")


@dataclass
class Conversion:
    """A converted model plus what the converter decided for every convolution."""

    flatbuffer: bytes  # the model file's bytes: .tflite, or .ebnn for target "native"
    target: str
    int8: bool
    info: GraphInfo  # the prepared ONNX graph and its Conv decisions (LCE's)
    input_shape: list[int]  # NCHW, as in the ONNX model
    native: NativeLowering | None = None  # target "native": its own decisions

    @property
    def binary_convs(self) -> list[str]:
        if self.native is not None:
            return list(self.native.binary_convs)
        return [conv.node.name or name for name, conv in self.info.convs.items() if conv.binary]

    @property
    def float_binary_convs(self) -> dict[str, str]:
        """Layers the model meant as binary (binarized input) that are float here, with the reason."""
        if self.native is not None:
            return dict(self.native.float_binary_convs)
        return {
            conv.node.name or name: conv.reason
            for name, conv in self.info.convs.items()
            if conv.binarized_input and not conv.binary
        }


def convert(
    onnx_model: ModelSource,
    *,
    target: str = "lce",
    int8: bool = False,
    calibration: np.ndarray | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> bytes:
    """The flatbuffer of ``onnx_model`` for ``target`` (see the module docstring)."""
    return convert_with_report(
        onnx_model, target=target, int8=int8, calibration=calibration, input_shape=input_shape
    ).flatbuffer


def convert_with_report(
    onnx_model: ModelSource,
    *,
    target: str = "lce",
    int8: bool = False,
    calibration: np.ndarray | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Conversion:
    """Like ``convert`` but also returns the per-layer decisions used by the audit."""
    if target not in TARGETS:
        raise ConverterError(f"unknown target '{target}'; choose one of: {', '.join(TARGETS)}")
    if int8 and target != "tflite":
        raise ConverterError(
            "int8 quantisation is only available with target 'tflite' (LCE and native keep float I/O)"
        )
    if int8 and (calibration is None or len(calibration) == 0):
        raise ConverterError("int8 quantisation needs calibration data (--calibration-data)")
    source = load_onnx(onnx_model)
    meta = read_onnx(source)
    model = prepare(source, input_shape)
    info = analyze(model)
    shape = info.shapes[model.graph.input[0].name]
    if target == "native":  # no TensorFlow: the analysed graph straight into formats.ebnn ops
        lowered = lower_native(info, meta)
        return Conversion(lowered.data, target, False, info, shape, native=lowered)
    with native_stderr_silenced():  # TensorFlow probes for GPUs when it first builds a graph
        _module, function = lower(info)
    if target == "lce":
        flatbuffer = _convert_lce(_module, function)
    else:
        flatbuffer = _convert_tflite(_module, function, int8, calibration, shape)
    return Conversion(write_deploy_metadata(bytes(flatbuffer), meta), target, int8, info, shape)


@contextlib.contextmanager
def _quiet():
    """Silence the converters' progress chatter (Python's and the C++ logs)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        with native_stderr_silenced():
            yield


def _convert_lce(module, function) -> bytes:
    tf = import_tensorflow()
    from larq_compute_engine import convert_saved_model

    with tempfile.TemporaryDirectory(prefix="edgebnn-savedmodel-") as folder, _quiet():
        tf.saved_model.save(module, folder, signatures=function)
        return convert_saved_model(folder)


def _convert_tflite(module, function, int8: bool, calibration: np.ndarray | None, shape: list[int]) -> bytes:
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    if int8:
        samples = np.asarray(calibration, dtype=np.float32)
        if samples.ndim != len(shape) or list(samples.shape[1:]) != shape[1:]:
            raise ConverterError(
                f"calibration data of shape {list(samples.shape)} does not match the model input "
                f"[N, {', '.join(map(str, shape[1:]))}]"
            )
        if samples.ndim == 4:
            samples = samples.transpose(0, 2, 3, 1)
        batch = shape[0]

        def representative_dataset():
            for start in range(0, len(samples) - batch + 1, batch):
                yield [samples[start : start + batch]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with _quiet():
        return converter.convert()
