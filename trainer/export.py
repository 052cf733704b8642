"""ONNX export: the deploy graph of a trained binary network (CONTRIBUTING.md, "ONNX deploy graph").

``export_onnx(model, input_shape=..., metadata=...) -> onnx.ModelProto`` is pure (write with ``path``):

1. a deploy copy of the model is made: every ``BinaryConv2d`` keeps only ``binary_weight()`` (the very
   tensor the training forward used: ``+-s`` per output channel, the learned bits for LNS) as a
   constant, and the LNS mapping networks are dropped;
2. ``torch.onnx.export(..., dynamo=True)`` traces it: the activation binarizer becomes
   ``Where(GreaterOrEqual(x, 0), 1, -1)``, one-padding an explicit ``Pad(value=1)`` before an unpadded
   ``Conv``; BatchNorm stays a ``BatchNormalization`` node;
3. the deploy metadata (``formats.metadata.DeployMetadata``) is attached, ``onnx.checker`` runs, and
   ONNX Runtime must reproduce the PyTorch eval output on random inputs, else ``TrainerError``.

Example::

    >>> from formats.metadata import DeployMetadata, read_onnx
    >>> from trainer.zoo import create_model
    >>> from trainer.export import export_onnx
    >>> model = create_model("fmnist-bnn", num_classes=10, in_channels=1, input_size=28)
    >>> proto = export_onnx(model, input_shape=(1, 28, 28), metadata=DeployMetadata(model="fmnist-bnn"))
    >>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
    (['input'], ['logits'])
    >>> read_onnx(proto).model
    'fmnist-bnn'
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from formats.files import check_writable, write_atomic
from formats.metadata import PREFIX, DeployMetadata, write_onnx
from trainer.errors import TrainerError
from trainer.layers import binary_layers

OPSET = 18
RTOL = 1e-3  # logits must agree within RTOL x their scale (measured agreement: ~1e-6)
MIN_MATCHING = 0.75  # fraction of random inputs that must match (see check_onnxruntime)


def deploy_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose binary layers hold only their deployable weights."""
    deployed = copy.deepcopy(model).eval()
    for _, layer in binary_layers(deployed):
        layer.freeze()
    return deployed


def _optimize_keep_batchnorm(model: Any) -> None:
    """torch's default ONNX clean-up (constant folding, rewrites, dead-node removal) minus BN folding.

    Folding a BatchNorm into the preceding binary conv would turn its ``+-s`` weights into arbitrary
    (even negative) per-channel values that LCE no longer recognises as binary. This repeats
    ``onnxscript.optimizer.optimize_ir`` (onnxscript 0.7.2, pinned) with the batchnorm rules removed.
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes
    from onnxscript import rewriter
    from onnxscript.optimizer import _constant_folding
    from onnxscript.rewriter.rules.common import _fuse_batchnorm

    batchnorm_folds = {id(rule) for rule in _fuse_batchnorm.rules.rules}
    rules = [rule for rule in rewriter._DEFAULT_REWRITE_RULES if id(rule) not in batchnorm_folds]
    passes = ir.passes.Sequential(
        common_passes.InlinePass(),
        ir.passes.PassManager(
            [
                _constant_folding.FoldConstantsPass(
                    shape_inference=True,
                    input_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
                    output_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT,
                ),
                rewriter.RewritePass(rules),
                common_passes.RemoveUnusedNodesPass(),
                common_passes.RemoveUnusedFunctionsPass(),
                common_passes.RemoveUnusedOpsetsPass(),
            ],
            steps=2,
            early_stop=True,
        ),
        common_passes.RemoveUnusedNodesPass(),
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.DeduplicateInitializersPass(),
        common_passes.CommonSubexpressionEliminationPass(),
        common_passes.NameFixPass(),
    )
    passes(model)


def _quiet_export(model: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1)
    # The dynamo exporter reports its steps on stdout and in warnings; keep the CLI output clean.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)  # "torchvision is not installed" notices
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                optimize=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
            _optimize_keep_batchnorm(program.model)
    finally:
        registration.setLevel(level)
    proto = program.model_proto
    del proto.metadata_props[:]  # torch's internal bookkeeping; ours is added by export_onnx
    return proto


def check_binary_weights(proto: onnx.ModelProto, deployed: nn.Module) -> None:
    """Every binary layer's weight must be in the graph bit for bit (TrainerError otherwise)."""
    initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
    for name, layer in binary_layers(deployed):
        tensor = initializers.get(f"{name}.frozen_weight")
        expected = layer.frozen_weight.numpy()
        if tensor is None or not np.array_equal(numpy_helper.to_array(tensor), expected):
            raise TrainerError(f"binary weight of layer {name!r} was not exported unchanged")


