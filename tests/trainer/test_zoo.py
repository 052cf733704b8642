"""Model zoo: every model builds, runs, recreates from its config; QuickNet sizes match larq-zoo."""

from __future__ import annotations

import doctest
import importlib
import json

import pytest
import torch

from trainer.errors import TrainerError
from trainer.layers import binary_layers
from trainer.zoo import MODELS, create_model, model_summary

# Small inputs keep the forward passes cheap; the ImageNet models are fully convolutional.
SMALL = {
    "fmnist-bnn": dict(in_channels=1, input_size=28),
    "resnet20": dict(input_size=16),
    "vgg-small": dict(input_size=16, width=32),
    "birealnet18": dict(input_size=32, num_classes=10),
    "quicknet-small": dict(input_size=32, num_classes=10),
    "quicknet": dict(input_size=32, num_classes=10),
    "quicknet-large": dict(input_size=32, num_classes=10),
}

# larq-zoo's published ImageNet figures (docstrings of larq_zoo/sota/quicknet.py, v1.0).
LARQ_ZOO = {
    "quicknet-small": (12_655_688, 4.00),
    "quicknet": (13_234_088, 4.17),
    "quicknet-large": (23_342_248, 5.40),
}


def test_small_settings_cover_the_registry() -> None:
    assert set(SMALL) == set(MODELS)


@pytest.mark.parametrize("name", list(SMALL))
def test_model_builds_runs_and_recreates_from_config(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name])
    config = json.loads(json.dumps(model.config))  # JSON-serialisable
    size = config["input_size"]
    logits = model(torch.randn(2, config["in_channels"], *size))
    assert logits.shape == (2, config["num_classes"])
    assert torch.isfinite(logits).all()
    again = create_model(name, **config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    assert len(binary_layers(model)) > 0


@pytest.mark.parametrize("name", list(SMALL))
def test_first_and_last_layers_are_full_precision(name: str) -> None:
    model = create_model(name, **SMALL[name])
    layers = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear) or hasattr(m, "binary_weight")
    ]
    assert not hasattr(layers[0], "binary_weight")
    assert isinstance(layers[-1], torch.nn.Linear)


def test_binarizer_choice_reaches_every_binary_layer() -> None:
    model = create_model(
        "resnet20", weight_binarizer="lns", activation_binarizer="approx", binarizer_config={"rho": 0.01}
    )
    layers = binary_layers(model)
    assert len(layers) == 18
    assert all(
        layer.weight_binarizer_name == "lns" and layer.activation_binarizer == "approx" for _, layer in layers
    )
    assert all(layer.weight_binarizer.rho_pos == 0.01 for _, layer in layers)


def test_fmnist_bnn_follows_lce_channel_guide() -> None:
    model = create_model("fmnist-bnn")
    for _, layer in binary_layers(model):
        assert layer.in_channels % 32 == 0 and layer.out_channels % 8 == 0


@pytest.mark.parametrize("name", list(LARQ_ZOO))
def test_quicknet_sizes_match_larq_zoo(name: str) -> None:
    params, mebibytes = LARQ_ZOO[name]
    summary = model_summary(create_model(name))
    assert summary["params"] == pytest.approx(params, rel=1e-4)
    assert summary["size_bytes"] / 2**20 == pytest.approx(mebibytes, rel=0.02)


def test_model_summary_counts_fmnist_bnn() -> None:
    summary = model_summary(create_model("fmnist-bnn"), (1, 28, 28))
    binary = 9 * (64 * 64 + 64 * 128 + 128 * 128)
    assert summary["binary_params"] == binary
    assert summary["binary_macs"] == 9 * (28 * 28 * 64 * 64 + 14 * 14 * (64 * 128 + 128 * 128))
    assert summary["size_bytes"] == binary / 8 + 4 * summary["float_params"]
    lns = model_summary(create_model("fmnist-bnn", weight_binarizer="lns"), (1, 28, 28))
    assert lns["params"] == summary["params"]  # mapping networks are training-only
    assert (lns["binary_macs"], lns["float_macs"]) == (summary["binary_macs"], summary["float_macs"])


def test_unknown_model_and_option_are_trainer_errors() -> None:
    with pytest.raises(TrainerError, match="fmnist-bnn, resnet20"):
        create_model("resnet18")
    with pytest.raises(TrainerError, match="valid options: width, blocks, dropout, relu"):
        create_model("fmnist-bnn", depth=3)
    with pytest.raises(TrainerError, match="at least 4x4"):
        create_model("fmnist-bnn", input_size=3)
    with pytest.raises(TrainerError, match="unknown weight binarizer"):
        create_model("fmnist-bnn", weight_binarizer="xnor")


@pytest.mark.parametrize("module_name", ["binarizers", "layers", "lns", "zoo", "checkpoint"])
def test_module_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(f"trainer.{module_name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_fmnist_bnn_relu_option_keeps_the_parameters() -> None:
    with_relu, without = create_model("fmnist-bnn"), create_model("fmnist-bnn", relu=False)
    assert with_relu.state_dict().keys() == without.state_dict().keys()
    assert sum(isinstance(m, torch.nn.ReLU) for m in with_relu.modules()) == 3
    assert not any(isinstance(m, torch.nn.ReLU) for m in without.modules())
