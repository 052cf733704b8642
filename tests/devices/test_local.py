"""The local transport with hostile file names, the benchmark's remote path run on this machine, the
CLI's listing commands, and the import rule."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from devices.bench import benchmark_on
from devices.target import Target
from devices.transport import LocalTransport
from edgebnn.cli import main as edgebnn_main
from runtime.record import validate

HOSTILE = "a b; touch PWNED 'q' \"dq\" $(touch PWNED2)"


def test_local_transport_keeps_hostile_names_as_data(tmp_path, monkeypatch):
    import shlex

    monkeypatch.chdir(tmp_path)
    source = tmp_path / HOSTILE
    source.write_bytes(b"model bytes")
    with LocalTransport() as local:
        local.put(source, str(tmp_path / (HOSTILE + ".copy")))
        listed = local.run(f"ls -- {shlex.quote(str(tmp_path))}").stdout.splitlines()
    assert sorted(listed) == sorted([HOSTILE, HOSTILE + ".copy"])
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()


def test_list_and_show_as_json(capsys):
    assert edgebnn_main(["devices", "list", "--json"]) == 0
    names = [profile["name"] for profile in json.loads(capsys.readouterr().out)]
    assert {"host", "rpi3", "rpi4", "rpi5", "rpi-zero2", "pixel1"} <= set(names)
    assert edgebnn_main(["devices", "show", "rpi5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cpu"] == "Cortex-A76"
    assert edgebnn_main(["devices", "show", "nope"]) == 2
    assert "unknown device 'nope'" in capsys.readouterr().err


def test_devices_imports_neither_torch_nor_tensorflow():
    code = (
        "import sys, devices.cli, devices.bench, devices.remote, devices.setup, devices.emulator, devices.check\n"
        "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_remote_path_on_this_machine(tiny_models, host_output, tmp_path):
    """This machine reached like a device (files copied to a temp folder, `python -m runtime.worker` run
    there): every option travels, rounds are interleaved, outputs equal the host's, nothing is left."""
    target = Target(LocalTransport(), emulated=False, description="this machine, as a device", local=False)
    x = np.load(tiny_models["input_nchw"])
    report = benchmark_on(
        target, [tiny_models["onnx"], tiny_models["hostile"]], device="rpi4", runtime="onnxruntime",
        threads=(1, 2), runs=4, warmup=1, input=tiny_models["input_nchw"], profile=True, output_dir=tmp_path,
        remote_python=sys.executable, remote_tmp=str(tmp_path),
    )  # fmt: skip
    results = report.results
    assert [(r["model"], r["threads"]) for r in results] == [
        (str(tiny_models["onnx"]), 1), (str(tiny_models["onnx"]), 2),
        (str(tiny_models["hostile"]), 1), (str(tiny_models["hostile"]), 2),
    ]  # fmt: skip
    assert all(r["status"] == "ok" and r["rounds"] == 3 and r["runs"] == 6 for r in results), results
    assert all(r["device"] == "rpi4" and r["profile"] and r["input_shape"] == [1, 1, 8, 8] for r in results)
    assert results[0]["device_facts"]["architecture"] and report.system["device"] == "rpi4"
    assert results[1]["ratio"] is not None and report.settings["rounds"] == 3
    output = np.load(results[0]["output_npy"])
    np.testing.assert_allclose(output, host_output(tiny_models["onnx"], x), rtol=1e-6, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{m.stem}.onnxruntime.npy" for m in (tiny_models["onnx"], tiny_models["hostile"])
    )  # the temp folder is gone, only the kept outputs remain
    assert not (tmp_path / "PWNED").exists()
    validate(report.to_dict())
