"""The benchmark on this host (``devices.bench``, the local target) and ``edgebnn bench``: fresh
workers, interleaved rounds, ratios, records, reports, accuracy, failures."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

from devices.bench import benchmark
from edgebnn.cli import main
from formats.errors import FormatError
from formats.metadata import DeployMetadata
from formats.models import read_metadata
from formats.tflite import write_deploy_metadata as write_tflite
from runtime.errors import BenchError
from runtime.record import merge_rounds, validate
from runtime.report import BenchReport


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def three_models(models):
    """One interleaved benchmark of the binary, float and ONNX models (2 rounds, 2 LCE kernels)."""
    return benchmark(
        [models["binary"], models["float"], models["onnx"]], runs=20, warmup=2, rounds=2,
        lce_kernel=("default", "indirect"),
    )  # fmt: skip


def test_report_is_schema_valid_and_complete(three_models, models):
    document = three_models.to_dict()
    validate(document)
    results = document["results"]
    assert [(r["model_name"], r["runtime"], r["kernel"]) for r in results] == [
        ("tiny_bnn", "lce", "default"),
        ("tiny_bnn", "lce", "indirect"),
        ("tiny_float", "litert", None),
        ("tiny_cnn", "onnxruntime", None),
    ]
    for r in results:
        assert r["status"] == "ok" and r["rounds"] == 2 and r["runs"] == 20 == len(r["latencies_ms"])
        assert r["median_ms"] == pytest.approx(float(np.median(r["latencies_ms"])))
        assert r["imported_tensorflow"] is False
        assert (
            r["model_size_bytes"]
            == models[{"tiny_bnn": "binary", "tiny_float": "float", "tiny_cnn": "onnx"}[r["model_name"]]]
            .stat()
            .st_size
        )
    assert results[0]["model_size_bytes"] < results[2]["model_size_bytes"] / 5  # binary weights are 1 bit
    assert document["system"]["engines"]["lce"] == results[0]["runtime_version"]


def test_ratios_against_the_first_model(three_models):
    bnn_default, bnn_indirect, float_litert, onnx = three_models.results
    assert bnn_default["ratio"] == 1.0 and bnn_indirect["ratio"] == 1.0  # each against itself
    assert float_litert["ratio"] == pytest.approx(float_litert["median_ms"] / bnn_default["median_ms"])
    assert onnx["ratio"] == pytest.approx(onnx["median_ms"] / bnn_default["median_ms"])
    assert onnx["baseline"] == "tiny_bnn · lce · 1t"


def test_table_names_every_configuration(three_models):
    from rich.console import Console

    console = Console(record=True, width=200, file=io.StringIO())
    three_models.print(console)
    text = console.export_text()
    assert "lce[indirect]" in text and "litert" in text and "onnxruntime" in text
    (float_row,) = [line for line in text.splitlines() if line.startswith("│ tiny_float")]
    assert f"{three_models.results[2]['ratio']:.2f}" in float_row


def test_accuracy_from_deploy_metadata_or_the_argument_never_a_side_file(three_models, models, tmp_path):
    accuracies = {r["model_name"]: r["accuracy"] for r in three_models.results}
    assert accuracies == {"tiny_bnn": None, "tiny_float": None, "tiny_cnn": 0.5}  # ONNX metadata_props
    tagged = tmp_path / "fmnist-bnn.tflite"  # the .tflite `edgebnn` metadata buffer
    tagged.write_bytes(write_tflite(models["binary"].read_bytes(), DeployMetadata(accuracy=0.915)))
    assert read_metadata(tagged).accuracy == 0.915
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(models["float"].read_bytes())
    (tmp_path / "plain.json").write_text(json.dumps({"accuracy": 0.7}))  # e.g. a --embed c manifest
    report = benchmark([tagged, plain], runs=2, warmup=0, rounds=1)
    assert [r["accuracy"] for r in report.results] == [0.915, None]
    given = benchmark([tagged, plain], runs=2, warmup=0, rounds=1, accuracy={str(plain): 0.8, tagged: 0.9})
    assert [r["accuracy"] for r in given.results] == [0.9, 0.8]


def test_json_and_plot_written(three_models, tmp_path):
    path = tmp_path / "bench.json"
    three_models.write_json(path)
    again = BenchReport.read_json(path)
    assert again.results == json.loads(json.dumps(three_models.results))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    plot = tmp_path / "bench.png"
    three_models.plot(plot)
    width, height = png_size(plot)
    assert width > 1000 and height > 200  # two panels: latency boxes and accuracy vs latency
    without_accuracy = BenchReport(
        three_models.system, [r | {"accuracy": None} for r in three_models.results]
    )
    without_accuracy.plot(plot)
    assert png_size(plot)[0] < width  # one panel only


def test_invalid_report_is_refused(three_models, tmp_path):
    broken = three_models.to_dict()
    broken["results"][0]["status"] = "fine"
    with pytest.raises(BenchError, match="schema.json at results/0/status"):
        validate(broken)


def test_failing_worker_is_reported_and_others_still_measured(models, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07" + b"not a protobuf" * 10)
    result = benchmark([models["float"], bad, models["onnx"]], runs=6, warmup=1, rounds=2)
    statuses = [r["status"] for r in result.results]
    assert statuses == ["ok", "error", "ok"]
    assert "ONNX Runtime could not load the model" in result.results[1]["error"]
    assert result.results[1]["rounds"] == 1  # not retried after it failed
    assert any("bad" in w and "error" in w for w in result.warnings)
    validate(result.to_dict())


def test_merge_rounds_pools_latencies():
    base = {"status": "ok", "input_shape": [1, 3], "import_ms": 1.0, "load_ms": 2.0, "first_ms": 3.0,
            "rss_before_mb": 10.0, "rss_after_load_mb": 11.0, "peak_rss_mb": 12.0}  # fmt: skip
    merged = merge_rounds(
        [base | {"latencies_ms": [1.0, 2.0]}, base | {"latencies_ms": [3.0], "peak_rss_mb": 15.0}]
    )
    assert merged["latencies_ms"] == [1.0, 2.0, 3.0] and merged["runs"] == 3 and merged["rounds"] == 2
    assert merged["median_ms"] == 2.0 and merged["peak_rss_mb"] == 15.0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"runtime": "tvm"}, "unknown runtime 'tvm'"),
        ({"threads": (1, 0)}, "threads must be integers >= 1"),
        ({"runs": 0}, "runs must be >= 1"),
        ({"lce_kernel": "turbo"}, "unknown LCE kernel"),
        ({"runtime": "litert"}, "this model needs the LCE runtime"),
    ],
)
def test_bad_input_raises_before_measuring(models, kwargs, message):
    with pytest.raises(BenchError, match=message):
        benchmark([models["binary"]], **kwargs)


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_lce_model_on_litert_exits_2(models, capsys):
    assert main(["bench", str(models["binary"]), "--runtime", "litert"]) == 2
    assert "this model needs the LCE runtime" in capsys.readouterr().err


def test_cli_bad_threads_and_files(models, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(models["onnx"]), "--threads", "0"])
    assert exit_info.value.code == 2
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert main(["bench", str(notes)]) == 2
    assert "is not a model file" in capsys.readouterr().err
    assert main(["bench", str(models["onnx"]), "--host", "pi@10.0.0.2"]) == 2
    assert "add --device NAME" in capsys.readouterr().err
    assert main(["bench", str(models["onnx"]), "--runs", "0"]) == 2  # the library's parameter, as a flag
    assert "--runs must be >= 1" in capsys.readouterr().err
    assert main(["bench", str(models["onnx"]), "--timeout", "0"]) == 2
    assert "--timeout must be positive" in capsys.readouterr().err


def test_cli_writes_table_json_and_plot(models, tmp_path, capsys):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    code = main(["bench", str(models["onnx"]), "--threads", "1,2", "--runs", "8", "--warmup", "1",
                 "--json", str(out_json), "--plot", str(out_png), "--profile"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "tiny_cnn" in out and "onnxruntime" in out and "per-op profile" in out
    document = json.loads(out_json.read_text())
    validate(document)
    assert [r["threads"] for r in document["results"]] == [1, 2]
    png_size(out_png)


def test_cli_passes_device_and_options_to_the_one_benchmark(models, monkeypatch, capsys, tmp_path):
    """--device NAME reaches devices.bench.benchmark with every option (the emulated Pi runs it for real in
    tests/devices/test_emulated.py); here a stand-in records the call and answers like a device."""
    import devices.bench
    from devices.bench import remote_system
    from runtime.worker import system_facts

    calls = []
    template = json.loads(json.dumps(benchmark([models["onnx"]], runs=3, warmup=0).results[0]))

    def stand_in(models_, **options):
        calls.append((models_, options))
        records = [template | {"device": options["device"], "emulated": True}]
        return BenchReport(remote_system(records, options["device"], system_facts()), records)

    monkeypatch.setattr(devices.bench, "benchmark", stand_in)
    out_json = tmp_path / "remote.json"
    code = main(["bench", str(models["onnx"]), "--device", "rpi4", "--host", "pi@10.0.0.2", "--runs", "5",
                 "--json", str(out_json)])  # fmt: skip
    assert code == 0
    ((models_, options),) = calls
    assert models_ == [str(models["onnx"])] and options["host"] == "pi@10.0.0.2" and options["runs"] == 5
    assert (
        options["rounds"] is None and options["timeout_s"] == 300.0 and options["lce_kernel"] == ("default",)
    )
    document = json.loads(out_json.read_text())
    assert document["results"][0]["device"] == "rpi4" and document["results"][0]["emulated"] is True
    assert "EMULATED" in capsys.readouterr().out  # the table says that wall times are not real speed
    assert document["system"]["device"] == "rpi4" and document["system"]["emulated"] is True


def test_remote_system_comes_from_device_facts():
    from devices.bench import remote_system
    from runtime.worker import system_facts

    facts = {"architecture": "aarch64", "os_bits": 64, "cores": 4, "glibc": "2.36", "python": "3.11.2",
             "model": "Raspberry Pi 4 Model B Rev 1.5", "kernel": "6.1.0-rpi7", "host": "pi@10.0.0.2"}  # fmt: skip
    records = [
        {"runtime": "onnxruntime", "runtime_version": "1.31.1", "emulated": False, "device_facts": facts}
    ]
    system = remote_system(records, "rpi4", system_facts())
    assert system["cpu_model"] == "Raspberry Pi 4 Model B Rev 1.5" and system["architecture"] == "aarch64"
    assert system["engines"] == {"onnxruntime": "1.31.1"} and system["cores"] == 4
    validate({"schema": "edgebnn-bench/1", "system": system, "results": []})


def test_cli_exit_1_when_a_worker_fails_and_the_report_still_written(models, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07" + b"not a protobuf" * 10)
    out_json = tmp_path / "r.json"
    assert main(["bench", str(models["onnx"]), str(bad), "--runs", "3", "--json", str(out_json)]) == 1
    statuses = [r["status"] for r in json.loads(out_json.read_text())["results"]]
    assert statuses == ["ok", "error"]
    assert "could not load the model" in capsys.readouterr().out


def test_input_and_kept_output_on_this_host(models, tmp_path):
    """``input`` (an array or a .npy file) reaches every worker; ``output_dir`` keeps each model's answer."""
    from runtime.engines import load_engine

    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    report = benchmark([models["onnx"]], runs=2, warmup=0, input=x, output_dir=tmp_path)
    (result,) = report.results
    assert result["status"] == "ok" and result["input_shape"] == [1, 3, 16, 16]
    assert result["output_npy"] == str(tmp_path / "tiny_cnn.onnxruntime.npy")
    np.testing.assert_allclose(
        np.load(result["output_npy"]), load_engine(models["onnx"]).predict(x), rtol=1e-6
    )
    assert report.settings["input"] == "array"
    np.save(tmp_path / "x.npy", x)
    again = benchmark([models["onnx"]], runs=2, warmup=0, input=tmp_path / "x.npy")
    assert again.results[0]["input_shape"] == [1, 3, 16, 16] and again.settings["input"] == "file"
    with pytest.raises(BenchError, match="input file not found"):
        benchmark([models["onnx"]], input=tmp_path / "missing.npy")
    with pytest.raises(FormatError, match="does not exist"):  # formats.files: the folder must exist
        benchmark([models["onnx"]], output_dir=tmp_path / "missing")
