"""Knowledge distillation: a frozen teacher checkpoint and the KL term it adds to the student's loss.

``edgebnn train --teacher CKPT`` trains the student on::

    (1 - w) * CE(student, labels) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al. 2015; the T^2 keeps the gradient scale independent of T). The teacher is any edgebnn
checkpoint of the same dataset (typically the full-precision twin, ``--binarizer none
--act-binarizer none``): ``load_teacher`` checks its classes and input shape against the data
before any work, rebuilds it in eval mode with every parameter frozen, and the loop runs it under
``torch.no_grad()``, so no gradient ever reaches it and its BatchNorm statistics never move.

    >>> import torch
    >>> from trainer.distill import distillation_loss
    >>> student = torch.tensor([[2.0, 0.0]], requires_grad=True)
    >>> round(distillation_loss(student, torch.tensor([[2.0, 0.0]]), temperature=2.0).item(), 6)
    0.0
    >>> distillation_loss(student, torch.tensor([[0.0, 2.0]]), temperature=1.0).item() > 0
    True
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.errors import TrainerError
from trainer.layers import binary_layers


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, mean over the batch."""
    student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file (the teacher's identity: a resumed run must distil from the same one)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_teacher(checkpoint: dict[str, Any], data: dict[str, Any], num_classes: int, source: str) -> None:
    """TrainerError unless ``checkpoint`` was trained on the dataset described by ``data``."""
    config = checkpoint["model"]["config"]
    shape = [int(v) for v in data["input_shape"]]
    found = {
        "classes": int(config.get("num_classes", -1)),
        "input channels": int(config.get("in_channels", -1)),
        "input size": [int(v) for v in config.get("input_size", [])],
    }
    wanted = {"classes": num_classes, "input channels": shape[0], "input size": shape[1:]}
    for what, value in wanted.items():
        if found[what] != value:
            raise TrainerError(
                f"--teacher {source}: the teacher has {what} {found[what]}, the data {data['name']!r} has {value}"
            )
    trained_on = (checkpoint.get("data") or {}).get("name")
    if trained_on is not None and trained_on != data["name"]:
        raise TrainerError(
            f"--teacher {source}: the teacher was trained on {trained_on!r}, this run trains on {data['name']!r} "
            "(its input normalisation and classes would not match)"
        )


def load_teacher(
    path: str | os.PathLike, data: dict[str, Any], num_classes: int, device: torch.device
) -> nn.Module:
    """The teacher of checkpoint ``path``, checked against the data, in eval mode, frozen, on ``device``."""
    from trainer.checkpoint import load_checkpoint, model_from_checkpoint

    try:
        checkpoint = load_checkpoint(path)
    except TrainerError as error:
        raise TrainerError(f"--teacher: {error}") from None
    check_teacher(checkpoint, data, num_classes, str(path))
    teacher = model_from_checkpoint(checkpoint).to(device)
    for _, layer in binary_layers(teacher):
        layer.freeze()  # the deploy form: plain ops, no binarizer work per step
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher.eval()


def teacher_record(path: str | os.PathLike | None) -> dict[str, str] | None:
    """What a checkpoint records of its teacher: the path given and the file's SHA-256."""
    if path is None:
        return None
    return {"path": str(Path(path)), "sha256": file_digest(path)}
