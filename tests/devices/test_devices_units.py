"""Pure parts of the devices stage: parsers, argv construction, traps, wheel tags, ELF checks."""

from __future__ import annotations

import shlex

import pytest

from devices.check import find_traps, parse_facts
from devices.emulator import pi_cpuinfo
from devices.errors import DevicesError
from devices.lce_benchmark import benchmark_argv, elf_machine, parse_output, parse_profile
from devices.profiles import load_profile
from devices.remote import in_dir
from devices.setup import install_command, platform_tags
from devices.transport import AdbTransport, SSHTransport, explain_ssh_failure

HOSTILE = "my model; rm -rf ~ 'quoted' \"dq\" $(id).tflite"

# Lines in the format lce_benchmark_model prints (TFLite benchmark_model + LCE ops), including
# the two count= lines benchmark_model prints (warmup, then timed runs).
LCE_OUTPUT = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [quicknet.tflite]
Loaded model quicknet.tflite
The input model file size (MB): 4.50931
Initialized session in 27.412ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=24 first=22971 curr=20830 min=20655 max=22971 avg=21026.4 std=470
Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=20907 curr=20811 min=20601 max=21437 avg=20810.9 std=164
Inference timings in us: Init: 27412, First inference: 22971, Warmup (avg): 21026.4, Inference (avg): 20810.9
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=6.85938 overall=11.2227
"""


def test_lce_benchmark_output_is_parsed():
    parsed = parse_output(LCE_OUTPUT)
    assert parsed["load_ms"] == pytest.approx(27.412)
    assert parsed["first_ms"] == pytest.approx(22.971)
    assert parsed["warmup_mean_ms"] == pytest.approx(21.0264)
    assert parsed["mean_ms"] == pytest.approx(20.8109)
    assert (parsed["min_ms"], parsed["max_ms"], parsed["std_ms"]) == pytest.approx((20.601, 21.437, 0.164))
    assert (parsed["memory_init_mb"], parsed["memory_overall_mb"]) == pytest.approx((6.85938, 11.2227))


def test_lce_benchmark_output_without_timings_is_an_error():
    with pytest.raises(DevicesError, match="unresolved custom op"):
        parse_output(
            "ERROR: Encountered unresolved custom op: LceQuantize.\nFailed to construct interpreter\n"
        )


# The op profile TFLite's benchmark_model prints with --enable_op_profiling=true (its stats summarizer's
# "Run Order" table; the initialization table comes first and is not the timed runs).
LCE_PROFILE = """\
Profiling Info for Benchmark Initialization:
============================== Run Order ==============================
\t             [node type]\t          [first]\t         [avg ms]\t             [%]\t          [cdf%]\t          [mem KB]\t      [times called]\t            [Name]
\t ModifyGraphWithDelegate\t            0.512\t            0.512\t        100.000%\t        100.000%\t             0.000\t                1\t[ModifyGraphWithDelegate]

Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t             [node type]\t          [first]\t         [avg ms]\t             [%]\t          [cdf%]\t          [mem KB]\t      [times called]\t            [Name]
\t             LceQuantize\t            0.021\t            0.020\t          1.000%\t          1.000%\t             0.000\t                1\t[model/lce_quantize]
\t              LceBconv2d\t            1.900\t            1.800\t         90.000%\t         91.000%\t             0.000\t                2\t[model/bconv 1]
\t                 CONV_2D\t            0.190\t            0.180\t          9.000%\t        100.000%\t             0.000\t                1\t[model/stem]

