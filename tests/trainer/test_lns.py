"""LNS: the corrected loss (closed form, unbiasedness), alpha=0 ablation, mapping network, caching."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from trainer.errors import TrainerError
from trainer.layers import BinaryConv2d, aux_loss, binarizer_parameters
from trainer.lns import LNSWeightBinarizer, corrected_loss
from trainer.quantizers import channel_scale, sign
from trainer.zoo import create_model


def lns_conv(**config) -> BinaryConv2d:
    torch.manual_seed(0)
    return BinaryConv2d(8, 16, kernel_size=3, weight_binarizer="lns", binarizer_config=config)


@pytest.mark.parametrize("rho", [0.0, 0.005, 0.2])
def test_corrected_loss_equal_rates_closed_form(rho: float) -> None:
    torch.manual_seed(0)
    q = torch.randn(1000, dtype=torch.float64) * 2
    t = sign(torch.randn(1000, dtype=torch.float64))
    closed = ((q - t / (1 - 2 * rho)) ** 2 + 1 - 1 / (1 - 2 * rho) ** 2).sum()
    assert torch.allclose(corrected_loss(q, t, rho, rho), closed)


def test_corrected_loss_is_a_sum_not_a_mean() -> None:
    q, t = torch.full((10,), 0.5), torch.ones(10)
    assert corrected_loss(q, t, 0.0, 0.0).item() == pytest.approx(10 * 0.25)


def test_corrected_loss_is_unbiased_under_label_noise() -> None:
    """Flip clean labels with rates rho_pos / rho_neg; the corrected loss averages to the clean loss."""
    generator = torch.Generator().manual_seed(1)
    rho_pos, rho_neg, trials, size = 0.2, 0.1, 40_000, 64
    q = torch.randn(size, generator=generator, dtype=torch.float64)
    clean = sign(torch.randn(size, generator=generator, dtype=torch.float64))
    flip_rate = torch.where(clean > 0, rho_pos, rho_neg)
    flips = torch.rand(trials, size, generator=generator, dtype=torch.float64) < flip_rate
    noisy = torch.where(flips, -clean, clean)
    # mean corrected loss of each chunk of 1000 trials (corrected_loss sums over everything it gets)
    chunks = noisy.view(40, trials // 40, size)
    corrected = torch.stack(
        [corrected_loss(q, labels, rho_pos, rho_neg) / labels.shape[0] for labels in chunks]
    )
    naive = ((q - noisy) ** 2).sum(dim=1)
    clean_loss = ((q - clean) ** 2).sum()
    standard_error = corrected.std() / len(corrected) ** 0.5
    assert abs(corrected.mean() - clean_loss) < 4 * standard_error
    # The test has the power to see a bias: the uncorrected loss misses by far more.
    assert abs(naive.mean() - clean_loss) > 10 * standard_error


def test_alpha_zero_gives_no_auxiliary_gradient() -> None:
    conv = lns_conv(alpha=0.0)
    conv(torch.randn(2, 8, 5, 5))
    aux_loss(conv).backward()
    assert all(p.grad is None or not p.grad.any() for p in binarizer_parameters(conv))
    assert conv.weight.grad is None or not conv.weight.grad.any()
    conv_on = lns_conv(alpha=1.0)
    aux_loss(conv_on).backward()
    assert any(p.grad is not None and p.grad.any() for p in binarizer_parameters(conv_on))


def test_aux_loss_matches_formula_and_is_weighted_by_alpha() -> None:
    conv = lns_conv(alpha=0.5, rho_pos=0.01, rho_neg=0.03)
    q = conv.weight_binarizer.mapping(conv.weight)
    expected = 0.5 * corrected_loss(q, sign(conv.weight), 0.01, 0.03)
    assert torch.allclose(aux_loss(conv), expected)


def test_lns_binary_weight_is_scaled_sign_of_mapping_output() -> None:
    conv = lns_conv()
    weight = conv.binary_weight()
    q = conv.weight_binarizer.mapping(conv.weight)
    assert torch.equal(weight, channel_scale(conv.weight) * sign(q))
    conv.eval()  # mapping BatchNorm uses batch statistics: same bits in eval mode
    assert torch.equal(conv.binary_weight(), weight)


def test_cross_entropy_gradient_reaches_mapping_through_ste() -> None:
    conv = lns_conv()
    x = torch.randn(4, 8, 5, 5)
    F.mse_loss(conv(x), torch.randn(4, 16, 5, 5)).backward()
    assert all(p.grad is not None for p in binarizer_parameters(conv))
    assert any(p.grad.any() for p in binarizer_parameters(conv))


def test_cached_mapping_output_is_reused_only_while_weights_are_unchanged() -> None:
    conv = lns_conv()
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.1)
    conv(torch.randn(2, 8, 5, 5))
    binarizer = conv.weight_binarizer
    cached_q = binarizer._cached[0]
    assert binarizer.mapped(conv.weight) is cached_q
    loss = aux_loss(conv)
    loss.backward()
    conv(torch.randn(2, 8, 5, 5))
    optimizer.step()  # changes W in place: the cached q is stale
    assert binarizer.mapped(conv.weight) is not binarizer._cached[0]
    fresh = 1.0 * corrected_loss(binarizer.mapping(conv.weight), sign(conv.weight), 0.005, 0.005)
    assert torch.allclose(aux_loss(conv), fresh)


def test_mapping_network_shape_and_width() -> None:
    binarizer = LNSWeightBinarizer((16, 8, 3, 3), width=3)
    widths = [m.out_channels for m in binarizer.mapping.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [24, 24, 8]
    assert all(
        not m.track_running_stats for m in binarizer.mapping.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert binarizer.mapping(torch.randn(16, 8, 1, 1)).shape == (16, 8, 1, 1)  # 1x1 convs work too


def test_model_level_helpers() -> None:
    plain = create_model("fmnist-bnn", width=32)
    assert aux_loss(plain).item() == 0.0 and binarizer_parameters(plain) == []
    lns = create_model("fmnist-bnn", width=32, weight_binarizer="lns")
    mapping = binarizer_parameters(lns)
    assert len(mapping) == 3 * 8  # 3 binary layers x (3 conv weights + 1 conv bias + 2 x BN affine)
    lns(torch.randn(2, 1, 28, 28))
    assert aux_loss(lns).ndim == 0 and aux_loss(lns).item() != 0.0


@pytest.mark.parametrize(
    "config",
    [{"rho_pos": 0.6, "rho_neg": 0.5}, {"rho": -0.1}, {"alpha": -1.0}, {"width": 0}, {"gamma": 1.0}],
)
def test_bad_lns_config_is_a_trainer_error(config: dict) -> None:
    with pytest.raises(TrainerError):
        BinaryConv2d(8, 8, weight_binarizer="lns", binarizer_config=config)


def test_model_with_cached_mapping_can_be_deep_copied() -> None:
    conv = lns_conv()
    conv(torch.randn(2, 8, 5, 5))  # caches q with its autograd graph
    twin = copy.deepcopy(conv)
    assert twin.weight_binarizer._cached is None and conv.weight_binarizer._cached is not None
    assert torch.equal(twin.binary_weight(), conv.binary_weight())


def test_aux_reduction_mean_is_the_sum_over_the_weight_count() -> None:
    summed, averaged = lns_conv(alpha=2.0), lns_conv(alpha=2.0, reduction="mean")
    averaged.load_state_dict(summed.state_dict())
    assert torch.allclose(aux_loss(averaged) * summed.weight.numel(), aux_loss(summed))
    assert averaged.weight_binarizer.reduction == "mean" and "reduction=mean" in repr(averaged)
    with pytest.raises(TrainerError, match="reduction must be one of sum, mean"):
        lns_conv(reduction="median")
    from trainer.binarizers import AUX_REDUCTIONS
    from trainer.lns import REDUCTIONS

    assert AUX_REDUCTIONS == REDUCTIONS  # the CLI's torch-free copy of the choices


def test_warmup_loss_is_the_alpha_free_corrected_loss_of_the_mapping_only() -> None:
    conv = lns_conv(alpha=0.0, rho=0.01)
    loss = conv.weight_binarizer.warmup_loss(conv.weight)
    expected = corrected_loss(conv.weight_binarizer.mapping(conv.weight), sign(conv.weight), 0.01, 0.01)
    assert torch.allclose(loss, expected) and loss.item() != 0.0  # alpha does not scale it
    loss.backward()
    assert conv.weight.grad is None  # the latent weight is only the mapping's input
    assert all(p.grad is not None for p in binarizer_parameters(conv))
