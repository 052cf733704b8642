"""The native runtime on a device, the faults that need no device: a missing cross compiler, a library
built for another architecture, an architecture without a build, and --count-instructions where it
cannot count (this host, several threads, lce_benchmark_model). Each is one line and exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from devices import bench, native_library
from devices.errors import DevicesError
from edgebnn.cli import main as edgebnn_main

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_cross_compiler_names_the_package(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(native_library.shutil, "which",
                        lambda name: None if name == "aarch64-linux-gnu-gcc" else real_which(name))  # fmt: skip
    with pytest.raises(DevicesError) as caught:
        native_library.build_library("aarch64", log=lambda message: None)
    message = str(caught.value)
    assert "aarch64-linux-gnu-gcc, which is missing" in message
    assert "sudo apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross" in message
    assert caught.value.exit_code == 2


def test_an_architecture_without_a_build_is_refused():
    with pytest.raises(DevicesError, match="no build for architecture 'riscv64'"):
        native_library.cross_compiler("riscv64", host_machine="x86_64")
    assert native_library.cross_compiler("armv8l", host_machine="x86_64")[0] == "arm-linux-gnueabihf-gcc"


def test_a_library_for_another_architecture_is_refused(tmp_path):
    host_library = ROOT / "runtime" / "native" / "build" / "x86_64" / "libedgebnn.so"
    if not host_library.is_file():
        pytest.skip("needs `make native`")
    with pytest.raises(DevicesError) as caught:
        native_library.check_library(host_library, "aarch64")
    assert "is built for x86_64, but the device is aarch64" in str(caught.value)
    assert "CC=aarch64-linux-gnu-gcc" in str(caught.value)
    native_library.check_library(host_library, "x86_64")  # the right one passes


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="needs gcc-aarch64-linux-gnu")
def test_the_aarch64_library_is_cross_compiled_and_checked():
    path = native_library.build_library("aarch64", log=lambda message: None)
    assert path == native_library.library_path("aarch64")
    assert path.read_bytes()[18:20] == (0xB7).to_bytes(2, "little")  # EM_AARCH64
    native_library.check_library(path, "aarch64")


def _local_target():
    from devices.target import open_target

    return open_target("local")


def test_count_instructions_is_refused_on_this_host(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07" + b"x" * 40)
    with _local_target() as target, pytest.raises(DevicesError, match="works on the emulated Pi only"):
        bench.benchmark_on(target, [model], count_instructions=True)


def test_count_instructions_needs_one_thread_and_no_lce_tool():
    class Emulated:  # the checks read only these two facts of the target
        local, emulated, description = False, True, "emulated rpi4"

    one = bench.Config(0, "m.tflite", "litert", 1, None, True)
    bench._check_counting(Emulated(), [one])  # fine
    with pytest.raises(DevicesError, match="needs --threads 1"):
        bench._check_counting(Emulated(), [one, bench.Config(0, "m.tflite", "litert", 2, None, False)])
    with pytest.raises(DevicesError, match="cannot count lce_benchmark_model"):
        bench._check_counting(Emulated(), [bench.Config(0, "m.tflite", bench.LCE_TOOL, 1, "default", True)])


def test_cli_count_instructions_on_this_host_is_one_line_and_exit_2(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07" + b"x" * 40)
    out = tmp_path / "r.json"
    assert edgebnn_main(["bench", str(model), "--count-instructions", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "works on the emulated Pi only" in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_estimate_shows_the_counts_of_a_bench_report(tmp_path, capsys):
    report = {"schema": "edgebnn-bench/1", "results": [
        {"model": "m.ebnn", "model_name": "m", "runtime": "native", "threads": 1, "kernel": "neon",
         "instructions": 1234567, "instruction_counts": {"engine_instructions": 1200000}},
        {"model": "f.tflite", "model_name": "f", "runtime": "litert", "threads": 1, "kernel": None,
         "instructions": None}]}  # fmt: skip
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    from edgebnn.estimate_cmd import read_counts

    (found,) = read_counts(str(path))
    assert found["instructions"] == 1234567 and found["engine_instructions"] == 1200000
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"results": [report["results"][1]]}))
    assert edgebnn_main(["estimate", "fmnist-bnn", "--counts", str(empty)]) == 2
    assert "no instruction counts in it" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert edgebnn_main(["estimate", "fmnist-bnn", "--counts", str(broken)]) == 2
    assert "not an edgebnn bench report" in capsys.readouterr().err


def test_setup_names_the_missing_compiler_before_downloading_anything(monkeypatch):
    from devices import setup

    real_which = shutil.which
    monkeypatch.setattr(
        native_library.shutil, "which", lambda name: None if name == "cc" else real_which(name)
    )
    monkeypatch.setattr(setup, "download_wheels", lambda *a, **k: pytest.fail("downloaded wheels"))
    with _local_target() as target, pytest.raises(DevicesError) as caught:
        setup.setup_device(target.transport, runtimes=["onnxruntime", "native"], log=lambda message: None)
    assert "with cc, which is missing: sudo apt-get install -y gcc make" in str(caught.value)
    assert "--runtime onnxruntime,litert" in str(caught.value)