def check_onnxruntime(
    proto: onnx.ModelProto, model: nn.Module, input_shape: Sequence[int], *, batch: int = 8, seed: int = 0
) -> float:
    """Run ``proto`` in ONNX Runtime and ``model`` in PyTorch on the same random batch.

    A sample matches when its logits agree within ``RTOL`` times the logit scale. ORT and PyTorch sum
    in different orders, so an activation within float rounding of 0 may binarize differently and
    legitimately change one sample (measured: 2 of 512 samples for a ``resnet20`` with trained-like
    BatchNorm statistics); an export error changes every sample. So at least ``MIN_MATCHING`` of the
    samples must match, else TrainerError. Returns the median over samples of the max |difference|.
    """
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, *input_shape, generator=generator)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(inputs).numpy()
    finally:
        model.train(was_training)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (actual,) = session.run(["logits"], {"input": inputs.numpy()})
    per_sample = np.abs(actual - expected).reshape(batch, -1).max(axis=1)
    scale = max(float(np.max(np.abs(expected))), 1.0)
    matching = int(np.sum(per_sample <= RTOL * scale))
    if matching < MIN_MATCHING * batch:
        raise TrainerError(
            f"ONNX Runtime does not reproduce the PyTorch output: {matching} of {batch} random inputs "
            f"match, max |difference| {per_sample.max():.3g} (logit scale {scale:.3g})"
        )
    return float(np.median(per_sample))


def export_onnx(
    model: nn.Module,
    *,
    input_shape: Sequence[int],
    metadata: DeployMetadata | Mapping[str, Any] | None = None,
    path: str | os.PathLike | None = None,
    verify: bool = True,
) -> onnx.ModelProto:
    """Export the deploy graph of ``model`` for inputs ``[N, *input_shape]`` (N dynamic).

    ``metadata`` becomes the graph's ``metadata_props`` (``formats.metadata.write_onnx``); a mapping
    of ``edgebnn.*`` keys to values is read as a ``DeployMetadata``. With ``path`` the file is
    written atomically (its folder must exist). ``verify`` checks the graph in ONNX Runtime against
    the PyTorch model.
    """
    meta = _deploy_metadata(metadata)
    if path is not None:
        check_writable(path)
    input_shape = [int(v) for v in input_shape]
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise TrainerError(f"input_shape must be [C, H, W] with positive sizes, got {input_shape}")
    deployed = deploy_copy(model)
    example = torch.zeros(2, *input_shape)
    try:  # a shape the model cannot take is the user's input error; a tracing failure is a bug
        with torch.no_grad():
            deployed(example)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise TrainerError(f"the model does not accept inputs of shape {input_shape}: {first}") from None
    proto = _quiet_export(deployed, example)
    proto.producer_name = "edgebnn"
    if meta is not None:
        write_onnx(proto, meta)
    onnx.checker.check_model(proto)
    check_binary_weights(proto, deployed)
    if verify:
        check_onnxruntime(proto, model, input_shape)
    if path is not None:
        write_atomic(path, proto.SerializeToString())
    return proto


def _deploy_metadata(metadata: DeployMetadata | Mapping[str, Any] | None) -> DeployMetadata | None:
    """``metadata`` as a DeployMetadata; a mapping must use the ``edgebnn.*`` keys of formats.metadata."""
    if metadata is None or isinstance(metadata, DeployMetadata):
        return metadata
    unknown = [key for key in metadata if not key.startswith(PREFIX)]
    if unknown:
        raise TrainerError(f"metadata keys must start with {PREFIX!r}, got {', '.join(map(repr, unknown))}")
    return DeployMetadata.from_dict({key.removeprefix(PREFIX): value for key, value in metadata.items()})


def checkpoint_metadata(checkpoint: dict[str, Any]) -> tuple[list[int], DeployMetadata]:
    """Input shape ``[C, H, W]`` and deploy metadata of a loaded checkpoint."""
    config = checkpoint["model"]["config"]
    data = checkpoint.get("data") or {}
    from_config = [config.get("in_channels", 3), *config.get("input_size", [224, 224])]
    input_shape = [int(v) for v in data.get("input_shape") or from_config]
    binarizer = checkpoint.get("binarizer") or {}
    normalized = "mean" in data and "std" in data
    accuracy = (checkpoint.get("metrics") or {}).get("test_acc")
    meta = DeployMetadata(
        model=checkpoint["model"]["name"],
        input_shape=tuple(input_shape),
        mean=tuple(data["mean"]) if normalized else None,
        std=tuple(data["std"]) if normalized else None,
        labels=tuple(data["classes"]) if "classes" in data else None,
        binarizer=binarizer.get("name") or config.get("weight_binarizer", "ste"),
        accuracy=float(accuracy) if accuracy is not None else None,
    )
    return input_shape, meta


def export_checkpoint_proto(checkpoint_path: str | os.PathLike) -> onnx.ModelProto:
    """Load a checkpoint and export its deploy graph (verified in ONNX Runtime), without writing."""
    from trainer.checkpoint import load_checkpoint, model_from_checkpoint

    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint)
    input_shape, metadata = checkpoint_metadata(checkpoint)
    return export_onnx(model, input_shape=input_shape, metadata=metadata)


def export_checkpoint(checkpoint_path: str | os.PathLike, out_path: str | os.PathLike) -> onnx.ModelProto:
    """Export checkpoint ``checkpoint_path`` to ONNX file ``out_path`` (written atomically, folder must exist)."""
    check_writable(out_path)  # before the export's work, not after it
    proto = export_checkpoint_proto(checkpoint_path)
    write_atomic(out_path, proto.SerializeToString())
    return proto
