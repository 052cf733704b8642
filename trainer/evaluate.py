"""Top-1 accuracy of a model on in-memory uint8 images, shared out over the DDP ranks.

>>> import torch
>>> from trainer.data import load_dataset
>>> from trainer.evaluate import accuracy
>>> from trainer.zoo import create_model
>>> ds = load_dataset("synthetic")
>>> model = create_model("fmnist-bnn", width=8)
>>> 0.0 <= accuracy(model, ds.test_x[:64], ds.test_y[:64], ds.mean, ds.std) <= 1.0
True
>>> from trainer.evaluate import accuracy_of_weights
>>> state = {k: v.clone() for k, v in model.state_dict().items()}
>>> accuracy_of_weights(model, state, ds.test_x[:64], ds.test_y[:64], ds.mean, ds.std) == accuracy(
...     model, ds.test_x[:64], ds.test_y[:64], ds.mean, ds.std)
True
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from trainer import distributed as ddp
from trainer.data import normalize

EVAL_BATCH_SIZE = 256  # larger batches run slower on CPU (activations fall out of cache)


@torch.no_grad()
def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rank: int = 0,
    world_size: int = 1,
) -> float:
    """Top-1 accuracy in eval mode; under DDP each rank scores every world_size-th batch, counts summed."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(rank * EVAL_BATCH_SIZE, len(images), world_size * EVAL_BATCH_SIZE):
        batch = slice(start, start + EVAL_BATCH_SIZE)
        logits = model(normalize(images[batch], mean, std))
        correct += int((logits.argmax(1) == labels[batch]).sum())
    model.train(was_training)
    (correct_total,) = ddp.sum_over_ranks([float(correct)], world_size, images.device)
    return correct_total / len(images)


def accuracy_of_weights(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rank: int = 0,
    world_size: int = 1,
) -> float:
    """``accuracy`` of ``model``'s architecture holding ``state_dict`` (a copy: ``model`` is untouched)."""
    scored = copy.deepcopy(model)
    scored.load_state_dict(state_dict)
    return accuracy(scored, images, labels, mean, std, rank, world_size)
