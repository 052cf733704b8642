"""Batch-level data augmentation on uint8 image tensors: random crop (with zero padding) and flip.

Whole batches are transformed with tensor indexing, no per-image Python loop, so augmentation costs
a few milliseconds per batch even on a busy 2-core machine. Randomness comes only from the
``generator`` argument: the same generator state gives the same augmented batch, which is what
makes ``edgebnn train --resume`` reproduce an uninterrupted run bit for bit.

    >>> import torch
    >>> from trainer.augment import random_crop_flip
    >>> images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    >>> out = random_crop_flip(images, padding=3, generator=torch.Generator().manual_seed(0))
    >>> out.shape, out.dtype
    (torch.Size([8, 1, 28, 28]), torch.uint8)
"""

from __future__ import annotations

import torch


def default_padding(height: int) -> int:
    """Crop padding: 4 pixels for 32x32 (the usual CIFAR recipe), 3 for 28x28, at least 1."""
    return max(1, height // 8)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each image by ``padding`` pixels and cut a random window of the original size."""
    batch, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator)
    rows = (top + torch.arange(height)).to(images.device)  # [B, H]
    cols = (left + torch.arange(width)).to(images.device)  # [B, W]
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    # Advanced indexing with [B,1,1], [B,H,1], [B,1,W] gathers [B, H, W, C]; move channels back.
    cropped = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2).contiguous()


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """The standard light augmentation for Fashion-MNIST and CIFAR-10: random crop, then flip."""
    return random_flip(random_crop(images, padding, generator), generator)
