"""Diagnostics of a binary network's training signal: how strongly the auxiliary loss (LNS) pulls on
the latent weights compared with the cross-entropy.

``gradient_norm_ratios`` measures, per binary layer, ``||d aux / dW|| / ||d CE / dW||`` on a few
batches, in training mode (as a training step sees it) on a copy of the model (its BatchNorm
statistics are left alone). With the paper's summed auxiliary loss and alpha = 1 the ratio is in
the tens to hundreds on Fashion-MNIST (docs/lns-method.md section 7): LNS then acts as sign(W) plus a regulariser.

    >>> import torch
    >>> from trainer.diagnostics import gradient_norm_ratios
    >>> from trainer.zoo import create_model
    >>> _ = torch.manual_seed(0)
    >>> lns = create_model("fmnist-bnn", width=8, weight_binarizer="lns")
    >>> batches = [(torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,)))]
    >>> ratios = gradient_norm_ratios(lns, batches)
    >>> sorted(ratios["ratio"]) == sorted(ratios["ce_norm"]), all(r > 0 for r in ratios["ratio"].values())
    (True, True)
    >>> set(gradient_norm_ratios(create_model("fmnist-bnn", width=8), batches)["ratio"].values())
    {0.0}
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from trainer.layers import aux_loss, binary_layers


def gradient_norm_ratios(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, dict[str, float]]:
    """Per binary layer (means over ``batches`` of normalised inputs and labels): ``ratio`` of the
    auxiliary to the cross-entropy gradient norm on the latent weight, and both norms."""
    probe = copy.deepcopy(model).train()
    weights = {name: layer.weight for name, layer in binary_layers(probe) if not layer.frozen}
    for parameter in probe.parameters():
        parameter.requires_grad_(True)
    per_batch: dict[str, dict[str, list[float]]] = {
        key: {name: [] for name in weights} for key in ("ratio", "ce_norm", "aux_norm")
    }
    tensors = list(weights.values())
    for inputs, labels in batches:
        ce = F.cross_entropy(probe(inputs), labels)
        aux = aux_loss(probe)
        ce_grads = torch.autograd.grad(ce, tensors, retain_graph=True, allow_unused=True)
        aux_grads = (
            torch.autograd.grad(aux, tensors, allow_unused=True)
            if aux.requires_grad
            else [None] * len(tensors)
        )
        for name, ce_grad, aux_grad in zip(weights, ce_grads, aux_grads, strict=True):
            ce_norm = float(ce_grad.norm()) if ce_grad is not None else 0.0
            aux_norm = float(aux_grad.norm()) if aux_grad is not None else 0.0
            per_batch["ce_norm"][name].append(ce_norm)
            per_batch["aux_norm"][name].append(aux_norm)
            per_batch["ratio"][name].append(aux_norm / ce_norm if ce_norm > 0 else float("inf"))
    return {
        key: {name: statistics.fmean(values) for name, values in by_layer.items()}
        for key, by_layer in per_batch.items()
    }
