"""`edgebnn pipeline` end to end on the synthetic set with a tiny budget, its skip logic and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgebnn.cli import main as cli_main
from formats.models import read_metadata

TINY = """
data = "synthetic"
model_options = {{ width = 8 }}
subset = 600
val_size = 200
verify_samples = 200
bench_runs = 6
bench_warmup = 1
bench_threads = [1]
out = "{out}"
[baseline]
epochs = 1
[finetune]
epochs = 1
warmup_mapping_steps = 30
"""


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_skips_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(out=out))
    assert cli_main(["pipeline", "--config", str(config)]) == 0
    for name in ("report.md", "training.png", "tradeoff.png", "bench.png", "bench.json", "verify.json",
                 "fmnist-bnn.onnx", "fmnist-bnn-lce.tflite", "fmnist-bnn-float.tflite", "fmnist-bnn.ebnn", "baseline/best.pt",
                 "lns/best.pt", "finetune/best.pt"):  # fmt: skip
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "LNS fine-tuning" in report and "plain fine-tuning (control)" in report
    # LNS warms its mapping networks up without data, then LNS and the control train the same joint
    # epochs; the report gives their paired difference and says what one seed cannot tell.
    assert "data-free mapping warm-up: " in report and "Paired difference, LNS minus plain" in report
    assert "one seed" in report
    epochs = {
        name: [json.loads(line)["epoch"] for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("lns", "finetune")
    }
    assert epochs["lns"] == epochs["finetune"] == [1]
    assert "binary convolutions became LceBconv2d" in report
    verify = json.loads((out / "verify.json").read_text())
    assert verify["samples"] == 200
    assert verify["fmnist-bnn-lce.tflite"]["agreement"] >= 0.999
    assert verify["fmnist-bnn.ebnn"]["agreement"] == 1.0 and verify["fmnist-bnn.ebnn"]["passed"]
    bench = json.loads((out / "bench.json").read_text())
    assert {r["runtime"] for r in bench["results"]} == {"lce", "litert", "onnxruntime", "native"}
    assert all(r["status"] == "ok" for r in bench["results"])
    native = [r for r in bench["results"] if r["runtime"] == "native"]
    assert native and all(r["kernel"] in ("scalar", "avx2", "avx512") for r in native)
    # The report puts the native engine beside LCE's fastest kernel and the float model in LiteRT.
    assert "The native engine against LCE and the float model" in report and "x LiteRT" in report
    assert "binary convolutions became BCONV2D" in report
    # The benchmark is given the accuracy verified on each file (no side file is written or read) ...
    accuracy = {Path(r["model"]).name: r["accuracy"] for r in bench["results"]}
    assert accuracy["fmnist-bnn-lce.tflite"] == verify["fmnist-bnn-lce.tflite"]["accuracy"]
    assert accuracy["fmnist-bnn.onnx"] == verify["onnx"]["accuracy"]
    assert not (out / "fmnist-bnn-lce.json").exists()
    # ... and each .tflite carries the ONNX model's deploy metadata itself.
    lce_meta, onnx_meta = read_metadata(out / "fmnist-bnn-lce.tflite"), read_metadata(out / "fmnist-bnn.onnx")
    assert lce_meta == onnx_meta and lce_meta.normalization and len(lce_meta.labels) == 10
    assert read_metadata(out / "fmnist-bnn.ebnn") == onnx_meta  # and the .ebnn in its metadata section
    first_lce = (out / "fmnist-bnn-lce.tflite").stat().st_mtime_ns

    capsys.readouterr()
    assert cli_main(["pipeline", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("up to date, skipped") == 7
    assert (out / "fmnist-bnn-lce.tflite").stat().st_mtime_ns == first_lce


def test_pipeline_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_key = tmp_path / "bad.toml"
    bad_key.write_text("epochz = 3\n")
    assert cli_main(["pipeline", "--config", str(bad_key)]) == 2
    bad_table = tmp_path / "table.toml"
    bad_table.write_text("[baseline]\nepoch = 3\n")
    assert cli_main(["pipeline", "--config", str(bad_table)]) == 2
    not_toml = tmp_path / "x.toml"
    not_toml.write_text("this is = = not toml")
    assert cli_main(["pipeline", "--config", str(not_toml)]) == 2
    assert cli_main(["pipeline", "--config", str(tmp_path / "missing.toml")]) == 2
    deploy = tmp_path / "deploy.toml"
    deploy.write_text('deploy = "best"\n')
    assert cli_main(["pipeline", "--config", str(deploy)]) == 2
    error = capsys.readouterr().err
    assert "unknown key 'epochz'" in error and "not valid TOML" in error and "not found" in error
    assert "deploy must be" in error and "Traceback" not in error
