"""End to end over a REAL OpenSSH server: the emulated Raspberry Pi 4 (arm64 Debian under qemu-user,
Cortex-A72, Pi-4 cpuinfo). Checks, runtime setup from wheels fetched on this host, remote benchmarks
whose outputs must equal the host's, hostile file names, faults and clean-up.

Emulated wall times are not latencies: no test looks at them."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from devices import emulator
from devices.bench import benchmark
from devices.errors import DevicesError
from devices.target import open_target
from devices.transport import SSHTransport
from edgebnn.cli import main as edgebnn_main

pytestmark = [pytest.mark.emulated, pytest.mark.slow]


def _remote_workers(state: dict) -> list[str]:
    """Command lines of this test's workers still running inside the emulated Pi. Seen from this host: the
    chroot shares the host's process table (`pgrep` inside it would list every process of the host)."""
    found = []
    for pid in emulator._processes_in(Path(state["rootfs"])):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "devtest" in command and ("runtime.worker" in command or "lce_benchmark_model" in command):
            found.append(command)
    return found


def _leftovers(state: dict) -> tuple[list[str], list[str]]:
    """This test's remote temp files and worker processes that edgebnn left behind (both should be empty)."""
    tmp = Path(state["rootfs"]) / "tmp"
    files = sorted(str(path) for path in tmp.glob("edgebnn-*/**/*devtest*"))
    return files, _remote_workers(state)


def _validate(records: list[dict]) -> None:
    """The records fit runtime/schema.json (the edgebnn-bench/1 report)."""
    import jsonschema

    schema = json.loads(Path(__file__).parents[2].joinpath("runtime", "schema.json").read_text())
    system = {"cpu_model": "emulated", "architecture": "aarch64", "os": "Linux", "os_bits": 64, "cores": 2,
              "engines": {}, "date": "2026-01-01"}  # fmt: skip
    jsonschema.validate({"schema": "edgebnn-bench/1", "system": system, "results": records}, schema)


