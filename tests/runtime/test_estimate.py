"""The latency cost model: op counting on tiny real LCE graphs (hand-computed), the rates, the fit, the CLI.

The .tflite graph is built by larq + LCE's real converter in a child process (TensorFlow stays out
of the test process); every expected number below is computed by hand from the layer shapes.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgebnn.cli import main
from runtime import cost_calibration as calibration
from runtime.errors import BenchError
from runtime.estimate import (
    CostModel,
    Op,
    PeakRates,
    Tensor,
    count_work,
    estimate,
    read_tflite_ops,
    total_work,
)

BUILD_TINY_LCE = textwrap.dedent(
    """
    import os, sys
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    import larq as lq
    import larq_compute_engine as lce

    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                  use_bias=False)
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(40, 3, padding="same", use_bias=False)(inputs)          # float, cin 3
    x = tf.keras.layers.BatchNormalization()(x)
    y = lq.layers.QuantConv2D(40, 3, padding="same", pad_values=1.0, **binary)(x)    # cin 40 -> 64
    y = tf.keras.layers.BatchNormalization()(y)
    x = tf.keras.layers.add([x, y])
    x = lq.layers.QuantConv2D(64, 3, strides=2, padding="same", pad_values=1.0, **binary)(x)  # stride 2
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(16, 1, **binary)(x)                                     # 1x1, cin 64
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(10)(x)
    with open(sys.argv[1], "wb") as handle:
        handle.write(lce.convert_keras_model(tf.keras.Model(inputs, x)))
    """
)


@pytest.fixture(scope="module")
def tiny_lce(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("estimate") / "tiny_lce.tflite"
    done = subprocess.run(
        [sys.executable, "-c", BUILD_TINY_LCE, str(path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return path


def rates(**overrides) -> CostModel:
    peak = PeakRates(
        core_clock_hz=(1e9, 1e9), binary_macs_per_cycle=100, float_macs_per_cycle=10, memory_bytes_per_s=1e10
    )
    values = dict(
        device="toy",
        peak=peak,
        binary_macs_per_s=1e10,
        float_macs_per_s=1e9,
        memory_bytes_per_s=1e9,
        op_overhead_s=1e-5,
        thread_efficiency=0.5,
        uncertainty=0.1,
        calibrated=True,
    )
    return CostModel(**{**values, **overrides})


# ---- counting on a real converted graph ----------------------------------------------------------


def test_counts_match_hand_computed_work_with_channel_padding(tiny_lce):
    ops = read_tflite_ops(tiny_lce.read_bytes())
    works = [count_work(op) for op in ops]
    by_kind: dict[str, list] = {}
    for work in works:
        by_kind.setdefault(work.op, []).append(work)

    assert [w.float_macs for w in by_kind["CONV_2D"]] == [8 * 8 * 40 * 3 * 3 * 3]  # float: no padding
    # 40 input channels occupy two 32-bit words: the kernel computes 64 channels' worth.
    assert [w.binary_macs for w in by_kind["LceBconv2d"]] == [
        8 * 8 * 40 * 3 * 3 * 64,  # 3x3, 40 -> 40 at 8x8, cin padded to 64
        4 * 4 * 64 * 3 * 3 * 64,  # 3x3 stride 2, 40 (-> 64) -> 64 at 4x4
        4 * 4 * 16 * 1 * 1 * 64,  # 1x1, 64 -> 16 at 4x4, no padding needed
    ]
    assert "cin padded to 64" in by_kind["LceBconv2d"][0].detail
    assert "padded" not in by_kind["LceBconv2d"][2].detail
    assert [w.float_macs for w in by_kind["DEPTHWISE_CONV_2D"]] == [4 * 4 * 16 * 3 * 3]
    assert [w.float_macs for w in by_kind["FULLY_CONNECTED"]] == [16 * 10]
    # ADD of two float 8x8x40 tensors into a third: 3 x 8*8*40*4 bytes.
    assert [w.bytes_moved for w in by_kind["ADD"]] == [3 * 8 * 8 * 40 * 4]
    # Bit-packing: 8x8x40 floats in, 8x8x2 int32 words out.
    assert by_kind["LceQuantize"][0].bytes_moved == 8 * 8 * 40 * 4 + 8 * 8 * 2 * 4
    assert all(w.kind != "unknown" for w in works)

    totals = total_work(works)
    assert totals.binary_macs == 8 * 8 * 40 * 9 * 64 + 4 * 4 * 64 * 9 * 64 + 4 * 4 * 16 * 64
    assert totals.ops == len(ops)


def test_estimate_of_real_graph_is_the_sum_of_its_ops(tiny_lce):
    ops = read_tflite_ops(tiny_lce.read_bytes())
    model = rates()
    result = estimate(ops, model, threads=2)
    expected = sum(model.op_seconds(count_work(op), 2) for op in ops) * 1e3
    assert result.total_ms == pytest.approx(expected)
    assert result.low_ms == pytest.approx(0.9 * expected) and result.high_ms == pytest.approx(1.1 * expected)
    assert 0 < result.bound_ms < result.total_ms
    assert result.unknown_ops == []


def test_read_rejects_a_file_that_is_not_tflite():
    with pytest.raises(BenchError, match="not a TFLite flatbuffer"):
        read_tflite_ops(b"this is not a flatbuffer at all")


# ---- the rates (synthetic ops: exact arithmetic) -------------------------------------------------


def f32(*shape: int, constant: bool = False) -> Tensor:
    return Tensor(shape=shape, dtype="float32", constant=constant)


def test_op_time_follows_the_formula_and_threads_scale_up_to_the_core_count():
    conv = Op("CONV_2D", (f32(1, 4, 4, 2), f32(8, 1, 1, 2, constant=True)), (f32(1, 4, 4, 8),))
    work = count_work(conv)
    assert work.float_macs == 4 * 4 * 8 * 2
    assert work.bytes_moved == 4 * (32 + 16 + 128)
    model = rates()
    busy = work.float_macs / 1e9 + work.bytes_moved / 1e9
    assert model.op_seconds(work, 1) == pytest.approx(1e-5 + busy)
    assert model.op_seconds(work, 2) == pytest.approx(1e-5 + busy / 1.5)
    assert model.op_seconds(work, 8) == model.op_seconds(work, 2)  # only 2 cores


def test_unknown_ops_are_listed_and_left_out_of_the_total():
    add = Op("ADD", (f32(1, 10), f32(1, 10)), (f32(1, 10),))
    custom = Op("MyFancyOp", (f32(1, 10),), (f32(1, 10),))
    with_unknown = estimate([add, custom, custom], rates())
    alone = estimate([add], rates())
    assert with_unknown.unknown_ops == ["MyFancyOp"]
    assert with_unknown.total_ms == pytest.approx(alone.total_ms)
    assert with_unknown.totals.ops == 1


def test_an_op_with_unexpected_shapes_is_unknown_not_a_crash():
    odd_conv = Op("CONV_2D", (f32(1, 10), f32(10, 10, constant=True)), (f32(1, 10),))
    result = estimate([odd_conv, Op("ADD", (f32(1, 10), f32(1, 10)), (f32(1, 10),))], rates())
    assert result.unknown_ops == ["CONV_2D"] and result.totals.ops == 1


def test_a_table_without_fitted_rates_falls_back_to_the_peak_and_says_so():
    table = {
        "peak": {
            "core_clock_hz": [2e9, 2e9],
            "binary_macs_per_cycle": 128,
            "float_macs_per_cycle": 8,
            "memory_bytes_per_s": 1e10,
        }
    }
    model = CostModel.from_table(table, device="board")
    assert not model.calibrated
    assert model.binary_macs_per_s == 2e9 * 128 and model.op_overhead_s == 0
    bconv = Op("LceBconv2d", (None, Tensor((4, 3, 3, 1), "int32", True)), (f32(1, 1, 1, 4),))
    result = estimate([bconv], model, threads=2)
    assert result.totals.binary_macs == 4 * 9 * 32  # 1 packed word = 32 channels
    assert math.isinf(result.high_ms) and result.low_ms == result.total_ms


@pytest.mark.parametrize(
    "table, message",
    [
        ({}, "no \\[cost_model.peak\\]"),
        ({"peak": {"core_clock_hz": [1e9]}}, "incomplete"),
        (
            {
                "peak": {
                    "core_clock_hz": [1e9],
                    "binary_macs_per_cycle": 1,
                    "float_macs_per_cycle": 1,
                    "memory_bytes_per_s": 1,
                },
                "binary_macs_per_s": 0,
                "float_macs_per_s": 1,
                "memory_bytes_per_s": 1,
                "thread_efficiency": 0.5,
            },
            "must be positive",
        ),
    ],
)
def test_bad_cost_model_tables_are_user_errors(table, message):
    with pytest.raises(BenchError, match=message):
        CostModel.from_table(table, device="board")


# ---- the fit -------------------------------------------------------------------------------------


def test_fit_recovers_the_rates_that_generated_the_figures():
    peak = PeakRates((1.5e9,) * 4, 128, 8, 12.8e9)
    works = {}
    for name, blocks in (("a", 2), ("b", 5), ("c", 9)):
        bconv = Op("LceBconv2d", (None, Tensor((64, 3, 3, 2), "int32", True)), (f32(1, 28, 28, 64),))
        add = Op("ADD", (f32(1, 28, 28, 64), f32(1, 28, 28, 64)), (f32(1, 28, 28, 64),))
        works[name] = [count_work(op) for op in [bconv, add] * blocks]
    truth = calibration.FittedRates(
        binary_macs_per_s=5e10,
        float_macs_per_s=calibration.FLOAT_EFFICIENCY * 1.5e9 * 8,
        memory_bytes_per_s=calibration.MEMORY_FRACTION * 12.8e9,
        op_overhead_s=calibration.OP_OVERHEAD_S,
        thread_efficiency=0.4,
    )
    model = truth.cost_model("toy", peak, 0.0)
    figures = [
        calibration.Published(name, "toy", threads, calibration.predict_ms(works[name], model, threads))
        for name in works
        for threads in (1, 4)
    ]
    fitted = calibration.fit_device(works, figures, peak)
    assert fitted.binary_macs_per_s == pytest.approx(5e10, rel=1e-6)
    assert fitted.thread_efficiency == pytest.approx(0.4)
    for prediction in calibration.leave_one_model_out(works, figures, peak):
        assert abs(prediction.relative_error) < 1e-6


def test_published_figures_are_the_twelve_of_the_lce_readme():
    assert len(calibration.PUBLISHED) == 12
    assert {(p.model, p.device, p.threads) for p in calibration.PUBLISHED} == {
        (m, d, t)
        for m in ("quicknet-small", "quicknet", "quicknet-large")
        for d in ("rpi4", "pixel1")
        for t in (1, 4)
    }
    assert calibration.Published("quicknet", "rpi4", 1, 45.0) in calibration.PUBLISHED


def test_shipped_profiles_carry_calibrated_rates_with_sources():
    from edgebnn.estimate_cmd import load_cost_model

    for device in ("rpi4", "pixel1"):
        model = load_cost_model(device)
        assert model.calibrated and 0 < model.uncertainty < 0.25
        assert model.binary_macs_per_s < model.peak.binary_macs_per_s(1)  # below the physical limit
        assert {"binary_macs_per_s", "thread_efficiency", "peak"} <= set(model.sources)


# ---- the command ---------------------------------------------------------------------------------


def test_cli_estimates_a_tflite_and_writes_json(tiny_lce, tmp_path, capsys):
    out = tmp_path / "estimate.json"
    assert main(["estimate", str(tiny_lce), "--device", "rpi4", "--threads", "4", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LceBconv2d" in printed and "theoretical limit" in printed
    document = json.loads(out.read_text())
    assert document["device"] == "rpi4" and document["threads"] == 4 and document["calibrated"]
    assert document["total_ms"] > 0 and document["low_ms"] < document["total_ms"] < document["high_ms"]
    assert document["binary_macs"] == 8 * 8 * 40 * 9 * 64 + 4 * 4 * 64 * 9 * 64 + 4 * 4 * 16 * 64
    assert sum(op["ms"] for op in document["ops"]) == pytest.approx(document["total_ms"])
    assert [p.name for p in tmp_path.iterdir()] == ["estimate.json"]  # no temp file left behind


def test_cli_marks_an_uncalibrated_device(tiny_lce, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["estimate", str(tiny_lce), "--device", "rpi5", "--json", str(out)]) == 0
    assert "no calibrated rates for rpi5" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["calibrated"] is False and document["high_ms"] is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["estimate", "quicknet", "--device", "toaster"], "unknown device 'toaster'; choose from: .*rpi4"),
        (["estimate", "no-such-net", "--device", "rpi4"], "unknown model 'no-such-net'.*quicknet-large"),
        (["estimate", "missing.tflite"], "model file not found"),
        (["estimate", "quicknet", "--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgebnn: error: ") and err.count("\n") == 1
    assert re.search(message, err)


def test_cli_device_with_nothing_to_go_on_names_the_calibrated_ones(tiny_lce, tmp_path, capsys):
    board = tmp_path / "board.toml"
    board.write_text('name = "board"\nconnection = "ssh"\n')
    assert main(["estimate", str(tiny_lce), "--device-file", str(board)]) == 2
    err = capsys.readouterr().err
    assert "device 'board' has no [cost_model] rates" in err and "calibrated devices: pixel1, rpi4" in err


def test_cli_rejects_a_file_that_is_not_tflite(tmp_path, capsys):
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"\x00" * 64)
    assert main(["estimate", str(bogus)]) == 2
    assert "not a TFLite flatbuffer" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_zoo_name_is_converted_once_then_cached_and_onnx_gives_the_same_work(
    tmp_path, monkeypatch, capsys
):
    """fmnist-bnn: trainer.zoo -> trainer.export -> converter.convert, cached; its ONNX estimated directly."""
    monkeypatch.setenv("EDGEBNN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "estimate"
    folder.mkdir(parents=True)
    (folder / "fmnist-bnn-0000000000000000.onnx").write_bytes(b"built by older code")
    (folder / "resnet20-0000000000000000.tflite").write_bytes(b"another model")
    first = tmp_path / "first.json"
    assert main(["estimate", "fmnist-bnn", "--device", "pixel1", "--json", str(first)]) == 0
    cached = sorted(p.name for p in folder.iterdir())
    assert len(cached) == 3 and "fmnist-bnn-0000000000000000.onnx" not in cached  # stale entry dropped
    assert "resnet20-0000000000000000.tflite" in cached

    import converter.conversion

    def no_conversion(*args, **kwargs):
        raise AssertionError("the cached graph should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(converter.conversion, "convert", no_conversion)
        second = tmp_path / "second.json"
        assert main(["estimate", "fmnist-bnn", "--device", "pixel1", "--json", str(second)]) == 0
    assert json.loads(second.read_text())["total_ms"] == json.loads(first.read_text())["total_ms"]

    onnx_file = next(folder.glob("fmnist-bnn-*.onnx"))
    from_onnx = tmp_path / "onnx.json"
    assert main(["estimate", str(onnx_file), "--device", "pixel1", "--json", str(from_onnx)]) == 0
    zoo, direct = json.loads(first.read_text()), json.loads(from_onnx.read_text())
    assert zoo["binary_macs"] > 0 and zoo["binary_macs"] == direct["binary_macs"]
    assert zoo["float_macs"] == direct["float_macs"] and zoo["op_count"] == direct["op_count"]
    capsys.readouterr()
