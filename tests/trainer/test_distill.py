"""Knowledge distillation: the KL term, gradients reach the student only, the teacher is checked
before any work, and resume stays bit-exact with a teacher."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from edgebnn.cli import main
from trainer.checkpoint import load_checkpoint, new_checkpoint, save_checkpoint
from trainer.data import load_dataset
from trainer.distill import distillation_loss, load_teacher
from trainer.errors import TrainerError
from trainer.objective import Objective
from trainer.train import INTERRUPT_AT_STEP_ENV, TrainConfig, train
from trainer.zoo import create_model

TINY = dict(
    model="fmnist-bnn",
    model_options={"width": 8},
    data="synthetic",
    subset=256,
    val_size=100,
    batch_size=64,
    augment=True,
    threads=1,
    verbose=False,
)
TINY_ARGS = [
    "--model", "fmnist-bnn", "--model-option", "width=8", "--data", "synthetic", "--subset", "256",
    "--val-size", "100", "--batch-size", "64", "--threads", "1",
]  # fmt: skip


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def without_times(history: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in row.items() if k not in ("images_per_s", "epoch_time_s", "eval_time_s")}
        for row in history
    ]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """The full-precision twin (weights and activations ``none``), one epoch on the synthetic set."""
    out = tmp_path_factory.mktemp("teacher") / "fp"
    train(TrainConfig(**TINY, out=str(out), binarizer="none", act_binarizer="none", epochs=1))
    return out / "best.pt"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, teacher) -> Path:
    """Two uninterrupted epochs of a BNN distilled from the teacher."""
    out = tmp_path_factory.mktemp("kd-reference") / "run"
    train(
        TrainConfig(**TINY, out=str(out), teacher=str(teacher), epochs=2, kd_weight=0.7, kd_temperature=2.0)
    )
    return out


def test_distillation_loss_on_known_numbers() -> None:
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    temperature = 2.0
    p_teacher = F.softmax(teacher / temperature, dim=1)
    expected = (p_teacher * (p_teacher.log() - F.log_softmax(student / temperature, dim=1))).sum(1).mean()
    assert distillation_loss(student, teacher, temperature).item() == pytest.approx(
        4.0 * expected.item(), rel=1e-6
    )
    assert distillation_loss(teacher, teacher, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_gradient_reaches_the_student_only(teacher) -> None:
    dataset = load_dataset("synthetic")
    frozen = load_teacher(teacher, dataset.metadata(), dataset.num_classes, torch.device("cpu"))
    statistics_before = {name: buffer.clone() for name, buffer in frozen.named_buffers()}
    torch.manual_seed(0)
    student = create_model("fmnist-bnn", width=8).train()
    inputs, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))

    objective = Objective(teacher=frozen, kd_weight=1.0, kd_temperature=2.0)
    parts = objective(student(inputs), inputs, labels, student)
    parts["loss"].backward()

    assert not frozen.training
    assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())
    assert all(torch.equal(statistics_before[name], buffer) for name, buffer in frozen.named_buffers())
    with torch.no_grad():
        assert not frozen(inputs).requires_grad
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    # kd_weight 1: pure distillation; its gradient is exactly that of the KL term alone
    gradients = {name: p.grad.clone() for name, p in student.named_parameters()}
    student.zero_grad(set_to_none=True)
    with torch.no_grad():
        target = frozen(inputs)
    distillation_loss(student(inputs), target, 2.0).backward()
    assert all(torch.allclose(gradients[name], p.grad) for name, p in student.named_parameters())


def test_loss_mixes_ce_and_kd_with_the_weight(reference) -> None:
    history = load_checkpoint(reference / "last.pt")["history"]
    for row in history:
        assert row["kd"] > 0
        assert row["loss"] == pytest.approx(0.3 * row["ce"] + 0.7 * row["kd"] + row["aux"], rel=1e-6)
    saved = load_checkpoint(reference / "last.pt")
    assert saved["teacher"]["sha256"] and saved["train_config"]["kd_weight"] == 0.7


def test_resume_with_a_teacher_is_bit_exact(reference, teacher, tmp_path) -> None:
    options = dict(TINY, teacher=str(teacher), kd_weight=0.7, kd_temperature=2.0)
    train(TrainConfig(**options, out=str(tmp_path), epochs=1))
    train(TrainConfig(**options, out=str(tmp_path), epochs=2, resume=True))
    resumed, expected = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(reference / "last.pt")
    assert same_state(resumed["state_dict"], expected["state_dict"])
    assert same_state(resumed["optimizer"]["state"][0], expected["optimizer"]["state"][0])
    assert without_times(resumed["history"]) == without_times(expected["history"])


def test_ctrl_c_mid_epoch_with_a_teacher_resumes_exactly(reference, teacher, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(INTERRUPT_AT_STEP_ENV, "6")  # epoch 2, after one step
    args = ["train", *TINY_ARGS, "--augment", "--teacher", str(teacher), "--kd-weight", "0.7",
            "--kd-temperature", "2", "--epochs", "2", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 130
    monkeypatch.delenv(INTERRUPT_AT_STEP_ENV)
    assert main([*args, "--resume"]) == 0
    resumed, expected = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(reference / "last.pt")
    assert same_state(resumed["state_dict"], expected["state_dict"])


def test_resume_refuses_another_teacher(teacher, tmp_path, capsys) -> None:
    other = tmp_path / "other.pt"
    shutil.copy(teacher, other)
    args = ["train", *TINY_ARGS, "--teacher", str(other), "--epochs", "1", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    payload = load_checkpoint(other)
    payload["state_dict"] = {
        k: v + 1 if v.is_floating_point() else v for k, v in payload["state_dict"].items()
    }
    save_checkpoint(other, payload)
    args[args.index("--epochs") + 1] = "2"
    assert main([*args, "--resume"]) == 2
    assert "is not the teacher" in capsys.readouterr().err


def fake_teacher(path: Path, data_name: str = "synthetic", **model_options) -> Path:
    model = create_model("fmnist-bnn", width=8, **model_options)
    save_checkpoint(path, new_checkpoint(model, data={"name": data_name}))
    return path


@pytest.mark.parametrize(
    ("model_options", "data_name", "message"),
    [
        ({"num_classes": 5}, "synthetic", "the teacher has classes 5, the data 'synthetic' has 10"),
        ({"in_channels": 3}, "synthetic", "the teacher has input channels 3"),
        ({"input_size": 32}, "synthetic", "the teacher has input size [32, 32]"),
        ({}, "fashion-mnist", "the teacher was trained on 'fashion-mnist'"),
    ],
)
def test_teacher_of_another_dataset_is_refused_before_any_work(
    model_options, data_name, message, tmp_path, capsys
):
    path = fake_teacher(tmp_path / "teacher.pt", data_name, **model_options)
    code = main(["train", *TINY_ARGS, "--teacher", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("edgebnn: error: --teacher ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "last.pt").exists()


def test_missing_teacher_and_kd_options_without_one(tmp_path, capsys) -> None:
    assert (
        main(["train", *TINY_ARGS, "--teacher", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "a")]) == 2
    )
    assert "--teacher" in capsys.readouterr().err
    with pytest.raises(TrainerError, match="need a --teacher"):
        train(TrainConfig(**TINY, out=str(tmp_path / "b"), kd_weight=0.5))
    with pytest.raises(TrainerError, match="--kd-weight must be in"):
        train(TrainConfig(**TINY, out=str(tmp_path / "c"), teacher="x.pt", kd_weight=1.5))
