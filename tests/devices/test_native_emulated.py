"""The native runtime on the emulated Raspberry Pi 4 (the emulated_pi fixture of conftest.py): the
aarch64 library cross-compiled on this host and shipped with the worker, outputs equal to the host's,
and exact instruction counts (devices.counting) for the native runtime and for LiteRT, as a user
gets them from `edgebnn bench ... --host emulator --count-instructions --json`.

Emulated wall times are not latencies: no test looks at them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from devices.bench import benchmark
from edgebnn.cli import main as edgebnn_main

pytestmark = [pytest.mark.emulated, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def binary_model(tmp_path_factory) -> dict[str, Path]:
    """A small binary .ebnn (QUANTIZE, BCONV2D, BMAXPOOL2D, DENSE...; tests/native/ebnn_models.py) and an input."""
    sys.path.insert(0, str(ROOT / "tests" / "native"))
    from ebnn_models import MODELS  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("native")
    model = folder / "devtest-binary_net.ebnn"
    model.write_bytes(MODELS["binary_net"]())
    from runtime.native import NativeModel

    with NativeModel(model) as host_model:
        shape = host_model.input_shapes[0]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.save(folder / "input.npy", x)
    return {"model": model, "input": folder / "input.npy"}


def test_setup_builds_the_aarch64_library(emulated_pi, capsys):
    assert (
        edgebnn_main(["devices", "setup", "rpi4", "--host", "emulator", "--runtime", "native", "--json"]) == 0
    )
    library = json.loads(capsys.readouterr().out)["native_library"]
    assert library.endswith("build/aarch64/libedgebnn.so")
    assert Path(library).read_bytes()[18:20] == (0xB7).to_bytes(2, "little")  # EM_AARCH64


def test_native_bench_on_the_pi_matches_the_host(emulated_pi, binary_model, tmp_path):
    (record,) = benchmark([binary_model["model"]], device="rpi4", host="emulator", threads=[1], runs=3,
                          warmup=1, input=str(binary_model["input"]), output_dir=tmp_path).results  # fmt: skip
    assert record["status"] == "ok", record["error"]
    assert (record["runtime"], record["emulated"], record["kernel"]) == ("native", True, "neon")
    assert record["device_facts"]["architecture"] == "aarch64"
    from runtime.native import NativeModel

    with NativeModel(binary_model["model"]) as host_model:
        local = host_model.run(np.load(binary_model["input"]))
    remote = np.load(record["output_npy"])
    assert remote.shape == local.shape
    assert np.max(np.abs(remote - local)) <= 1e-5 * max(1.0, float(np.max(np.abs(local))))


def test_count_instructions_native_and_litert(emulated_pi, binary_model, tiny_models, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["bench", str(binary_model["model"]), str(tiny_models["tflite"]), "--device", "rpi4", "--host",
            "emulator", "--count-instructions", "--runs", "2", "--warmup", "1", "--json", str(out)]  # fmt: skip
    assert edgebnn_main(argv) == 0
    assert "guest instructions per inference" in capsys.readouterr().out
    records = {r["runtime"]: r for r in json.loads(out.read_text())["results"]}
    native, litert = records["native"], records["litert"]
    for record in (native, litert):
        assert record["status"] == "ok" and record["emulated"] is True, record["error"]
        counts = record["instruction_counts"]
        assert record["instructions"] > 0 and counts["counted_runs"] == 2
        # Python start-up dwarfs one invoke
        assert counts["process_instructions"] > 10 * record["instructions"]
    # the C engine is repeatable to the instruction (the Python call around it within a few dozen);
    # its ops add up to less than the engine's count
    counts = native["instruction_counts"]
    assert (
        counts["engine_instructions_min"]
        == counts["engine_instructions_max"]
        == counts["engine_instructions"]
    )
    assert counts["instructions_max"] - counts["instructions_min"] < 1000
    assert len(counts["per_op"]) == 12
    assert sum(counts["per_op"]) < counts["engine_instructions"] < native["instructions"]
    assert litert["instruction_counts"]["per_op"] is None

    # `edgebnn estimate` shows them beside its estimate
    assert edgebnn_main(["estimate", "fmnist-bnn", "--counts", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"{native['instructions']:,} instructions per inference" in shown
