"""Binary layers: a convolution that binarizes its input and its weights, with one-padding.

``BinaryConv2d`` computes ``conv(pad_ones(sign(x)), binary_weight())``:

- the input is binarized by an activation binarizer (``sign(0) = +1``);
- the binarized input is padded with **+1**, never 0 (a zero would make it ternary, and +1 padding
  is what Larq Compute Engine fuses into its binary convolution);
- the padding follows TensorFlow's SAME geometry computed from the input size: ``(1, 1)`` for a
  3x3 stride-1 conv, ``(0, 1)`` for a 3x3 stride-2 conv on an even size. LCE's fused one-padding
  always computes SAME geometry, so a model trained this way converts exactly (PyTorch's symmetric
  ``padding=1, stride=2`` would convert silently wrong);
- ``binary_weight()`` returns the exact deployable weight ``+-s`` per output channel. Training's
  forward and ONNX export both call it, so the exported bits are the trained bits.

A 1x1 ``BinaryConv2d`` on an ``(N, C, 1, 1)`` tensor is a binary "linear" layer.

Example::

    >>> import torch
    >>> from trainer.layers import BinaryConv2d, binary_layers
    >>> conv = BinaryConv2d(32, 8, kernel_size=3, stride=2)
    >>> conv(torch.randn(1, 32, 8, 8)).shape
    torch.Size([1, 8, 4, 4])
    >>> bool((conv.binary_weight().abs() == conv.weight.abs().mean(dim=(1, 2, 3), keepdim=True)).all())
    True
    >>> [name for name, _ in binary_layers(torch.nn.Sequential(conv))]
    ['0']
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.binarizers import build_weight_binarizer, get_activation_binarizer, sign


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TF-SAME padding (before, after) of one spatial dimension: output size ``ceil(size / stride)``."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel_size: int, stride: int, value: float) -> torch.Tensor:
    """Pad an NCHW tensor to TF-SAME geometry with a constant (no-op when nothing to pad)."""
    top, bottom = same_padding(int(x.shape[-2]), kernel_size, stride)
    left, right = same_padding(int(x.shape[-1]), kernel_size, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), mode="constant", value=value)


class BinaryConv2d(nn.Module):
    """Binary (1-bit weight, 1-bit input) convolution with +1 padding in TF-SAME geometry, no bias."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        weight_binarizer: str = "ste",
        activation_binarizer: str = "ste",
        binarizer_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.activation_binarizer = activation_binarizer
        self.binarize_input = get_activation_binarizer(activation_binarizer)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        # Latent weights well inside the STE window |W| <= 1.
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="linear")
        self.weight_binarizer_name = weight_binarizer
        self.weight_binarizer = build_weight_binarizer(
            weight_binarizer, tuple(self.weight.shape), binarizer_config
        )
        self.frozen = False

    def binary_weight(self) -> torch.Tensor:
        """The deployable weight used by forward: entries exactly ``+-s_o`` (``s_o > 0``) per channel."""
        if self.frozen:
            return self.frozen_weight
        return self.weight_binarizer(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = sign(x) if self.frozen else self.binarize_input(x)
        x = pad_same(x, self.kernel_size, self.stride, value=1.0)
        return F.conv2d(x, self.binary_weight(), stride=self.stride)

    @torch.no_grad()
    def freeze(self) -> None:
        """Keep only the deployable weight (a buffer) and plain ops: the deploy form used by export.

        The training-only parts (latent weight, LNS mapping network) are dropped.
        """
        weight = self.binary_weight().detach().clone()
        del self.weight
        self.weight_binarizer = nn.Identity()
        self.register_buffer("frozen_weight", weight)
        self.frozen = True

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, weight={self.weight_binarizer_name}, "
            f"activation={self.activation_binarizer}, padding=ones-same"
        )


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryConv2d]]:
    """All binary layers of ``model`` as (qualified name, module), in definition order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, BinaryConv2d)]


@torch.no_grad()
def weight_signs(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current bits (True = +1) of every binary layer, for flip-rate tracking."""
    return {name: layer.binary_weight() > 0 for name, layer in binary_layers(model)}


def flip_rate(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """Fraction of binary weights whose sign differs between two ``weight_signs`` snapshots."""
    flipped = sum(int((before[name] != after[name]).sum()) for name in before)
    total = sum(bits.numel() for bits in before.values())
    return flipped / total if total else 0.0