def test_check_reports_the_emulated_pi(emulated_pi, capsys):
    assert edgebnn_main(["devices", "check", "rpi4", "--host", "emulator", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    facts = report["facts"]
    assert report["emulated"] is True
    assert (facts["architecture"], facts["os_bits"]) == ("aarch64", 64)
    assert facts["glibc"] == "2.36" and facts["python"].startswith("3.11")
    assert facts["cpu_part"] == "0xd08" and "Raspberry Pi 4" in facts["model"]
    assert "sve" not in facts["cpu_features"]
    assert any("lce_benchmark_model not on PATH" in warning for warning in report["warnings"])

    assert edgebnn_main(["devices", "emulate", "rpi4", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["running"] and status["built"] and status["port"] == emulated_pi["port"]
    assert edgebnn_main(["devices", "emulate", "rpi4", "up"]) == 0  # a second `up` reuses the running one
    assert f"port {emulated_pi['port']}" in capsys.readouterr().out.replace("-p ", "port ")


def test_setup_then_bench_matches_the_host(emulated_pi, tiny_models, host_output, tmp_path, capsys):
    assert edgebnn_main(["devices", "setup", "rpi4", "--host", "emulator", "--json"]) == 0
    installed = json.loads(capsys.readouterr().out)["runtimes"]
    assert installed["onnxruntime"] == "1.31.1" and installed["ai_edge_litert"] == "2.3.0"

    cases = [("onnx", "onnxruntime", "input_nchw"), ("tflite", "litert", "input_nhwc")]
    for kind, runtime, input_key in cases:
        records = benchmark([tiny_models[kind]], device="rpi4", host="emulator", runtime=runtime, threads=[1],
                            runs=5, warmup=1, input=str(tiny_models[input_key]), output_dir=tmp_path).results  # fmt: skip
        (record,) = records
        assert record["status"] == "ok", record["error"]
        assert record["emulated"] is True and record["device"] == "rpi4" and record["runtime"] == runtime
        assert record["device_facts"]["architecture"] == "aarch64"
        assert record["runs"] == 5 and record["mean_ms"] > 0 and record["peak_rss_mb"] > 0
        assert record["model"] == str(tiny_models[kind])
        remote = np.load(record["output_npy"])
        local = host_output(tiny_models[kind], np.load(tiny_models[input_key]))
        assert remote.shape == local.shape
        assert np.max(np.abs(remote - local)) <= 1e-5

    _validate(records)
    assert _leftovers(emulated_pi) == ([], [])


def test_hostile_file_names_travel_safely_and_a_broken_model_fails_alone(emulated_pi, tiny_models, tmp_path):
    with open_target("emulator") as target:
        transport = target.transport
        folder = transport.run("mktemp -d /tmp/edgebnn-quoting.XXXXXX", timeout=60).stdout.strip()
        remote = f"{folder}/{tiny_models['hostile'].name}"
        transport.put(tiny_models["hostile"], remote)
        listed = transport.run(f"ls -- {shlex.quote(folder)}", timeout=60).stdout.strip()
        transport.get(remote, tmp_path / "back.onnx")
        transport.run(f"rm -rf -- {shlex.quote(folder)}", timeout=60)
    assert listed == tiny_models["hostile"].name
    assert (tmp_path / "back.onnx").read_bytes() == tiny_models["hostile"].read_bytes()

    # Several models in one run: a broken one gives an "error" record and the others still run.
    records = benchmark([tiny_models["broken"], tiny_models["hostile"]], device="rpi4", host="emulator",
                        runtime="onnxruntime", runs=2, warmup=0).results  # fmt: skip
    assert [record["status"] for record in records] == ["error", "ok"], records[1]["error"]
    assert records[0]["error"]
    assert (
        records[1]["model"] == str(tiny_models["hostile"])
        and records[1]["model_name"] == tiny_models["hostile"].stem
    )
    assert _leftovers(emulated_pi) == ([], [])
    rootfs = Path(emulated_pi["rootfs"])
    assert not list((rootfs / "home" / "pi").rglob("PWNED")) and not list((rootfs / "tmp").rglob("PWNED"))
    _validate(records)


def test_a_hanging_worker_times_out_and_is_killed(emulated_pi, tiny_models):
    (record,) = benchmark([tiny_models["onnx"]], device="rpi4", host="emulator", runtime="onnxruntime",
                          runs=2, warmup=0, timeout_s=10, worker_env={"EDGEBNN_WORKER_FAULT": "hang"}).results  # fmt: skip
    assert record["status"] == "timeout" and "killed" in record["error"]
    assert _leftovers(emulated_pi) == ([], [])


def test_ctrl_c_stops_the_remote_process_and_cleans_up(emulated_pi, tiny_models):
    script = (
        "import sys; from devices.bench import benchmark\n"
        "benchmark([sys.argv[1]], device='rpi4', host='emulator', runtime='onnxruntime', runs=2, warmup=0,\n"
        "             worker_env={'EDGEBNN_WORKER_FAULT': 'hang'})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(tiny_models["onnx"])], stderr=subprocess.PIPE)
    try:
        for _ in range(240):  # wait until the worker really runs on the device
            if _remote_workers(emulated_pi):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the remote worker never started")
        child.send_signal(signal.SIGINT)
        stderr = child.communicate(timeout=120)[1].decode()
    finally:
        child.kill()
    assert "KeyboardInterrupt" in stderr
    assert _leftovers(emulated_pi) == ([], [])


def test_lce_benchmark_model_double_is_pushed_run_and_parsed(emulated_pi, tiny_models, tmp_path):
    """TEST DOUBLE: LCE's aarch64 benchmark binary cannot be obtained here, so a shell script that prints
    the documented output format stands in for it. Everything around it is real: the push, the argv
    (checked by the script), the run over ssh, the parsing, the peak RSS and the clean-up."""
    fake = tmp_path / "lce_benchmark_model"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--num_threads=2*--use_indirect_bgemm=true*) ;; *) echo "ERROR: bad flags $*"; exit 1 ;; esac\n'
        'for a in "$@"; do case "$a" in --graph=*) test -f "${a#--graph=}" || { echo "ERROR: no graph"; exit 1; } ;; esac; done\n'
        "echo 'count=50 first=20907 curr=20811 min=20601 max=21437 avg=20810.9 std=164'\n"
        "echo 'Inference timings in us: Init: 27412, First inference: 22971, Warmup (avg): 21026.4, Inference (avg): 20810.9'\n"
        "echo 'Memory footprint delta from the start of the tool (MB): init=6.85938 overall=11.2227'\n"
    )
    (record,) = benchmark([tiny_models["tflite"]], device="rpi4", host="emulator", runtime="lce", threads=[2],
                          lce_kernel="indirect", lce_benchmark_binary=fake).results  # fmt: skip
    assert record["status"] == "ok", record["error"]
    assert record["runtime"] == "lce_benchmark_model" and record["kernel"] == "indirect"
    assert record["mean_ms"] == pytest.approx(20.8109) and record["first_ms"] == pytest.approx(22.971)
    assert record["peak_rss_mb"] > 0 and record["emulated"] is True
    with pytest.raises(DevicesError, match="built for x86_64, but the device is aarch64"):
        benchmark([tiny_models["tflite"]], device="rpi4", host="emulator", runtime="lce",
                  lce_benchmark_binary=sys.executable)  # fmt: skip


def test_remote_disk_full_is_reported(emulated_pi, tiny_models, tmp_path):
    tiny = Path(emulated_pi["rootfs"]) / "mnt" / "edgebnn-tiny"
    tiny.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(tiny)], check=True)
    try:
        profile = tmp_path / "tinypi.toml"
        profile.write_text('name = "tinypi"\narchitecture = "aarch64"\nremote_tmp = "/mnt/edgebnn-tiny"\n')
        with pytest.raises(DevicesError, match="disk full"):
            benchmark([tiny_models["onnx"]], device="tinypi", device_file=str(profile), host="emulator",
                      runtime="onnxruntime")  # fmt: skip
        assert list(tiny.iterdir()) == []  # the half-copied folder was removed
    finally:
        subprocess.run(["umount", str(tiny)], check=False)


def test_authentication_failure_and_unknown_host_key(emulated_pi, tmp_path):
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    host, port = emulated_pi["host"], emulated_pi["port"]
    with pytest.raises(DevicesError, match="authentication failed"):
        SSHTransport(host, port=port, identity=str(stranger), known_hosts=emulated_pi["known_hosts"]).run(
            "true"
        )
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(DevicesError, match="host key not known"):
        SSHTransport(host, port=port, identity=emulated_pi["identity"], known_hosts=str(empty)).run("true")
    with SSHTransport(host, port=port, identity=emulated_pi["identity"], known_hosts=str(empty),
                      host_key_policy="accept-new") as accepted:  # fmt: skip
        assert accepted.run("uname -m").stdout.strip() == "aarch64"
    assert "ssh-ed25519" in empty.read_text()
