"""Hostile pipeline configs and device profiles, a full disk, and Ctrl-C during the TensorFlow import.

Every case: exit 2 (130 for Ctrl-C), one line naming the file or key, no traceback, nothing
created or changed; a pipeline config is refused before any stage runs.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_files import REPO, assert_refused, snapshot

PIPELINE_CASES = {
    'epochs = "three"': ('[baseline]\nepochs = "three"\n', "epochs"),
    "bench_runs = -5": ("bench_runs = -5\n", "bench_runs"),
    "bench_threads = [0]": ("bench_threads = [0]\n", "bench_threads"),
    'bench_threads = ["a"]': ('bench_threads = ["a"]\n', "bench_threads"),
    "bench_threads = 2": ("bench_threads = 2\n", "bench_threads"),
    "verify_samples = -1": ("verify_samples = -1\n", "verify_samples"),
    "subset = 1.5": ("subset = 1.5\n", "subset"),
    "control = 1": ("control = 1\n", "control"),
    'lr = "fast"': ('[finetune]\nlr = "fast"\n', "lr"),
    'optimizer = "rmsprop"': ('[baseline]\noptimizer = "rmsprop"\n', "optimizer"),
    "model_options width = -5": ("model_options = { width = -5 }\n", "width"),
    "model_options = 3": ("model_options = 3\n", "model_options"),
    "unknown key": ("colour = 3\n", "colour"),
    "baseline not a table": ("baseline = 3\n", "baseline"),
    "not TOML": ("epochs = = 3\n", "not valid TOML"),
    "not UTF-8": (b"\xff\xfe\x00bad", "not valid TOML"),
}


@pytest.mark.parametrize("case", list(PIPELINE_CASES))
def test_bad_pipeline_config(case: str, tmp_path: Path, edgebnn) -> None:
    text, key = PIPELINE_CASES[case]
    config = tmp_path / "bad.toml"
    config.write_bytes(text if isinstance(text, bytes) else f'out = "{tmp_path / "run"}"\n{text}'.encode())
    before = snapshot(tmp_path)
    assert_refused(edgebnn("pipeline", "--config", config), str(config), key)
    assert snapshot(tmp_path) == before  # refused before any stage: not even the run folder


def test_pipeline_config_inside_a_folder_it_deletes(tmp_path: Path, edgebnn) -> None:
    run = tmp_path / "run"
    (run / "baseline").mkdir(parents=True)
    config = run / "baseline" / "my.toml"
    config.write_text(f'out = "{run}"\n')
    before = snapshot(tmp_path)
    assert_refused(edgebnn("pipeline", "--config", config), str(config))
    assert snapshot(tmp_path) == before


PROFILE_CASES = {
    "cores a string": ('cores = "four"\n', "cores"),
    "bad name": ('name = "Bad Name!"\n', "name"),
    "connection": ('connection = "carrier-pigeon"\n', "connection"),
    "cost_model not a table": ("cost_model = 5\n", "cost_model"),
    "cost_model rate a string": ('[cost_model]\nbinary_macs_per_s = "fast"\nfloat_macs_per_s = 1.0\n'
                                 'memory_bytes_per_s = 1.0\nthread_efficiency = 0.5\n', "cost_model"),
    "negative rate": ("[cost_model]\nbinary_macs_per_s = -1.0\nfloat_macs_per_s = 1.0\n"
                      "memory_bytes_per_s = 1.0\nthread_efficiency = 0.5\n", "board"),
    "sources not a table": ("[cost_model]\nsources = 5\n", "sources"),
    "not TOML": ("name = \n", "not valid TOML"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PROFILE_CASES))
def test_bad_device_profile(case: str, tmp_path: Path, edgebnn, valid) -> None:
    text, key = PROFILE_CASES[case]
    profile = tmp_path / "board.toml"
    base = 'name = "board"\nclock_mhz = 1000\ncores = 2\n'
    lines = [line for line in base.splitlines() if line.split("=")[0].strip() != text.split("=")[0].strip()]
    profile.write_text("\n".join(lines) + "\n" + text)
    before = snapshot(tmp_path)
    for argv in (
        ("estimate", valid["tflite"], "--device-file", profile),
        ("devices", "show", "board", "--device-file", profile),
    ):
        rc, err = edgebnn(*argv)
        if argv[0] == "devices" and "cost_model" in text:
            continue  # `devices show` prints tables it does not interpret (the cost model is estimate's)
        assert_refused((rc, err), key)
    assert snapshot(tmp_path) == before


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_during_our_writes(tmp_path: Path, valid, edgebnn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write goes through formats.files: a full disk there is one clean line naming the file."""
    import formats.files

    monkeypatch.setattr(formats.files, "_write_temporary", _no_space)
    before = snapshot(tmp_path)
    cases = [
        (("estimate", valid["tflite"], "--json", tmp_path / "e.json"), "e.json"),
        (("export", valid["checkpoint"], "-o", tmp_path / "m.onnx"), "m.onnx"),
        (("train", "--model", "fmnist-bnn", "--model-option", "width=8", "--data", "synthetic", "--epochs", "1",
          "--subset", "64", "--val-size", "16", "--threads", "1", "--out", tmp_path / "run"), "run"),
        (("data", "show", "synthetic", "--out", tmp_path / "grid.png"), "grid.png"),
    ]  # fmt: skip
    for argv, name in cases:
        message = assert_refused(edgebnn(*argv), name)
        assert "No space left on device" in message
    leftovers = {k: v for k, v in snapshot(tmp_path).items() if k not in before}
    assert all(value == "dir" for value in leftovers.values()), leftovers  # no file, not even a temporary


def test_full_disk_inside_a_library(tmp_path: Path, valid, edgebnn, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library's own temporary file on a full disk (here: the ONNX export): exit 2, one line."""
    import trainer.export

    monkeypatch.setattr(trainer.export, "export_checkpoint_proto", _no_space)
    message = assert_refused(edgebnn("export", valid["checkpoint"], "-o", tmp_path / "m.onnx"))
    assert "No space left on device" in message
    assert not (tmp_path / "m.onnx").exists()


def test_full_disk_during_bench_plot(tmp_path: Path, valid, edgebnn, monkeypatch: pytest.MonkeyPatch) -> None:
    import formats.files

    real = formats.files._write_temporary

    def no_space_for_png(path, data):
        if str(path).endswith(".png"):
            _no_space()
        return real(path, data)

    monkeypatch.setattr(formats.files, "_write_temporary", no_space_for_png)
    message = assert_refused(edgebnn("bench", valid["onnx"], "--runs", "2", "--warmup", "0", "--plot",
                                     tmp_path / "b.png"), "b.png")  # fmt: skip
    assert "No space left on device" in message
    assert not (tmp_path / "b.png").exists()


INTERRUPT_DURING_TF_IMPORT = """
import builtins, os, signal, sys
real_import, fired = builtins.__import__, []
def interrupting(name, *args, **kwargs):
    if not fired and name.startswith("tensorflow.python"):  # the middle of `import tensorflow`
        fired.append(name)
        os.kill(os.getpid(), signal.SIGINT)
    return real_import(name, *args, **kwargs)
builtins.__import__ = interrupting
from edgebnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_the_tensorflow_import(tmp_path: Path, valid) -> None:
    out = tmp_path / "m.tflite"
    done = subprocess.run([sys.executable, "-c", INTERRUPT_DURING_TF_IMPORT, "convert", str(valid["onnx"]), "-o",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "edgebnn: interrupted" in done.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
