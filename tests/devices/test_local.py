"""The local transport with hostile file names, the CLI's listing commands, and the import rule."""

from __future__ import annotations

import json
import subprocess
import sys

from devices.transport import LocalTransport
from edgebnn.cli import main as edgebnn_main

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
        "import sys, devices.cli, devices.remote, devices.setup, devices.emulator, devices.check\n"
        "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
