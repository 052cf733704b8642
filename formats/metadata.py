"""Deploy metadata: what a deployed model says about itself, in every file format edgebnn writes.

    >>> from formats.metadata import DeployMetadata
    >>> meta = DeployMetadata(model="fmnist-bnn", input_shape=(1, 28, 28), mean=(0.286,), std=(0.353,),
    ...                       labels=("T-shirt/top", "Trouser"), binarizer="lns", accuracy=0.9)
    >>> meta.to_props()["edgebnn.input_shape"]
    '[1, 28, 28]'
    >>> DeployMetadata.from_props(meta.to_props()) == meta
    True
    >>> DeployMetadata.from_json(meta.to_json()).accuracy
    0.9

The keys (CONTRIBUTING.md, "Deploy metadata"), each optional:

=========================  =====================================================================
``edgebnn.model``          zoo model name (a string)
``edgebnn.input_shape``    JSON ``[C, H, W]`` of one input image, in the ONNX (NCHW) order
``edgebnn.normalization``  JSON ``{"mean": [...], "std": [...]}`` per channel, on the [0, 1] pixel scale
``edgebnn.labels``         JSON list of class names
``edgebnn.binarizer``      the weight binarizer the model was trained with (``ste``, ``lns``)
``edgebnn.accuracy``       test top-1 accuracy in [0, 1] (a JSON number), when known
=========================  =====================================================================

Where they live: ONNX ``metadata_props`` (one string per key: plain for strings, JSON otherwise);
a .tflite metadata buffer named ``edgebnn`` and the metadata section of a native ``.ebnn`` model
(both one JSON object with the keys without their ``edgebnn.`` prefix, see ``to_json``).
``read_onnx``/``write_onnx`` here, ``formats.tflite.read_deploy_metadata``/``write_deploy_metadata``
and ``formats.ebnn`` move it in and out of those files (the exporter writes the ONNX entries, the
converter copies them into every .tflite and .ebnn it makes); ``formats.models.read_metadata``
reads it from any model file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from formats.errors import FormatError

PREFIX = "edgebnn."
KEYS = ("model", "input_shape", "normalization", "labels", "binarizer", "accuracy")
TFLITE_BUFFER_NAME = "edgebnn"  # the name of the .tflite metadata entry holding to_json()


@dataclass(frozen=True)
class DeployMetadata:
    """The deploy metadata of one model; every field may be unknown (None)."""

    model: str | None = None
    input_shape: tuple[int, ...] | None = None  # (C, H, W)
    mean: tuple[float, ...] | None = None  # normalisation: (pixel / 255 - mean) / std, per channel
    std: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    binarizer: str | None = None
    accuracy: float | None = None

    def __post_init__(self) -> None:
        _check(self, "metadata")

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)``, or None when the model does not record one."""
        return (self.mean, self.std) if self.mean is not None and self.std is not None else None

    def replace(self, **changes: Any) -> DeployMetadata:
        return dataclasses.replace(self, **changes)

    # --- encodings -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The known keys (without prefix) as JSON-ready values; ``normalization`` as one object."""
        values: dict[str, Any] = {
            "model": self.model,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "normalization": (
                {"mean": list(self.mean), "std": list(self.std)} if self.normalization else None
            ),
            "labels": list(self.labels) if self.labels is not None else None,
            "binarizer": self.binarizer,
            "accuracy": self.accuracy,
        }
        return {key: value for key, value in values.items() if value is not None}

    def to_props(self) -> dict[str, str]:
        """ONNX ``metadata_props``: ``edgebnn.<key>`` -> a plain string, or JSON for other values."""
        return {
            PREFIX + key: value if isinstance(value, str) else json.dumps(value)
            for key, value in self.to_dict().items()
        }

    def to_json(self) -> bytes:
        """One UTF-8 JSON object (the .tflite ``edgebnn`` buffer and the .ebnn metadata section)."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False).encode()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "metadata") -> DeployMetadata:
        """From ``to_dict``'s form; unknown keys are ignored, a malformed value is a FormatError."""
        if not isinstance(values, Mapping):
            raise FormatError(f"{source}: edgebnn metadata must be a JSON object")
        normalization = values.get("normalization")
        mean = std = None
        if normalization is not None:
            if not isinstance(normalization, Mapping) or not {"mean", "std"} <= set(normalization):
                raise FormatError(f'{source}: edgebnn.normalization must be {{"mean": [...], "std": [...]}}')
            mean, std = normalization["mean"], normalization["std"]
        try:
            return cls(
                model=values.get("model"),
                input_shape=_tuple(values.get("input_shape")),
                mean=_tuple(mean),
                std=_tuple(std),
                labels=_tuple(values.get("labels")),
                binarizer=values.get("binarizer"),
                accuracy=values.get("accuracy"),
            )
        except FormatError as error:
            raise FormatError(f"{source}: {error}") from None

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "metadata") -> DeployMetadata:
        """From ONNX ``metadata_props`` (other keys are ignored)."""
        values: dict[str, Any] = {}
        for key in KEYS:
            text = props.get(PREFIX + key)
            if text is None:
                continue
            if key in ("model", "binarizer"):
                values[key] = text
                continue
            try:
                values[key] = json.loads(text)
            except ValueError:
                raise FormatError(f"{source}: {PREFIX}{key} is not valid JSON: {text[:60]!r}") from None
        return cls.from_dict(values, source)

    @classmethod
    def from_json(cls, data: bytes, source: str = "metadata") -> DeployMetadata:
        try:
            values = json.loads(bytes(data).rstrip(b"\0").decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise FormatError(f"{source}: the edgebnn metadata is not valid JSON") from None
        return cls.from_dict(values, source)


def _tuple(value: Any) -> tuple | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise FormatError(f"expected a list, got {value!r:.60}")
    return tuple(value)


def _check(meta: DeployMetadata, source: str) -> None:
    """Types and ranges of every field; FormatError naming the key."""

    def bad(key: str, wanted: str) -> FormatError:
        return FormatError(f"{PREFIX}{key} must be {wanted}, got {getattr(meta, key)!r:.80}")

    for key in ("model", "binarizer"):
        if getattr(meta, key) is not None and not isinstance(getattr(meta, key), str):
            raise bad(key, "a string")
    shape = meta.input_shape
    if shape is not None and (
        not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)
    ):
        raise bad("input_shape", "a list of positive integers like [1, 28, 28]")
    for key in ("mean", "std"):
        values = getattr(meta, key)
        if values is not None and (
            not values
            or any(
                isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in values
            )
        ):
            raise FormatError(f"{PREFIX}normalization {key} must be a list of finite numbers")
    if (meta.mean is None) != (meta.std is None):
        raise FormatError(f"{PREFIX}normalization needs both mean and std")
    if meta.std is not None and any(v <= 0 for v in meta.std):
        raise FormatError(f"{PREFIX}normalization std must be positive")
    if meta.mean is not None and meta.std is not None and len(meta.mean) != len(meta.std):
        raise FormatError(f"{PREFIX}normalization mean and std must have one value per channel")
    if meta.labels is not None and not all(isinstance(label, str) for label in meta.labels):
        raise bad("labels", "a list of strings")
    accuracy = meta.accuracy
    if accuracy is not None and (
        isinstance(accuracy, bool) or not isinstance(accuracy, int | float) or not 0.0 <= accuracy <= 1.0
    ):
        raise bad("accuracy", "a number in [0, 1]")


# --- ONNX ---------------------------------------------------------------------------------------


def read_onnx(model: Any, source: str = "ONNX model") -> DeployMetadata:
    """The deploy metadata of an ``onnx.ModelProto`` (from its ``metadata_props``)."""
    return DeployMetadata.from_props({p.key: p.value for p in model.metadata_props}, source)


def write_onnx(model: Any, meta: DeployMetadata) -> None:
    """Set ``meta`` on an ``onnx.ModelProto``: every ``edgebnn.*`` entry is replaced, others are kept."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*kept, *meta.to_props().items()]:
        model.metadata_props.add(key=key, value=value)
