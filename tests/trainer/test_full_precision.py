"""Recipe features: the ``none`` binarizers (full-precision twin, two-stage training), the
``stem_pool`` layout, channels_last training, the default thread count."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgebnn.cli import main
from trainer import distributed
from trainer.binarizers import build_weight_binarizer, get_activation_binarizer
from trainer.checkpoint import load_checkpoint
from trainer.export import deploy_copy
from trainer.layers import BinaryConv2d, binary_layers, parameter_groups, use_channels_last
from trainer.lns import corrected_loss
from trainer.quantizers import sign
from trainer.zoo import create_model, model_summary

TINY_ARGS = [
    "--model", "fmnist-bnn", "--model-option", "width=8", "--data", "synthetic", "--subset", "256",
    "--val-size", "100", "--batch-size", "64", "--threads", "1", "--epochs", "1",
]  # fmt: skip


def test_none_binarizers_are_identities_without_aux_loss() -> None:
    x = torch.tensor([-2.0, -0.5, 0.0, 0.7], requires_grad=True)
    y = get_activation_binarizer("none")(x)
    assert torch.equal(y, x)
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 1.0]  # no clipping: a plain real activation
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    binarize = build_weight_binarizer("none", tuple(weight.shape))
    assert torch.equal(binarize(weight), weight) and binarize.aux_loss(weight).item() == 0.0
    assert binarize.warmup_loss(weight) is None and list(binarize.parameters()) == []


def test_full_precision_layer_is_a_float_conv_with_zero_padding() -> None:
    torch.manual_seed(0)
    conv = BinaryConv2d(3, 5, kernel_size=3, stride=1, weight_binarizer="none", activation_binarizer="none")
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight, padding=1), atol=1e-6)
    strided = BinaryConv2d(
        3, 5, kernel_size=3, stride=2, weight_binarizer="none", activation_binarizer="none"
    )
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1), value=0.0), strided.weight, stride=2)  # TF-SAME, zeros
    assert torch.allclose(strided(x), expected, atol=1e-6)
    # binary activations with real weights (stage 1 of two-stage training): still one-padding
    stage1 = BinaryConv2d(3, 5, kernel_size=3, weight_binarizer="none", activation_binarizer="ste")
    expected = F.conv2d(F.pad(sign(x), (1, 1, 1, 1), value=1.0), stage1.weight)
    assert torch.allclose(stage1(x), expected, atol=1e-6)


@pytest.mark.parametrize("activation", ["none", "ste"])
def test_deploy_copy_of_a_full_precision_model_computes_the_same(activation: str) -> None:
    torch.manual_seed(0)
    model = create_model(
        "fmnist-bnn", width=8, weight_binarizer="none", activation_binarizer=activation
    ).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(deploy_copy(model)(x), model(x), atol=1e-5)


def test_full_precision_twin_counts_as_float() -> None:
    twin = model_summary(
        create_model("fmnist-bnn", weight_binarizer="none", activation_binarizer="none"), (1, 28, 28)
    )
    binary = model_summary(create_model("fmnist-bnn"), (1, 28, 28))
    assert twin["binary_params"] == 0 and twin["binary_macs"] == 0 and twin["binary_layers"] == 0
    assert twin["params"] == binary["params"] and twin["float_params"] == binary["params"]
    assert twin["float_macs"] == binary["binary_macs"] + binary["float_macs"]


def test_full_precision_weights_get_weight_decay() -> None:
    twin = create_model("fmnist-bnn", width=8, weight_binarizer="none")
    latent, rest = parameter_groups(twin, weight_decay=1e-4)[:2]
    assert latent["params"] == [] and len(rest["params"]) == len(list(twin.parameters()))
    binary = create_model("fmnist-bnn", width=8)
    assert len(parameter_groups(binary, weight_decay=1e-4)[0]["params"]) == 3


def test_twin_and_two_stage_training_from_the_cli(tmp_path) -> None:
    assert (
        main(
            [
                "train",
                *TINY_ARGS,
                "--binarizer",
                "none",
                "--act-binarizer",
                "none",
                "--out",
                str(tmp_path / "fp"),
            ]
        )
        == 0
    )
    twin = load_checkpoint(tmp_path / "fp" / "best.pt")
    assert twin["model"]["config"]["weight_binarizer"] == "none" and 0 <= twin["metrics"]["test_acc"] <= 1
    stage1 = tmp_path / "stage1"
    assert (
        main(["train", *TINY_ARGS, "--binarizer", "none", "--act-binarizer", "ste", "--out", str(stage1)])
        == 0
    )
    stage2 = tmp_path / "stage2"
    args = [
        "train",
        *TINY_ARGS,
        "--init",
        str(stage1 / "best.pt"),
        "--binarizer",
        "ste",
        "--out",
        str(stage2),
    ]
    assert main(args) == 0
    first, second = load_checkpoint(stage1 / "best.pt"), load_checkpoint(stage2 / "best.pt")
    assert second["model"]["config"]["weight_binarizer"] == "ste"
    assert first["state_dict"].keys() == second["state_dict"].keys()


def test_stem_pool_layout_quarters_the_binary_work() -> None:
    default = create_model("fmnist-bnn")
    pooled = create_model("fmnist-bnn", stem_pool=True)
    assert pooled(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert isinstance(pooled[2], torch.nn.MaxPool2d)  # right after the float stem conv + BN
    macs, pooled_macs = model_summary(default, (1, 28, 28)), model_summary(pooled, (1, 28, 28))
    # every binary conv runs at half the height and width: exactly a quarter of the MACs
    assert pooled_macs["binary_macs"] == 9 * (14 * 14 * 64 * 64 + 7 * 7 * (64 * 128 + 128 * 128))
    assert pooled_macs["binary_macs"] * 4 == macs["binary_macs"]
    for _, layer in binary_layers(create_model("fmnist-bnn", stem_pool=True, width=32, blocks=[2, 2, 1])):
        assert layer.in_channels % 32 == 0 and layer.out_channels % 8 == 0
    assert create_model("fmnist-bnn").config.get("stem_pool") is None  # the default model is unchanged


@pytest.mark.parametrize("binarizer", ["ste", "lns"])
def test_channels_last_training_deploys_the_same_weights(binarizer: str) -> None:
    torch.manual_seed(0)
    model = create_model("fmnist-bnn", width=32, weight_binarizer=binarizer).train()
    contiguous = create_model("fmnist-bnn", width=32, weight_binarizer=binarizer).train()
    contiguous.load_state_dict(model.state_dict())
    use_channels_last(model)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    for (_, layer), (_, reference) in zip(binary_layers(model), binary_layers(contiguous), strict=True):
        assert layer.weight.is_contiguous()  # latent weights stay as export reads them
        assert torch.equal(layer.binary_weight(), reference.binary_weight())  # bit for bit
    # (the logits may differ in rounding: an activation within rounding of 0 can binarize either way)
    out = model(torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    if binarizer == "lns":
        layer = binary_layers(model)[0][1]
        q = layer.weight_binarizer.mapping(layer.weight)
        assert layer.weight_binarizer.aux_loss(layer.weight).item() == pytest.approx(
            corrected_loss(q, sign(layer.weight), 0.005, 0.005).item(), rel=1e-6
        )


def test_default_threads_are_the_usable_cpus(monkeypatch) -> None:
    import os

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert distributed.default_threads() == cpus
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cpus))  # more processes than CPUs: at least one
    assert distributed.default_threads() == 1
