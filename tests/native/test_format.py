"""formats/ebnn.py: the builder, the reader/validator, the bit and threshold helpers, and the
agreement of its tables and checks with the C loader."""

from __future__ import annotations

import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from formats import ebnn
from formats.ebnn import ModelBuilder, bit_output_thresholds, lce_thresholds, pack_bits, read, unpack_bits
from formats.errors import FormatError
from formats.kinds import kind_of_bytes
from formats.metadata import DeployMetadata

NATIVE = Path(__file__).resolve().parents[2] / "runtime" / "native"


def small_model(metadata: DeployMetadata | None = None) -> bytes:
    rng = np.random.default_rng(0)
    b = ModelBuilder(metadata)
    x = b.add_input((1, 5, 5, 40), name="input")
    w = b.add_constant(np.where(rng.standard_normal((8, 3, 3, 40)) >= 0, 1.0, -1.0), "bits", name="w")
    y = b.add_op(
        "BCONV2D",
        [b.add_op("QUANTIZE", [x]), w],
        pad_top=1,
        pad_bottom=1,
        pad_left=1,
        pad_right=1,
        name="conv",
    )
    b.set_outputs([b.add_op("DENSE", [y, b.add_constant(rng.standard_normal((3, 200)).astype(np.float32))])])
    return b.to_bytes()


def with_crc(data: bytearray) -> bytes:
    struct.pack_into("<I", data, 24, 0)
    struct.pack_into("<I", data, 24, zlib.crc32(bytes(data)))
    return bytes(data)


def test_round_trip() -> None:
    meta = DeployMetadata(model="m", input_shape=(40, 5, 5), labels=("a", "b", "c"), accuracy=0.5)
    data = small_model(meta)
    assert kind_of_bytes(data[:8]) == "ebnn"
    info = read(data)
    assert info.version == ebnn.VERSION
    assert [op.op for op in info.ops] == ["QUANTIZE", "BCONV2D", "DENSE"]
    assert (
        info.ops[1].name == "conv"
        and info.ops[1].params["pad_top"] == 1
        and info.ops[1].params["pad_value"] == 1
    )
    assert info.ops[1].explicit == {"pad_top", "pad_bottom", "pad_left", "pad_right"}
    assert info.tensors[info.outputs[0]].shape == (1, 3)
    assert info.deploy_metadata == meta
    assert info.binary_macs() == 5 * 5 * 8 * 9 * 40
    w = info.tensors[1]
    assert w.name == "w" and w.dtype == "bits" and w.data.shape == (8, 3, 3, 2)
    for tensor in info.tensors:
        if tensor.constant:
            offset = data.index(tensor.data.tobytes())
            assert offset % 64 == 0, "constants are 64-byte aligned in the file"


def test_pack_bits_follows_lce() -> None:
    values = np.array([[1.0, -1.0, 0.0, -0.0, -3.0, 2.0] + [1.0] * 30 + [-1.0]])
    words = pack_bits(values)
    assert words.dtype == np.uint32 and words.shape == (1, 2)
    assert words[0, 0] == 0b10010 and words[0, 1] == 1 << 4  # bit 1 = -1, LSB first; 0 and -0.0 are +1
    np.testing.assert_array_equal(unpack_bits(words, 37), np.where(values < 0, -1.0, 1.0))


def test_bit_output_thresholds_match_binarized_float_output() -> None:
    rng = np.random.default_rng(1)
    K = 45
    dots = np.arange(-K, K + 1)
    for _ in range(200):
        m = np.float32(rng.choice([rng.uniform(-3, 3), 0.0, rng.uniform(1e-3, 1e-2)]))
        bias = np.float32(rng.uniform(-50, 50))
        lo, hi = (
            sorted(rng.integers(-K - 2, K + 2, 2)) if rng.random() < 0.5 else (ebnn.INT32_MIN, ebnn.INT32_MAX)
        )
        out_min = float(rng.choice([-math.inf, -1.0, 0.0]))
        threshold, flip = bit_output_thresholds(np.array([m]), np.array([bias]), int(lo), int(hi), out_min)
        y = np.maximum(np.clip(dots, lo, hi).astype(np.float32) * m + bias, np.float32(out_min))
        stored = -dots if flip[0] else dots  # the producer negates flipped filters
        np.testing.assert_array_equal(stored < threshold[0], y < 0, err_msg=f"m={m} b={bias} clamp={lo},{hi}")


def test_lce_thresholds() -> None:
    K = 27
    dots = np.arange(-K, K + 1, 2)  # one-padding: dot has K's parity
    accum = (K - dots) // 2
    for t in range(-3, K + 3):
        mine = lce_thresholds(np.array([t]), K)[0]
        np.testing.assert_array_equal(dots < mine, accum > t)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:40], "truncated"),
        (lambda d: d[: len(d) - 10], "truncated"),
        (lambda d: b"XBNN" + d[4:], "no EBNN magic"),
        (lambda d: d[:4] + b"\x02\x00" + d[6:], "newer than"),
        (lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:], "checksum mismatch"),
    ],
)
def test_reader_refuses_damaged_files(mutate, message) -> None:
    with pytest.raises(FormatError, match=message):
        read(mutate(small_model()))


