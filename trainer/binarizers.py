"""Binarizers: sign functions with surrogate gradients, looked up by name.

Forward, every binarizer maps to {-1, +1} with ``sign(0) = +1`` (the convention of Larq Compute
Engine; ``torch.sign`` maps 0 to 0 and is never used). Backward, each uses its own surrogate:

- activations (pure functions ``x -> {-1, +1}``):
  ``ste``    clipped straight-through estimator, gradient 1 where ``|x| <= 1``;
  ``approx`` Bi-Real Net's ApproxSign, gradient ``2 - 2|x|`` where ``|x| <= 1``.
- weights (modules built per layer, ``W -> s * sign(f(W))`` with ``s = mean|W|`` per output channel):
  ``ste``    ``f = identity``, clipped straight-through gradient to ``W``;
  ``lns``    ``f`` is a learned mapping network (see ``trainer.lns``).

Example::

    >>> import torch
    >>> from trainer.binarizers import get_activation_binarizer, get_weight_binarizer
    >>> sign = get_activation_binarizer("ste")
    >>> sign(torch.tensor([-0.5, 0.0, 2.0]))
    tensor([-1.,  1.,  1.])
    >>> binarize = get_weight_binarizer("ste")(weight_shape=(2, 1, 1, 1))
    >>> binarize(torch.tensor([[[[0.5]]], [[[-0.25]]]])).flatten()
    tensor([ 0.5000, -0.2500])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainer.errors import TrainerError


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


def scaled_ste_sign(x: torch.Tensor, scale: torch.Tensor, clip: float | None = 1.0) -> torch.Tensor:
    """``scale * sign(x)`` with a (clipped) straight-through gradient to ``x``; ``scale`` is constant.

    The product of an exact +-1 and a float is exact, so this is bit for bit ``+-scale``.
    """
    return scale * ste_sign(x, clip)


ACTIVATION_BINARIZERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ste": ste_sign,
    "approx": approx_sign,
}


class SteWeightBinarizer(nn.Module):
    """``W -> s * sign(W)``, ``s = mean|W|`` per output channel (a constant); gradient ``s`` where ``|W| <= clip``."""

    def __init__(self, weight_shape: tuple[int, ...], clip: float | None = 1.0) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return scaled_ste_sign(weight, channel_scale(weight), self.clip)


def _lns_binarizer(weight_shape: tuple[int, ...], **config: Any) -> nn.Module:
    from trainer.lns import LNSWeightBinarizer  # lns builds on this module: import on use

    return LNSWeightBinarizer(weight_shape, **config)


# name -> factory(weight_shape, **config) -> module with forward(W) -> binary W.
WEIGHT_BINARIZERS: dict[str, Callable[..., nn.Module]] = {
    "ste": SteWeightBinarizer,
    "lns": _lns_binarizer,
}


def get_activation_binarizer(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation binarizer called ``name``; TrainerError listing the valid names otherwise."""
    try:
        return ACTIVATION_BINARIZERS[name]
    except KeyError:
        raise TrainerError(
            f"unknown activation binarizer {name!r}; choose one of {', '.join(ACTIVATION_BINARIZERS)}"
        ) from None


def get_weight_binarizer(name: str) -> Callable[..., nn.Module]:
    """The weight-binarizer factory called ``name``; TrainerError listing the valid names otherwise."""
    try:
        return WEIGHT_BINARIZERS[name]
    except KeyError:
        raise TrainerError(
            f"unknown weight binarizer {name!r}; choose one of {', '.join(WEIGHT_BINARIZERS)}"
        ) from None


def build_weight_binarizer(
    name: str, weight_shape: tuple[int, ...], config: dict[str, Any] | None = None
) -> nn.Module:
    """Build binarizer ``name`` for a weight of ``weight_shape``; unknown options raise TrainerError."""
    factory = get_weight_binarizer(name)
    try:
        return factory(tuple(weight_shape), **(config or {}))
    except TypeError as error:
        raise TrainerError(f"bad option for weight binarizer {name!r}: {error}") from None
