"""The data-free LNS warm-up: it reaches the agreement, changes only the mapping networks, is the
default for LNS runs, is recorded and never redone on resume; flip rates count from the baseline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.checkpoint import MAPPING_MARKER, load_checkpoint, load_state_strict, model_from_checkpoint
from trainer.layers import binarizer_parameters, flip_rate, latent_signs, weight_signs
from trainer.train import TrainConfig, train
from trainer.warmup import DEFAULT_STEPS, TARGET_AGREEMENT, agreement, planned_steps, warm_up_mappings
from trainer.zoo import create_model

TINY = dict(
    model="fmnist-bnn",
    model_options={"width": 8},
    data="synthetic",
    subset=256,
    val_size=100,
    batch_size=64,
    threads=1,
    verbose=False,
)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """Two epochs of a plain STE BNN: the --init starting point."""
    out = tmp_path_factory.mktemp("warmup-baseline") / "run"
    train(TrainConfig(**TINY, out=str(out), epochs=2))
    return out / "best.pt"


def lns_from(baseline: Path, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(
        "fmnist-bnn", num_classes=10, in_channels=1, input_size=28, width=8, weight_binarizer="lns",
        binarizer_config=config,
    )  # fmt: skip
    load_state_strict(model, load_checkpoint(baseline)["state_dict"])
    return model


@pytest.mark.parametrize("config", [{"alpha": 1.0}, {"alpha": 0.0}, {"rho": 0.2}, {"reduction": "mean"}])
def test_warmup_reaches_the_agreement_and_changes_only_the_mappings(baseline, config) -> None:
    model = lns_from(baseline, **config)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert min(agreement(model).values()) < 0.9  # a fresh mapping's bits are unrelated to sign(W)

    record = warm_up_mappings(model, max_steps=DEFAULT_STEPS)

    assert record["reached"] and record["steps"] < DEFAULT_STEPS
    assert set(record["agreement"]) == {"2.conv", "4.conv", "5.conv"}
    assert all(value >= TARGET_AGREEMENT for value in record["agreement"].values())
    assert record["agreement"] == agreement(model)
    after = model.state_dict()
    mapping = {name for name in after if MAPPING_MARKER in name}
    for name in after:
        if name in mapping:
            continue
        assert torch.equal(before[name], after[name]), f"{name} changed"  # BatchNorm statistics too
    assert any(not torch.equal(before[name], after[name]) for name in mapping)
    # No gradient reached anything but the mapping networks (the latent weights are detached).
    mapping_ids = {id(p) for p in binarizer_parameters(model)}
    assert all(p.grad is None for p in model.parameters() if id(p) not in mapping_ids)


def test_warmup_stops_at_max_steps(baseline) -> None:
    record = warm_up_mappings(lns_from(baseline), max_steps=3)
    assert record["steps"] == 3 and not record["reached"] and record["max_steps"] == 3


def test_planned_steps_default_for_lns_only() -> None:
    assert planned_steps(None, has_mapping=True, warmup_epochs=0) == DEFAULT_STEPS
    assert planned_steps(None, has_mapping=True, warmup_epochs=2) == 0  # the data warm-up instead
    assert planned_steps(40, has_mapping=True, warmup_epochs=2) == 40  # both, when asked
    assert planned_steps(None, has_mapping=False, warmup_epochs=0) == 0  # ste: nothing to warm up
    assert planned_steps(0, has_mapping=True, warmup_epochs=0) == 0


def test_lns_run_warms_up_by_default_records_it_and_flips_count_from_the_baseline(baseline, tmp_path) -> None:
    result = train(
        TrainConfig(**TINY, out=str(tmp_path), binarizer="lns", init=str(baseline), epochs=1, lr=1e-4)
    )
    record = result.mapping_warmup
    assert record is not None and record["reached"] and 0 < record["steps"] <= DEFAULT_STEPS
    assert record["seconds"] > 0 and record["max_steps"] == DEFAULT_STEPS
    last = load_checkpoint(result.last_checkpoint)
    assert last["mapping_warmup"] == record == load_checkpoint(result.best_checkpoint)["mapping_warmup"]
    assert [row["phase"] for row in result.history] == ["joint"]  # no data epoch was spent on it

    # The first epoch's flip rate counts from sign(W) of the --init baseline (the bits it deploys).
    deployed = latent_signs(model_from_checkpoint(load_checkpoint(baseline)))
    trained = weight_signs(model_from_checkpoint(last))
    assert result.history[0]["flip_rate"] == pytest.approx(flip_rate(deployed, trained))
    assert result.history[0]["flip_rate"] < 0.05  # a fresh mapping's bits would differ by ~50%


def test_resume_after_the_warmup_does_not_redo_it(baseline, tmp_path) -> None:
    options = dict(TINY, binarizer="lns", init=str(baseline), lr=1e-4)
    reference = train(TrainConfig(**options, out=str(tmp_path / "reference"), epochs=2))
    first = train(TrainConfig(**options, out=str(tmp_path / "resumed"), epochs=1))
    resumed = train(TrainConfig(**options, out=str(tmp_path / "resumed"), epochs=2, resume=True))
    assert resumed.mapping_warmup == first.mapping_warmup  # carried over, seconds included: not rerun
    assert resumed.state_hash == reference.state_hash
    assert {k: v for k, v in reference.mapping_warmup.items() if k != "seconds"} == {
        k: v for k, v in resumed.mapping_warmup.items() if k != "seconds"
    }


def test_data_warmup_epochs_stay_an_option(baseline, tmp_path) -> None:
    result = train(
        TrainConfig(
            **TINY, out=str(tmp_path), binarizer="lns", init=str(baseline), warmup_mapping_epochs=1, epochs=1
        )
    )
    assert result.mapping_warmup is None  # --warmup-mapping-epochs replaces the data-free default
    assert [row["phase"] for row in result.history] == ["warmup", "joint"]
    both = train(
        TrainConfig(
            **TINY, out=str(tmp_path / "both"), binarizer="lns", init=str(baseline),
            warmup_mapping_epochs=1, warmup_mapping_steps=20, epochs=1,
        )
    )  # fmt: skip
    assert both.mapping_warmup["max_steps"] == 20


def test_plain_binarizer_has_no_warmup(baseline, tmp_path) -> None:
    result = train(TrainConfig(**TINY, out=str(tmp_path), init=str(baseline), epochs=1))
    assert result.mapping_warmup is None and load_checkpoint(result.last_checkpoint)["mapping_warmup"] is None
