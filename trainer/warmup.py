"""The data-free warm-up: train only the weight binarizers' own parameters (LNS mapping networks).

A fresh LNS mapping network deploys bits unrelated to the trained baseline's. Before fine-tuning,
``warm_up_mappings`` trains the mapping networks alone (Adam) on their ``warmup_loss`` (LNS: the
noise-corrected loss against sign(W), without alpha) until the deployed bits agree with sign(W) on
``TARGET_AGREEMENT`` of the weights in *every* layer, or ``max_steps`` pass. No image is used, so it
takes seconds where a data warm-up epoch takes a full epoch and freezes the float and BatchNorm
parameters; nothing but the mapping networks changes. ``edgebnn train --binarizer lns`` does it by
default (``planned_steps``); the record it returns goes into the checkpoints and ``TrainResult``.

    >>> import torch
    >>> from trainer.warmup import warm_up_mappings
    >>> from trainer.zoo import create_model
    >>> _ = torch.manual_seed(0)
    >>> model = create_model("fmnist-bnn", width=8, weight_binarizer="lns")
    >>> record = warm_up_mappings(model, max_steps=300)
    >>> record["reached"], min(record["agreement"].values()) >= 0.999, record["steps"] <= 300
    (True, True, True)
"""

from __future__ import annotations

import time

import torch
from torch import nn

from trainer import distributed as ddp
from trainer.config import DEFAULT_WARMUP_MAPPING_STEPS
from trainer.layers import BinaryConv2d, binary_layers

TARGET_AGREEMENT = 0.999  # fraction of each layer's bits that must equal sign(W)
# Measured on trained fmnist-bnn baselines (docs/training.md, "The schedule"; docs/lns-method.md
# section 7): Adam at 1e-3 reaches the target in 60-90 steps (2-8 s); the default leaves a wide margin
# and the loop stops as soon as the target is reached.
DEFAULT_STEPS = DEFAULT_WARMUP_MAPPING_STEPS
DEFAULT_LR = 1e-3  # a mapping LR of 2e-4 left 3-11% of the bits disagreeing after 62 steps, 1e-2 overshoots
CHECK_EVERY = 10  # steps between agreement checks (a check is one more mapping forward)


def planned_steps(requested: int | None, has_mapping: bool, warmup_epochs: int) -> int:
    """Steps of the data-free warm-up: ``requested``, else ``DEFAULT_STEPS`` for a binarizer with its
    own parameters unless a data warm-up (``warmup_epochs``) was asked for instead.

    >>> planned_steps(None, True, 0), planned_steps(None, True, 1), planned_steps(None, False, 0), planned_steps(50, True, 1)
    (500, 0, 0, 50)
    """
    if not has_mapping:
        return 0
    if requested is not None:
        return requested
    return 0 if warmup_epochs else DEFAULT_STEPS


def warmed_layers(model: nn.Module) -> list[tuple[str, BinaryConv2d]]:
    """The binary layers whose weight binarizer has parameters of its own to warm up."""
    return [
        (name, layer)
        for name, layer in binary_layers(model)
        if not layer.frozen and any(True for _ in layer.weight_binarizer.parameters())
    ]


@torch.no_grad()
def agreement(model: nn.Module) -> dict[str, float]:
    """Per warmed layer: the fraction of deployed bits equal to sign(W) of its latent weight."""
    return {
        name: float(((layer.binary_weight() > 0) == (layer.weight >= 0)).float().mean())
        for name, layer in warmed_layers(model)
    }


def warm_up_mappings(
    model: nn.Module,
    max_steps: int,
    lr: float = DEFAULT_LR,
    target: float = TARGET_AGREEMENT,
    world_size: int = 1,
    device: torch.device | None = None,
) -> dict:
    """Train the weight binarizers' own parameters on their warm-up loss; return what was done.

    The record: ``steps``, ``max_steps``, ``seconds``, ``lr``, ``target``, ``reached`` and the final
    per-layer ``agreement``. Only those parameters change (the latent weights get no gradient, no
    BatchNorm sees an image). Under DDP every rank computes the same steps; the result is then
    broadcast from rank 0 so the replicas are identical whatever the kernels do.
    """
    started = time.perf_counter()
    layers = warmed_layers(model)
    parameters = [p for _, layer in layers for p in layer.weight_binarizer.parameters()]
    device = device or (parameters[0].device if parameters else torch.device("cpu"))
    optimizer = torch.optim.Adam(parameters, lr=lr) if parameters else None
    steps, loss_value = 0, None
    current = agreement(model)
    while optimizer is not None and steps < max_steps:
        if steps % CHECK_EVERY == 0 and ddp.any_rank(min(current.values()) >= target, world_size, device):
            break
        loss = torch.stack([layer.weight_binarizer.warmup_loss(layer.weight) for _, layer in layers]).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        loss_value = loss.item()
        if steps % CHECK_EVERY == 0 or steps == max_steps:
            current = agreement(model)
    ddp.broadcast_from_rank0(parameters, world_size)
    current = agreement(model)
    return {
        "steps": steps,
        "max_steps": max_steps,
        "seconds": time.perf_counter() - started,
        "lr": lr,
        "target": target,
        "reached": bool(current) and min(current.values()) >= target,
        "loss": loss_value,
        "agreement": current,
    }