def test_reader_checks_structure_without_checksum() -> None:
    data = bytearray(small_model())
    table = struct.unpack_from("<Q", data, 32)[0]
    tensors_offset = struct.unpack_from("<Q", data, table + 8)[0]
    struct.pack_into("<I", data, tensors_offset + 8 + 48 + 12, 9)  # filter dims[0] 8 -> 9
    with pytest.raises(FormatError, match="data .* must be"):
        read(bytes(data), verify_checksum=False)
    with pytest.raises(FormatError, match="checksum"):
        read(bytes(data))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda b, x: b.add_op("NOPE", [x]), "unknown op"),
        (lambda b, x: b.add_op("CLIP", [x], stride_h=2), "unknown parameter"),
        (lambda b, x: b.add_op("MAXPOOL2D", [x], kernel_h=2), "kernel_w is required"),
        (lambda b, x: b.add_op("MAXPOOL2D", [x], kernel_h=2, kernel_w=0), "out of range"),
        (lambda b, x: b.add_op("BCONV2D", [x, x]), "must be bits"),
        (lambda b, x: b.add_op("CONCAT", [x], axis=7), "out of range"),
        (lambda b, x: b.add_op("RESHAPE", [x], output_shape=(1, 3)), "must hold"),
        (lambda b, x: b.add_op("ADD", [x, b.add_constant(np.ones(3, np.float32))]), "do not broadcast"),
        (lambda b, x: b.add_op("CLIP", [x], out_min=2.0, out_max=1.0), "larger than"),
        (
            lambda b, x: b.add_op("CONV2D", [x, b.add_constant(np.ones((2, 9, 9, 4), np.float32))]),
            "larger than the padded",
        ),
    ],
)
def test_builder_refuses_bad_ops(build, message) -> None:
    b = ModelBuilder()
    x = b.add_input((1, 4, 4, 4))
    with pytest.raises(FormatError, match=message):
        build(b, x)


def test_tables_agree_with_the_c_loader() -> None:
    header = (NATIVE / "src" / "format.h").read_text()
    opcodes = {
        name: int(code) for name, code in re.findall(r"EBNN_OP_(\w+) = (\d+),", header) if name != "COUNT"
    }
    assert opcodes == {name: spec.code for name, spec in ebnn.OPS.items()}
    loader = (NATIVE / "src" / "loader.c").read_text()
    c_params = {}
    for name, expression in re.findall(r'= P[IF](?:_REQ)?\("(\w+)", ?([^)]*)\)', loader):
        c_params[name] = expression
    assert set(c_params) == set(ebnn.PARAMS)
    ids = dict(re.findall(r"EBNN_P_(\w+) = (\d+),", header))
    for name, spec in ebnn.PARAMS.items():
        key = name.upper()
        if key in ids:
            assert int(ids[key]) == spec.id, name
    sections = dict(re.findall(r"EBNN_SECTION_(\w+) = (\d+),", header))
    assert {k: int(v) for k, v in sections.items()} == ebnn.SECTIONS
    dtypes = dict(re.findall(r"EBNN_(F32|BITS|I32) = (\d)", header))
    assert {"f32": 1, "bits": 2, "i32": 3} == {k.lower(): int(v) for k, v in dtypes.items()} == ebnn.DTYPES


def test_python_and_c_validators_agree_on_damaged_files(native_build, model_files) -> None:
    """Structural damage with a recomputed checksum: read() refuses exactly what the C loader refuses."""
    from runtime.errors import BenchError
    from runtime.native import NativeModel

    rng = np.random.default_rng(2)
    values = [0, 1, 2, 3, 63, 64, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    checked = disagreements = 0
    for path in model_files.values():
        original = path.read_bytes()
        for _ in range(250):
            data = bytearray(original)
            if rng.random() < 0.7:  # a 32-bit field of the structure set to an extreme value
                position = int(rng.integers(0, min(len(data), 1600) // 4)) * 4
                if position == 24:
                    continue
                struct.pack_into("<I", data, position, values[rng.integers(len(values))])
            else:  # a bit anywhere
                position = int(rng.integers(0, len(data)))
                data[position] ^= 1 << int(rng.integers(8))
            data = with_crc(data)
            try:
                read(data)
                python_ok = True
            except FormatError:
                python_ok = False
            try:
                NativeModel(data).close()
                c_ok = True
            except BenchError:
                c_ok = False
            checked += 1
            disagreements += python_ok != c_ok
            assert python_ok == c_ok, (
                f"{path.name} byte {position}: python {'accepts' if python_ok else 'refuses'}, C the opposite"
            )
    assert checked > 400 and disagreements == 0
