"""The LCE flatbuffer of a zoo model with random weights, built once and cached: a cross-stage service.

Latency does not depend on the weights, so ``edgebnn estimate`` and
``benchmarks/estimate_vs_published.py`` cost the zoo's architectures from flatbuffers built here.
It needs the trainer (build and export the model) and the converter (convert it), and no stage
may import both: that is why it lives in ``edgebnn/``, beside the commands (CONTRIBUTING.md).

    >>> from edgebnn.zoo_graph import zoo_graph
    >>> flatbuffer = zoo_graph("quicknet")      # minutes the first time, then read from the cache  # doctest: +SKIP

Two cache levels under ``devices.cache.cache_dir("estimate")``: the ONNX export (slow: PyTorch's
dynamo tracer) is keyed by the code it depends on (trainer, formats), the flatbuffer also by the
converter's; files built by older code are removed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import re
from importlib import metadata
from pathlib import Path

EXPORT_PACKAGES = ("trainer", "formats")
CONVERT_PACKAGES = (*EXPORT_PACKAGES, "converter")


@functools.cache  # once per process: code that changes under a running process is not ours
def _fingerprint(*packages: str) -> str:
    """Changes when the named packages' code or the pinned heavy libraries change: cached files are stale."""
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted(Path(importlib.import_module(package).__file__).parent.glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    for distribution in ("larq-compute-engine", "tensorflow", "torch", "onnx"):
        try:
            digest.update(f"{distribution}={metadata.version(distribution)}".encode())
        except metadata.PackageNotFoundError:
            pass
    return digest.hexdigest()[:16]


def zoo_graph(name: str, cache: Path | None = None) -> bytes:
    """The LCE flatbuffer of zoo model ``name`` (``trainer.zoo.MODELS``) with random weights."""
    from devices.cache import cache_dir
    from formats.files import write_atomic
    from formats.metadata import DeployMetadata
    from trainer.zoo import MODELS

    spec = MODELS[name]
    folder = cache if cache is not None else cache_dir("estimate")
    folder.mkdir(parents=True, exist_ok=True)  # the cache's own folder
    tflite_path = folder / f"{name}-{_fingerprint(*CONVERT_PACKAGES)}.tflite"
    if tflite_path.is_file():
        return tflite_path.read_bytes()
    onnx_path = folder / f"{name}-{_fingerprint(*EXPORT_PACKAGES)}.onnx"
    if not onnx_path.is_file():
        import torch

        from trainer.export import export_onnx
        from trainer.zoo import create_model

        torch.manual_seed(0)  # the values do not matter for latency; fixed for reproducible files
        model = create_model(name).eval()
        input_shape = (spec.in_channels, spec.input_size, spec.input_size)
        export_onnx(model, input_shape=input_shape, metadata=DeployMetadata(model=name), path=onnx_path,
                    verify=False)  # fmt: skip
    from converter.conversion import convert

    flatbuffer = convert(str(onnx_path))
    write_atomic(tflite_path, flatbuffer)
    _drop_stale(folder, name, keep=(onnx_path, tflite_path))
    return flatbuffer


def _drop_stale(folder: Path, name: str, keep: tuple[Path, ...]) -> None:
    """Remove this model's files built by older code (the ONNX of a QuickNet weighs 50-90 MB)."""
    pattern = re.compile(rf"{re.escape(name)}-[0-9a-f]{{16}}\.(onnx|tflite)")
    for path in folder.iterdir():
        if pattern.fullmatch(path.name) and path not in keep:
            path.unlink(missing_ok=True)