============================== Top by Computation Time ==============================
"""


def test_lce_benchmark_argv_and_op_profile():
    argv = benchmark_argv("./lce_benchmark_model", "/t/m 1.tflite", threads=2, runs=10, warmup=1, xnnpack=False,
                          kernel="reference", input_file=("input", "/t/x.raw"), profile=True)  # fmt: skip
    assert argv[1:6] == ["--graph=/t/m 1.tflite", "--num_threads=2", "--num_runs=10", "--warmup_runs=1",
                         "--use_xnnpack=false"]  # fmt: skip
    assert "--use_reference_bconv=true" in argv and "--input_layer_value_files=input:/t/x.raw" in argv
    assert "--enable_op_profiling=true" in argv
    profile = parse_profile(LCE_PROFILE, runs=10)
    assert [(e["op"], e["node"], e["count"]) for e in profile] == [
        ("LceBconv2d", "model/bconv 1", 20), ("CONV_2D", "model/stem", 10), ("LceQuantize", "model/lce_quantize", 10),
    ]  # fmt: skip
    assert profile[0]["total_us"] == pytest.approx(18000.0) and profile[0]["mean_us"] == pytest.approx(900.0)
    assert parse_profile(LCE_OUTPUT, runs=10) is None


def test_module_examples_run():
    import doctest
    import importlib
    import os
    import pkgutil
    from unittest import mock

    import devices

    names = sorted(
        f"devices.{info.name}" for info in pkgutil.iter_modules(devices.__path__) if not info.ispkg
    )
    assert {"devices.bench", "devices.remote", "devices.lce_benchmark", "devices.transport"} <= set(names)
    for name in names:
        with mock.patch.dict(os.environ):  # devices.cache's example sets EDGEBNN_CACHE: not for later tests
            result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"


def test_elf_machine_reads_the_architecture():
    aarch64 = b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (0xB7).to_bytes(2, "little") + b"\0" * 40
    x86_64 = b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (0x3E).to_bytes(2, "little") + b"\0" * 40
    assert elf_machine(aarch64) == "aarch64"
    assert elf_machine(x86_64) == "x86_64"
    assert elf_machine(b"#!/bin/sh\necho hi\n") is None


def test_ssh_argv_is_a_list_with_safe_defaults(tmp_path):
    key = tmp_path / "id"
    key.write_text("k")
    ssh = SSHTransport("pi@10.0.0.2", port=2222, identity=str(key))
    argv = ssh.ssh_argv("echo hi")
    assert argv[0] == "ssh" and argv[-3:] == ["--", "pi@10.0.0.2", "echo hi"]
    joined = " ".join(argv)
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=", "IdentitiesOnly=yes"):
        assert option in joined
    assert ["-p", "2222"] == argv[argv.index("-p") : argv.index("-p") + 2]
    assert "StrictHostKeyChecking=accept-new" in " ".join(
        SSHTransport("pi@10.0.0.2", host_key_policy="accept-new").ssh_argv("true")
    )
    scp = ssh.scp_argv("/tmp/a b", "pi@10.0.0.2:/tmp/x y")
    assert scp[0] == "scp" and ["-P", "2222"] == scp[scp.index("-P") : scp.index("-P") + 2]
    assert scp[-2:] == ["/tmp/a b", "pi@10.0.0.2:/tmp/x y"]


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/x", "pi@host;reboot", "a b", ""])
def test_hostile_host_strings_are_refused(host):
    with pytest.raises(DevicesError, match="host must look like"):
        SSHTransport(host)


def test_adb_argv_construction():
    """adb cannot run here (no phone): only the argv it would get is checked."""
    adb = AdbTransport("emulator-5554")
    command = "cd /data/local/tmp && " + shlex.join(["./lce_benchmark_model", f"--graph={HOSTILE}"])
    assert adb.shell_argv(command) == ["adb", "-s", "emulator-5554", "shell", command]
    assert adb.push_argv("/m/x.tflite", "/data/local/tmp/x.tflite") == [
        "adb", "-s", "emulator-5554", "push", "/m/x.tflite", "/data/local/tmp/x.tflite",
    ]  # fmt: skip
    assert adb.pull_argv("/data/local/tmp/o.npy", "o.npy")[3] == "pull"
    with pytest.raises(DevicesError, match="adb serial"):
        AdbTransport("-s evil")


def test_remote_command_quotes_every_word():
    command = in_dir(
        "/tmp/edgebnn-bench.ab", ["python3", "worker.py", HOSTILE], {"EDGEBNN_WORKER_FAULT": "hang"}
    )
    words = shlex.split(command.split("exec ", 1)[1])
    assert words == ["env", "EDGEBNN_WORKER_FAULT=hang", "python3", "worker.py", HOSTILE]
    install = install_command("python3", "/tmp/w x", ["numpy==1.26.4"], venv="/home/pi/my venv", target=None)
    assert "'/home/pi/my venv'" in install and "--no-index" in install


@pytest.mark.parametrize(
    "stderr, expected",
    [
        ("ssh: connect to host 10.0.0.9 port 22: Connection timed out", "unreachable"),
        ("ssh: connect to host 127.0.0.1 port 1: Connection refused", "connection refused"),
        ("pi@127.0.0.1: Permission denied (publickey).", "authentication failed"),
        ("Host key verification failed.", "host key not known"),
        ("ssh: Could not resolve hostname nowhere.invalid: Name or service not known", "cannot resolve"),
    ],
)
def test_ssh_failures_are_explained(stderr, expected):
    assert expected in explain_ssh_failure(stderr, "pi@x")


def test_traps_of_a_32_bit_pi_with_old_glibc():
    facts = parse_facts(
        "arch=armv7l\nbits=32\ncores=4\nglibc=glibc 2.24\nmem_kb=999999\ntmp_free_kb=50000\n"
        'py={"python": "/usr/bin/python3", "version": "3.11.2", "modules": {"onnxruntime": null}}\nvenv_ok=yes\n'
    )
    assert (facts["architecture"], facts["os_bits"], facts["glibc"], facts["python"]) == (
        "armv7l",
        32,
        "2.24",
        "3.11.2",
    )
    traps = " | ".join(find_traps(facts, load_profile("rpi4")))
    assert "32-bit OS" in traps and "slower" in traps
    assert "glibc 2.24 is too old" in traps
    assert "only 48 MB free" in traps
    assert "lce_benchmark_model not on PATH" in traps


def test_a_good_64_bit_pi_has_no_os_traps():
    facts = parse_facts(
        "arch=aarch64\nbits=64\ncores=4\nglibc=glibc 2.36\nmem_kb=3900000\ntmp_free_kb=9000000\n"
        "lce_benchmark_model=/usr/local/bin/lce_benchmark_model\n"
        'py={"python": "/home/pi/.edgebnn/venv/bin/python", "version": "3.11.2", '
        '"modules": {"onnxruntime": "1.31.1", "ai_edge_litert": "2.3.0"}}\nvenv_ok=yes\n'
    )
    assert facts["runtimes"]["onnxruntime"] == "1.31.1"
    assert facts["python_path"] == "/home/pi/.edgebnn/venv/bin/python"
    assert find_traps(facts, load_profile("rpi4")) == []


def test_platform_tags_follow_glibc():
    tags = platform_tags("aarch64", "2.36")
    assert tags[0] == "manylinux_2_36_aarch64" and tags[-2:] == ["manylinux2014_aarch64", "linux_aarch64"]
    assert "manylinux_2_28_aarch64" in tags and "manylinux_2_17_aarch64" in tags
    assert "manylinux_2_28_aarch64" not in platform_tags("aarch64", "2.24")
    with pytest.raises(DevicesError, match="mips"):
        platform_tags("mips", "2.36")


def test_emulated_cpuinfo_looks_like_a_pi4():
    text = pi_cpuinfo(load_profile("rpi4"), "arm64", 4)
    assert text.count("processor\t:") == 4
    assert "CPU part\t: 0xd08" in text and "Raspberry Pi 4" in text
    assert "sve" not in text and "asimddp" not in text
    assert "CPU architecture: 7" in pi_cpuinfo(load_profile("rpi4"), "armhf", 2)


def test_no_wheels_for_a_32_bit_pi_is_a_clear_error(tmp_path, monkeypatch):
    """Asks PyPI (reachable in CI): numpy 1.26.4 has no armv7l wheel there."""
    from devices.setup import download_wheels

    monkeypatch.setenv("EDGEBNN_CACHE", str(tmp_path))
    with pytest.raises(DevicesError, match=r"no wheels for armv7l .*numpy==1\.26\.4"):
        download_wheels(["numpy==1.26.4"], "armv7l", "2.36", "3.11", log=lambda message: None)
