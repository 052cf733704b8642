"""Binary layers: a convolution that binarizes its input and its weights, with one-padding.

``BinaryConv2d`` computes ``conv(pad_ones(sign(x)), binary_weight())``:

- the input is binarized by an activation binarizer (``sign(0) = +1``);
- the binarized input is padded with **+1**, never 0 (a zero would make it ternary, and +1 padding
  is what Larq Compute Engine fuses into its binary convolution). With the activation binarizer
  ``none`` (the full-precision twin) the input stays real and is padded with 0: a float conv;
- the padding follows TensorFlow's SAME geometry computed from the input size: ``(1, 1)`` for a
  3x3 stride-1 conv, ``(0, 1)`` for a 3x3 stride-2 conv on an even size. LCE's fused one-padding
  always computes SAME geometry, so a model trained this way converts exactly (PyTorch's symmetric
  ``padding=1, stride=2`` would convert silently wrong);
- ``binary_weight()`` returns the exact deployable weight ``+-s`` per output channel. Training's
  forward and ONNX export both call it, so the exported bits are the trained bits.

A 1x1 ``BinaryConv2d`` on an ``(N, C, 1, 1)`` tensor is a binary "linear" layer.

Beside the layer, the model-level helpers the training loop needs: ``aux_loss(model)`` (the sum of
every binary layer's ``weight_binarizer.aux_loss``), ``binarizer_parameters(model)`` (the weight
binarizers' own parameters: the LNS mapping networks) and ``parameter_groups`` for the optimizer.

Example::

    >>> import torch
    >>> from trainer.layers import BinaryConv2d, aux_loss, binarizer_parameters, binary_layers
    >>> conv = BinaryConv2d(32, 8, kernel_size=3, stride=2)
    >>> conv(torch.randn(1, 32, 8, 8)).shape
    torch.Size([1, 8, 4, 4])
    >>> bool((conv.binary_weight().abs() == conv.weight.abs().mean(dim=(1, 2, 3), keepdim=True)).all())
    True
    >>> [name for name, _ in binary_layers(torch.nn.Sequential(conv))]
    ['0']
    >>> lns = BinaryConv2d(8, 8, weight_binarizer="lns", binarizer_config={"alpha": 1.0, "rho": 0.005})
    >>> y = lns(torch.randn(2, 8, 5, 5))
    >>> aux_loss(lns).shape, len(binarizer_parameters(lns)) > 0, aux_loss(conv).item()
    (torch.Size([]), True, 0.0)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.binarizers import FULL_PRECISION, build_weight_binarizer, get_activation_binarizer
from trainer.quantizers import identity, sign


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
        # A binary input is padded with +1 (LCE's one-padding); a real one with 0 (a float conv).
        self.full_precision_input = activation_binarizer == FULL_PRECISION
        self.pad_value = 0.0 if self.full_precision_input else 1.0
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
        if self.frozen:  # plain ops for export: no autograd function
            x = identity(x) if self.full_precision_input else sign(x)
        else:
            x = self.binarize_input(x)
        x = pad_same(x, self.kernel_size, self.stride, value=self.pad_value)
        weight = self.binary_weight()
        if not self.frozen and x.is_contiguous(memory_format=torch.channels_last):
            # NHWC training (use_channels_last): the weight is computed from the contiguous latent
            # weight, exactly as export computes it, then laid out like the input for the conv.
            weight = weight.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, stride=self.stride)

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
            f"activation={self.activation_binarizer}, "
            f"padding={'zeros' if self.full_precision_input else 'ones'}-same"
        )


def binary_layers(model: nn.Module) -> list[tuple[str, BinaryConv2d]]:
    """All binary layers of ``model`` as (qualified name, module), in definition order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, BinaryConv2d)]


def aux_loss(model: nn.Module) -> torch.Tensor:
    """Sum of the weight binarizers' auxiliary losses (LNS: ``alpha_i * aux_i``); a 0 tensor if none."""
    losses = [
        layer.weight_binarizer.aux_loss(layer.weight) for _, layer in binary_layers(model) if not layer.frozen
    ]
    if not losses:
        parameter = next(model.parameters(), None)
        return torch.zeros((), device=parameter.device if parameter is not None else None)
    return torch.stack(losses).sum()


def binarizer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weight binarizers' own parameters (LNS mapping networks; none for ``ste``), layer by layer."""
    return [p for _, layer in binary_layers(model) for p in layer.weight_binarizer.parameters()]


def parameter_groups(
    model: nn.Module, weight_decay: float, binarizer_lr: float | None = None
) -> list[dict[str, Any]]:
    """Optimizer groups: latent binary weights (no decay), everything else, the binarizers' parameters.

    Decay would only pull latent weights towards 0, where their sign flips for nothing; the weights
    of a full-precision (``none``) weight binarizer are real weights and decay like the rest. The
    binarizers' parameters (LNS mapping networks) start from scratch beside a trained network and
    may get their own LR (``binarizer_lr``, default: the optimizer's); their group exists only when
    there are any.
    """
    latent = {
        id(layer.weight)
        for _, layer in binary_layers(model)
        if not layer.frozen and layer.weight_binarizer_name != FULL_PRECISION
    }
    own = binarizer_parameters(model)
    special = latent | {id(p) for p in own}
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model.parameters() if id(p) in latent], "weight_decay": 0.0},
        {"params": [p for p in model.parameters() if id(p) not in special], "weight_decay": weight_decay},
    ]
    if own:
        lr = {} if binarizer_lr is None else {"lr": binarizer_lr}
        groups.append({"params": own, "weight_decay": weight_decay, **lr})
    return groups


@torch.no_grad()
def weight_signs(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current bits (True = +1) of every binary layer, for flip-rate tracking."""
    return {name: layer.binary_weight() > 0 for name, layer in binary_layers(model)}


def use_channels_last(model: nn.Module) -> nn.Module:
    """Lay ``model`` out in NHWC (``torch.channels_last``) for training, in place; returns it.

    Measured on CPU: 20-30% faster training steps for fmnist-bnn (docs/training.md). The binary
    layers' latent weights and their binarizers' parameters (LNS mapping networks) stay contiguous,
    so ``binary_weight()`` runs the same ops on the same memory layout as export does and deploys the
    same bits; feed the model ``channels_last`` inputs.
    """
    model.to(memory_format=torch.channels_last)
    for _, layer in binary_layers(model):
        if not layer.frozen:
            layer.weight.data = layer.weight.data.contiguous()
            for tensor in [*layer.weight_binarizer.parameters(), *layer.weight_binarizer.buffers()]:
                tensor.data = tensor.data.contiguous()
    return model


@torch.no_grad()
def latent_signs(model: nn.Module) -> dict[str, torch.Tensor]:
    """sign(W) of every binary layer's latent weight (True = +1): the bits a plain BNN deploys.

    Flip rates of a fine-tuning count from the bits its starting checkpoint deploys: sign(W) for a
    plain baseline, even when a fresh LNS mapping would give other bits.
    """
    return {name: layer.weight >= 0 for name, layer in binary_layers(model) if not layer.frozen}


def flip_rate(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    """Fraction of binary weights whose sign differs between two ``weight_signs`` snapshots."""
    flipped = sum(int((before[name] != after[name]).sum()) for name in before)
    total = sum(bits.numel() for bits in before.values())
    return flipped / total if total else 0.0
