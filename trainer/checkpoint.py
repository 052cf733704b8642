"""Checkpoints: one ``torch.save``'d dict of plain containers, loadable with ``weights_only=True``.

Format (CONTRIBUTING.md)::

    {"format": "edgebnn-checkpoint/1",
     "model": {"name": ..., "config": {...}},      # trainer.zoo.create_model(name, **config)
     "binarizer": {...}, "data": {...}, "state_dict": {...}, "epoch": int, "metrics": {...},
     "optimizer": {...}, "scheduler": {...}, "rng": {...}}

A checkpoint written by ``edgebnn train`` (``training_checkpoint``) adds the loop state that
``--resume`` needs: ``train_config``, ``history``, ``best``, ``flip_reference``, ``resume_point``,
and what the run did once: ``mapping_warmup`` (the data-free warm-up's record, None without one)
and ``teacher`` (path and SHA-256 of the distillation teacher, None without one). The test accuracy
of the best-validation weights is added at the end of a run (``with_best_test``).
This module is the only place that builds a checkpoint payload.

Example::

    >>> import tempfile, pathlib
    >>> from trainer.zoo import create_model
    >>> from trainer.checkpoint import save_checkpoint, load_checkpoint, model_from_checkpoint, new_checkpoint
    >>> model = create_model("fmnist-bnn", num_classes=10, in_channels=1, input_size=28)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.pt"
    >>> save_checkpoint(path, new_checkpoint(model, epoch=0))
    >>> model_from_checkpoint(load_checkpoint(path)).training
    False
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from formats.files import write_atomic
from trainer.errors import TrainerError

FORMAT = "edgebnn-checkpoint/1"
MAPPING_MARKER = ".weight_binarizer.mapping."  # state-dict keys of LNS mapping networks


def new_checkpoint(model: nn.Module, **fields: Any) -> dict[str, Any]:
    """A checkpoint dict for a zoo model (``model.name``/``model.config``) plus any other fields."""
    return {
        "format": FORMAT,
        "model": {"name": model.name, "config": model.config},
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        **fields,
    }


def training_checkpoint(
    model: nn.Module,
    *,
    binarizer: dict[str, Any],
    data: dict[str, Any],
    epoch: int,
    metrics: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    train_config: dict[str, Any],
    history: list[dict[str, Any]],
    best: dict[str, Any],
    flip_reference: dict[str, torch.Tensor],
    resume_point: dict[str, Any] | None,
    mapping_warmup: dict[str, Any] | None = None,
    teacher: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The checkpoint of the training loop after ``epoch`` epochs: weights, optimizer, RNG, loop state.

    ``resume_point`` (``{"epoch", "step", "stats"}``) marks a run stopped inside an epoch. The torch
    RNG state is taken now (and the CUDA one on a CUDA ``device``), so call it where the loop stands.
    """
    return {
        "format": FORMAT,
        "model": {"name": model.name, "config": dict(model.config)},
        "binarizer": binarizer,
        "data": data,
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "epoch": epoch,
        "metrics": metrics,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        },
        "train_config": train_config,
        "history": history,
        "best": best,
        "flip_reference": {name: signs.cpu() for name, signs in flip_reference.items()},
        "resume_point": resume_point,
        "mapping_warmup": mapping_warmup,
        "teacher": teacher,
    }


def with_best_test(payload: dict[str, Any], best: dict[str, Any], *, best_checkpoint: bool) -> dict[str, Any]:
    """``payload`` with the test accuracy of the best-validation weights (``best["test_acc"]``).

    ``best.pt`` (``best_checkpoint``) gets it as ``metrics["test_acc"]``, the accuracy its weights
    score (export records it); every training checkpoint gets ``metrics["best_test_acc"]`` and its
    loop state ``best``.
    """
    metrics = {**payload.get("metrics", {}), "best_test_acc": best["test_acc"]}
    if best_checkpoint:
        metrics["test_acc"] = best["test_acc"]
    updated = {**payload, "metrics": metrics}
    if "best" in payload:
        updated["best"] = dict(best)
    return updated


def restore_training_state(
    checkpoint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> None:
    """Load what ``training_checkpoint`` saved into the loop's objects: weights, optimizer, schedule, RNG."""
    load_state_strict(model, checkpoint["state_dict"], allow_mapping=False)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if device.type == "cuda" and checkpoint["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(checkpoint["rng"]["cuda"], device)


def state_dict_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor: equal hash = equal weights."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (``formats.files.write_atomic``: the folder must exist)."""
    path = Path(path)
    validate_checkpoint(payload, str(path))
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def validate_checkpoint(payload: Any, source: str = "checkpoint") -> dict[str, Any]:
    """Check the required structure of a checkpoint; TrainerError naming ``source`` otherwise."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise TrainerError(
            f"{source} is not an edgebnn checkpoint (expected format {FORMAT!r}, found {found!r})"
        )
    model = payload.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise TrainerError(
            f"{source}: checkpoint has no model name ('model': {{'name': ..., 'config': ...}})"
        )
    if not isinstance(model.get("config"), dict):
        raise TrainerError(f"{source}: checkpoint has no model config")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TrainerError(f"{source}: checkpoint has no state_dict of tensors")
    return payload


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a checkpoint (``weights_only=True``); TrainerError for missing/corrupt/foreign."""
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError, KeyError, IndexError
    ) as error:  # fmt: skip
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in str(error) or "Weights only" in str(error):
            # torch's own text invites "re-running with weights_only=False": never pass that on.
            raise TrainerError(
                f"{path} is not a readable checkpoint: it is corrupt, or holds objects other than tensors "
                "and plain containers, which edgebnn refuses to unpickle (they could run code)"
            ) from None
        raise TrainerError(
            f"{path} is not a readable checkpoint (corrupt or not a torch file): {reason}"
        ) from None
    return validate_checkpoint(payload, str(path))


def load_state_strict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], *, allow_mapping: bool = True
) -> None:
    """Load ``state_dict`` into ``model``; every tensor must exist with the same shape.

    The first mismatch (missing, unexpected, or a shape difference) is named in a TrainerError.
    With ``allow_mapping`` the LNS mapping networks may be missing (starting LNS from a plain BNN: they
    keep their fresh initialisation) or unexpected (a plain BNN from an LNS one: they are dropped).
    """
    own = model.state_dict()
    for name, tensor in state_dict.items():
        if name not in own:
            if allow_mapping and MAPPING_MARKER in name:
                continue
            raise TrainerError(f"unexpected tensor {name!r} {tuple(tensor.shape)} not in the model")
        if own[name].shape != tensor.shape:
            raise TrainerError(
                f"shape mismatch for {name!r}: checkpoint {tuple(tensor.shape)}, model {tuple(own[name].shape)}"
            )
    for name, tensor in own.items():
        if name not in state_dict and not (allow_mapping and MAPPING_MARKER in name):
            raise TrainerError(f"missing tensor {name!r} {tuple(tensor.shape)} in the checkpoint")
    wanted = {name: t for name, t in state_dict.items() if name in own}
    model.load_state_dict(wanted, strict=False)


def model_from_checkpoint(checkpoint: dict[str, Any]) -> nn.Module:
    """Rebuild the zoo model of a loaded checkpoint with its weights, in eval mode."""
    from trainer.zoo import create_model

    validate_checkpoint(checkpoint)
    spec = checkpoint["model"]
    if not all(isinstance(key, str) for key in spec["config"]):
        raise TrainerError("checkpoint: model config has non-string option names")
    model = create_model(spec["name"], **spec["config"])
    load_state_strict(model, checkpoint["state_dict"], allow_mapping=False)
    return model.eval()
