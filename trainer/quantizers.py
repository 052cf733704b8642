"""Quantizers: sign functions with surrogate gradients, and the weight binarizers built from them.

Forward, every quantizer maps to {-1, +1} with ``sign(0) = +1`` (the convention of Larq Compute
Engine; ``torch.sign`` maps 0 to 0 and is never used). Backward, each uses its own surrogate:

- ``ste_sign``     clipped straight-through estimator, gradient 1 where ``|x| <= 1`` (the ``ste``
  activation binarizer);
- ``approx_sign``  Bi-Real Net's ApproxSign, gradient ``2 - 2|x|`` where ``|x| <= 1`` (``approx``);
- ``SteWeightBinarizer``  ``W -> s * sign(W)`` with ``s = mean|W|`` per output channel (``ste``).

The full-precision twin of a binary model uses the identities of the same interfaces (``none``):
``identity`` for activations and ``FullPrecisionWeight`` (``W -> W``) for weights.

A weight binarizer is a module ``forward(W) -> binary W`` with ``aux_loss(W) -> scalar`` (the term it
adds to the training loss; zero unless it learns something of its own, like LNS in
``trainer.lns``) and ``warmup_loss(W)`` (what a data-free warm-up of its own parameters minimises;
None when it has nothing to warm up). Quantizers know nothing of layers; ``trainer.binarizers``
looks them up by name.

Example::

    >>> import torch
    >>> from trainer.quantizers import FullPrecisionWeight, SteWeightBinarizer, approx_sign, identity, ste_sign
    >>> ste_sign(torch.tensor([-0.5, 0.0, 2.0]))
    tensor([-1.,  1.,  1.])
    >>> x = torch.tensor([-2.0, -0.5, 0.0, 0.5], requires_grad=True)
    >>> approx_sign(x).sum().backward()
    >>> x.grad
    tensor([0., 1., 2., 1.])
    >>> binarize = SteWeightBinarizer(weight_shape=(2, 1, 1, 1))
    >>> weight = torch.tensor([[[[0.5]]], [[[-0.25]]]])
    >>> binarize(weight).flatten(), binarize.aux_loss(weight)
    (tensor([ 0.5000, -0.2500]), tensor(0.))
    >>> FullPrecisionWeight(weight_shape=(2, 1, 1, 1))(weight).flatten(), identity(torch.tensor([-0.5]))
    (tensor([ 0.5000, -0.2500]), tensor([-0.5000]))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where ``x >= 0`` else -1, in ``x``'s dtype; exports to ONNX as Where(GreaterOrEqual)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def channel_scale(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel ``mean|W|``, shaped to broadcast against ``weight``; never exactly 0."""
    dims = tuple(range(1, weight.dim()))
    # A dead all-zero filter would deploy as zeros, which is not a binary weight: keep s > 0.
    return weight.detach().abs().mean(dim=dims, keepdim=True).clamp_min(1e-8)


class _ClippedSte(torch.autograd.Function):
    """sign forward; gradient passed through where ``|x| <= clip`` (everywhere if clip is None)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, clip: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.clip = clip
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        if ctx.clip is None:
            return grad, None
        return grad * (x.abs() <= ctx.clip).to(grad.dtype), None


class _ApproxSign(torch.autograd.Function):
    """sign forward; Bi-Real ApproxSign gradient ``2 - 2|x|`` on ``|x| <= 1``, else 0."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (2.0 - 2.0 * x.abs()).clamp_min(0.0)


def ste_sign(x: torch.Tensor, clip: float | None = 1.0) -> torch.Tensor:
    """Binarize with a (clipped) straight-through gradient."""
    return _ClippedSte.apply(x, clip)


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """Binarize with Bi-Real Net's ApproxSign gradient."""
    return _ApproxSign.apply(x)


def identity(x: torch.Tensor) -> torch.Tensor:
    """No binarization (activation binarizer ``none``): the full-precision twin's activations."""
    return x


def scaled_ste_sign(x: torch.Tensor, scale: torch.Tensor, clip: float | None = 1.0) -> torch.Tensor:
    """``scale * sign(x)`` with a (clipped) straight-through gradient to ``x``; ``scale`` is constant.

    The product of an exact +-1 and a float is exact, so this is bit for bit ``+-scale``.
    """
    return scale * ste_sign(x, clip)


class WeightBinarizer(nn.Module):
    """The interface of weight binarizers: ``forward(W)`` is the binary weight, ``aux_loss(W)`` a scalar.

    Subclasses are built as ``cls(weight_shape, **options)``. Their own parameters (if any) are
    training-only: export keeps the bits they produce and drops them.
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def aux_loss(self, weight: torch.Tensor) -> torch.Tensor:
        """The term this binarizer adds to the training loss: none (a zero scalar) by default."""
        return weight.new_zeros(())

    def warmup_loss(self, weight: torch.Tensor) -> torch.Tensor | None:
        """What a data-free warm-up of this binarizer's own parameters minimises; None: nothing to warm up."""
        return None


class SteWeightBinarizer(WeightBinarizer):
    """``W -> s * sign(W)``, ``s = mean|W|`` per output channel (a constant); gradient ``s`` where ``|W| <= clip``."""

    def __init__(self, weight_shape: tuple[int, ...], clip: float | None = 1.0) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return scaled_ste_sign(weight, channel_scale(weight), self.clip)


class FullPrecisionWeight(WeightBinarizer):
    """``W -> W`` (weight binarizer ``none``): the full-precision twin, or stage 1 of two-stage training."""

    def __init__(self, weight_shape: tuple[int, ...]) -> None:
        super().__init__()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight
