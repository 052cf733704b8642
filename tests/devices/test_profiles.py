"""Device profiles: built-ins, user folder, --device-file, validation, unknown tables kept."""

from __future__ import annotations

import pytest

from devices.errors import DevicesError
from devices.profiles import load_profile, parse_profile, profile_names

BUILTIN = ("host", "rpi3", "rpi4", "rpi5", "rpi-zero2", "pixel1")


def test_builtin_profiles_load_with_their_facts():
    assert set(BUILTIN) <= set(profile_names())
    rpi4 = load_profile("rpi4")
    assert (rpi4.architecture, rpi4.os_bits, rpi4.cores, rpi4.clock_mhz, rpi4.cpu) == (
        "aarch64",
        64,
        4,
        1500,
        "Cortex-A72",
    )
    assert "asimd" in rpi4.simd and "dotprod" not in rpi4.simd
    rpi5 = load_profile("rpi5")
    assert (rpi5.cpu, rpi5.clock_mhz) == ("Cortex-A76", 2400)
    assert load_profile("rpi3").cpu == "Cortex-A53"
    assert load_profile("pixel1").connection == "adb"
    for name in BUILTIN[1:]:
        assert load_profile(name).lce_runner == "lce_benchmark_model"


def test_host_profile_reads_live_facts():
    import os
    import platform

    host = load_profile("host")
    assert host.architecture == platform.machine()
    assert host.cores == os.cpu_count()
    assert host.memory_mb > 0


def test_unknown_tables_are_kept_for_other_stages(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text(
        'name = "board"\narchitecture = "aarch64"\ncores = 8\n'
        '[cost_model]\nbinary_macs_per_s = 1.5e9\nsource = "measured"\n'
    )
    profile = load_profile("ignored", device_file=path)
    assert profile.cores == 8
    assert profile.extra["cost_model"] == {"binary_macs_per_s": 1.5e9, "source": "measured"}
    assert profile.as_dict()["cost_model"]["source"] == "measured"


def test_user_folder_adds_and_overrides(tmp_path, monkeypatch):
    folder = tmp_path / "edgebnn" / "devices"
    folder.mkdir(parents=True)
    (folder / "jetson.toml").write_text('name = "jetson"\ncores = 6\n')
    (folder / "rpi4.toml").write_text('name = "rpi4"\ncores = 2\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert "jetson" in profile_names()
    assert load_profile("jetson").cores == 6
    assert load_profile("rpi4").cores == 2


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "Bad Name"}, "'name'"),
        ({"name": "x", "cores": "four"}, "'cores' must be a int"),
        ({"name": "x", "connection": "telnet"}, "connection must be one of"),
        ({"name": "x", "os_bits": True}, "'os_bits'"),
    ],
)
def test_invalid_profiles_are_refused(data, message):
    with pytest.raises(DevicesError, match=message):
        parse_profile(data, "x.toml")


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(DevicesError, match="not found"):
        load_profile("x", device_file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(DevicesError, match="not valid TOML"):
        load_profile("x", device_file=broken)
    with pytest.raises(DevicesError, match="unknown device 'nope'; choose from: .*rpi4"):
        load_profile("nope")
