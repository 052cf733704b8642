"""Binarizers and binary layers: sign(0) = +1, surrogate gradients, one-padding, TF-SAME geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.binarizers import (
    ACTIVATION_BINARIZERS,
    FULL_PRECISION,
    build_weight_binarizer,
    get_activation_binarizer,
    get_weight_binarizer,
)
from trainer.errors import TrainerError
from trainer.layers import BinaryConv2d, binary_layers, flip_rate, same_padding, weight_signs
from trainer.quantizers import sign

POINTS = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])


def gradient(function, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    function(x).sum().backward()
    return x.grad


SIGN_ACTIVATIONS = [name for name in ACTIVATION_BINARIZERS if name != FULL_PRECISION]


@pytest.mark.parametrize("name", SIGN_ACTIVATIONS)
def test_activation_binarizers_map_zero_to_plus_one(name: str) -> None:
    out = get_activation_binarizer(name)(POINTS)
    assert out.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert out.dtype == POINTS.dtype


def test_sign_never_returns_zero_unlike_torch_sign() -> None:
    x = torch.tensor([0.0, -0.0, 1e-30, -1e-30])
    assert sign(x).tolist() == [1, 1, 1, -1]
    assert torch.sign(x)[0] == 0  # the reason torch.sign is not used


def test_ste_gradient_is_clipped_identity() -> None:
    assert gradient(get_activation_binarizer("ste"), POINTS).tolist() == [0, 1, 1, 1, 1, 1, 0]


def test_approx_sign_gradient_is_bireal_triangle() -> None:
    assert gradient(get_activation_binarizer("approx"), POINTS).tolist() == [0, 0, 1, 2, 1, 0, 0]


def test_ste_weight_binarizer_values_and_gradient() -> None:
    weight = torch.tensor([[0.5, -0.25, 0.0, 1.5], [-0.1, -0.2, 0.3, 0.0]]).view(2, 4, 1, 1)
    binarize = build_weight_binarizer("ste", tuple(weight.shape))
    out = binarize(weight).view(2, 4)
    s0, s1 = 2.25 / 4, 0.6 / 4
    assert torch.equal(out[0], torch.tensor([s0, -s0, s0, s0]))
    assert torch.allclose(out[1], torch.tensor([-s1, -s1, s1, s1]))
    assert (out[1].abs() == out[1, 0].abs()).all()  # one exact scale per output channel
    # straight through sign (clipped at |W| <= 1), times the constant scale
    expected = torch.tensor([[s0, s0, s0, 0.0], [s1, s1, s1, s1]])
    assert torch.allclose(gradient(binarize, weight).view(2, 4), expected)


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(TrainerError, match="ste, approx"):
        get_activation_binarizer("sign")
    with pytest.raises(TrainerError, match="ste, lns"):
        get_weight_binarizer("xnor")
    with pytest.raises(TrainerError, match="bad option"):
        build_weight_binarizer("ste", (1, 1, 1, 1), {"bogus": 1})


def test_one_padding_pads_with_plus_one() -> None:
    conv = BinaryConv2d(1, 1, kernel_size=3, stride=1)
    with torch.no_grad():
        conv.weight.fill_(0.5)  # binary weight: +0.5 everywhere
    out = conv(-torch.ones(1, 1, 4, 4))  # binarized input: -1 everywhere
    # corner: 4 real taps (-1) and 5 padded taps (+1); zero-padding would give -4 * 0.5
    assert out[0, 0, 0, 0].item() == pytest.approx(0.5 * (5 - 4))
    assert out[0, 0, 0, 1].item() == pytest.approx(0.5 * (3 - 6))
    assert out[0, 0, 1, 1].item() == pytest.approx(0.5 * -9)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(8, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (28, 3, 1, (1, 1)), (5, 1, 1, (0, 0)), (8, 1, 2, (0, 0))],
)
def test_same_padding_geometry(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("size", [8, 7])
def test_stride2_conv_uses_tf_same_one_padding(size: int) -> None:
    torch.manual_seed(0)
    conv = BinaryConv2d(4, 8, kernel_size=3, stride=2)
    x = torch.randn(2, 4, size, size)
    before, after = same_padding(size, 3, 2)
    manual = F.conv2d(
        F.pad(sign(x), (before, after, before, after), value=1.0), conv.binary_weight(), stride=2
    )
    out = conv(x)
    assert out.shape[-1] == (size + 1) // 2
    assert torch.equal(out, manual)
    if size % 2 == 0:  # PyTorch's symmetric padding=1 gives different numbers: the LCE trap
        symmetric = F.conv2d(F.pad(sign(x), (1, 1, 1, 1), value=1.0), conv.binary_weight(), stride=2)
        assert not torch.allclose(out, symmetric)


def test_forward_uses_binary_weight_and_gradients_reach_latent_weights() -> None:
    torch.manual_seed(0)
    conv = BinaryConv2d(3, 5, kernel_size=3, activation_binarizer="approx")
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    out = conv(x)
    expected = F.conv2d(F.pad(sign(x), (1, 1, 1, 1), value=1.0), conv.binary_weight())
    assert torch.equal(out, expected)
    out.square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_binary_layers_and_flip_rate() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 1), BinaryConv2d(4, 4), torch.nn.ReLU(), BinaryConv2d(4, 8, 1)
    )
    assert [name for name, _ in binary_layers(model)] == ["1", "3"]
    before = weight_signs(model)
    with torch.no_grad():
        model[3].weight[0].neg_()  # flips 4 of the 4*4*9 + 8*4 = 176 bits
    assert flip_rate(before, weight_signs(model)) == pytest.approx(4 / 176)
    assert flip_rate(before, before) == 0.0
