"""Hostile checkpoints, model options and training options through `train`, `export`, `summary`.

Every case: exit 2, one line naming the file or option, no traceback, nothing created or changed.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from hostile_files import assert_refused, snapshot

TRAIN = ("train", "--model", "fmnist-bnn", "--data", "synthetic", "--epochs", "1", "--subset", "64",
         "--val-size", "16", "--threads", "1")  # fmt: skip


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _tampered(valid: dict[str, Path], change) -> bytes:
    payload = torch.load(valid["checkpoint"], weights_only=True)
    change(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def test_malicious_checkpoint_never_runs_and_never_suggests_unsafe_loading(
    work: Path, valid: dict[str, Path], edgebnn
) -> None:
    marker = work / "PWNED"
    evil = work / "evil.pt"
    buffer = io.BytesIO()
    torch.save({"format": "edgebnn-checkpoint/1", "x": Payload(marker)}, buffer)
    evil.write_bytes(buffer.getvalue())
    before = snapshot(work)
    for argv in (("export", evil, "-o", work / "x.onnx"), ("summary", evil),
                 (*TRAIN, "--init", evil, "--out", work / "run")):  # fmt: skip
        message = assert_refused(edgebnn(*argv), str(evil))
        assert "weights_only" not in message  # never invite an unsafe load
        assert not marker.exists()
    assert snapshot(work) == before


def test_plain_pickle_checkpoint(work: Path, edgebnn) -> None:
    marker = work / "PWNED"
    evil = work / "plain.pt"
    evil.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    assert_refused(edgebnn("summary", evil), str(evil))
    assert not marker.exists()


CORRUPT = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty zip": lambda data: _zip({}),
    "zip without data.pkl": lambda data: _zip({"archive/version": b"3\n"}),
    "bit flips": lambda data: bytes(b ^ 0x5A if 200 < i < 400 else b for i, b in enumerate(data)),
    "header only": lambda data: data[:8],
}


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue() or b"PK\x05\x06" + bytes(18)


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_checkpoint(case: str, work: Path, valid: dict[str, Path], edgebnn) -> None:
    bad = work / "bad.pt"
    bad.write_bytes(CORRUPT[case](valid["checkpoint"].read_bytes()))
    before = snapshot(work)
    assert_refused(edgebnn("export", bad, "-o", work / "bad.onnx"), str(bad))
    assert snapshot(work) == before


TAMPERED_CONFIG = {
    "width=-5": ("width", -5), "width=0": ("width", 0), "width='abc'": ("width", "abc"),
    "width=8.5": ("width", 8.5), "blocks=-1": ("blocks", -1), "dropout=5": ("dropout", 5),
    "num_classes='ten'": ("num_classes", "ten"), "input_size=[-1, 28]": ("input_size", [-1, 28]),
    "unknown option": ("colour", "red"), "huge width": ("width", 10**7),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TAMPERED_CONFIG))
def test_tampered_checkpoint_config(case: str, work: Path, valid: dict[str, Path], edgebnn) -> None:
    key, value = TAMPERED_CONFIG[case]
    bad = work / "tampered.pt"
    bad.write_bytes(_tampered(valid, lambda p: p["model"]["config"].__setitem__(key, value)))
    before = snapshot(work)
    assert_refused(edgebnn("export", bad, "-o", work / "t.onnx"), key)
    assert snapshot(work) == before


def test_tampered_checkpoint_structure(work: Path, valid: dict[str, Path], edgebnn) -> None:
    cases = {
        "no model name": lambda p: p["model"].__setitem__("name", 5),
        "unknown model": lambda p: p["model"].__setitem__("name", "resnet9000"),
        "state_dict of strings": lambda p: p.__setitem__("state_dict", {"w": "x"}),
        "wrong format": lambda p: p.__setitem__("format", "other/1"),
        "missing tensor": lambda p: p["state_dict"].popitem(),
    }
    for case, change in cases.items():
        bad = work / "s.pt"
        bad.write_bytes(_tampered(valid, change))
        rc, err = edgebnn("export", bad, "-o", work / "s.onnx")
        assert rc == 2 and err.startswith("edgebnn: error:"), (case, err)
        assert not (work / "s.onnx").exists()


MODEL_OPTIONS = ["width=-5", "width=0", "width=abc", "width=8.5", "blocks=-1", "dropout=5", "stem_pool=1",
                 "width=100000000", "noequals", "colour=red"]  # fmt: skip


@pytest.mark.parametrize("option", MODEL_OPTIONS)
def test_bad_model_option(option: str, tmp_path: Path, edgebnn) -> None:
    message = assert_refused(edgebnn(*TRAIN, "--model-option", option, "--out", tmp_path / "run"))
    assert option.partition("=")[0] in message
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


@pytest.mark.parametrize(
    "flag,value",
    [("--gamma", "1e12"), ("--gamma", "0"), ("--lr", "nan"), ("--lr", "inf"), ("--momentum", "1.5"),
     ("--batch-size", "0"), ("--val-size", "-3"), ("--label-smoothing", "1")],
)  # fmt: skip
def test_bad_training_option(flag: str, value: str, tmp_path: Path, edgebnn) -> None:
    assert_refused(edgebnn(*TRAIN, flag, value, "--out", tmp_path / "run"), flag)
    assert not (tmp_path / "run").exists()


def test_failed_run_leaves_no_empty_folder(tmp_path: Path, edgebnn) -> None:
    assert_refused(edgebnn("train", "--model", "fmnist-bnn", "--data", "fashion-mnist", "--data-dir",
                           tmp_path / "nowhere", "--out", tmp_path / "run"), "nowhere")  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag,value", [("--lr", "0.5"), ("--momentum", "0.5"), ("--weight-decay", "0.1")])
def test_resume_refuses_changed_optimizer_options(
    flag: str, value: str, tmp_path: Path, valid, edgebnn
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(valid["run"], run)
    before = snapshot(run)
    message = assert_refused(edgebnn(*TRAIN, "--model-option", "width=8", "--batch-size", "32", "--out", run,
                                     "--resume", flag, value), "--resume", flag.lstrip("-").replace("-", "_"))  # fmt: skip
    assert "only --epochs, --threads and --device may change" in message
    assert snapshot(run) == before


def test_train_out_over_its_init_checkpoint(tmp_path: Path, valid, edgebnn) -> None:
    run = tmp_path / "run"
    run.mkdir()
    init = run / "best.pt"
    init.write_bytes(valid["checkpoint"].read_bytes())
    before = snapshot(tmp_path)
    assert_refused(edgebnn(*TRAIN, "--model-option", "width=8", "--init", init, "--out", run), str(init))
    assert snapshot(tmp_path) == before


def test_export_output_is_its_checkpoint(work: Path, edgebnn) -> None:
    ckpt = work / "best.pt"
    os.link(ckpt, work / "hard.onnx")
    os.symlink(ckpt, work / "soft.onnx")
    before = snapshot(work)
    for output in (ckpt, work / "hard.onnx", work / "soft.onnx"):
        assert_refused(edgebnn("export", ckpt, "-o", output), "-o", str(output))
    assert snapshot(work) == before


def test_export_into_a_missing_folder_is_refused_like_convert(work: Path, edgebnn) -> None:
    before = snapshot(work)
    assert_refused(edgebnn("export", work / "best.pt", "-o", work / "missing" / "m.onnx"), "missing")
    assert_refused(edgebnn("convert", work / "tiny.onnx", "-o", work / "missing" / "m.ebnn"), "missing")
    assert snapshot(work) == before
