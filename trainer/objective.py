"""What one training step minimises: the task loss (cross-entropy, optionally mixed with a teacher's
distillation term) plus the weight binarizers' auxiliary loss (LNS)::

    loss = ce + aux                                   without a teacher
    loss = (1 - w) * ce + w * kd + aux                with a teacher (kd: trainer.distill)

    >>> import torch
    >>> from trainer.objective import Objective
    >>> from trainer.zoo import create_model
    >>> model = create_model("fmnist-bnn", width=8)
    >>> inputs, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    >>> parts = Objective()(model(inputs), inputs, labels, model)
    >>> sorted(parts), bool(parts["loss"] == parts["ce"] + parts["aux"]), parts["kd"].item()
    (['aux', 'ce', 'kd', 'loss'], True, 0.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer import layers
from trainer.distill import distillation_loss


class Objective:
    """The training loss of a run; ``teacher`` (frozen, eval mode) adds distillation with weight ``kd_weight``."""

    def __init__(
        self,
        label_smoothing: float = 0.0,
        teacher: nn.Module | None = None,
        kd_weight: float = 0.0,
        kd_temperature: float = 1.0,
    ) -> None:
        self.label_smoothing = label_smoothing
        self.teacher = teacher
        self.kd_weight = kd_weight if teacher is not None else 0.0
        self.kd_temperature = kd_temperature

    def __call__(
        self, logits: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, model: nn.Module
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "ce", "kd", "aux"}`` for a batch; ``logits`` are the student's on ``inputs``."""
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        aux = layers.aux_loss(model)  # LNS: alpha * SUM_i aux_i (alpha applied inside)
        if self.teacher is None:
            return {"loss": ce + aux, "ce": ce, "kd": torch.zeros_like(ce), "aux": aux}
        with torch.no_grad():  # the teacher's outputs never carry gradient
            teacher_logits = self.teacher(inputs)
        kd = distillation_loss(logits, teacher_logits, self.kd_temperature)
        task = (1.0 - self.kd_weight) * ce + self.kd_weight * kd
        return {"loss": task + aux, "ce": ce, "kd": kd, "aux": aux}
