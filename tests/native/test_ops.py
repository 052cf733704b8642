"""Every op of the native runtime on small .ebnn graphs (formats.ebnn) against independent references
in torch/numpy, for every kernel set this CPU has. Binary results are exact; float ones within
float32 rounding."""

from __future__ import annotations

import platform

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from formats.ebnn import ModelBuilder, bit_output_thresholds, fold_bconv_output
from runtime.native import NativeModel, available_kernels

torch.set_num_threads(1)


KERNEL_SETS = ["scalar", "neon"] if platform.machine() == "aarch64" else ["scalar", "avx2", "avx512"]


@pytest.fixture(params=KERNEL_SETS)
def kernel(request, native_build) -> str:
    if request.param not in available_kernels():
        pytest.skip(f"this CPU has no {request.param} kernels")
    return request.param


def run(builder: ModelBuilder, output, x: np.ndarray, kernel: str, threads: int = 1) -> np.ndarray:
    builder.set_outputs([output])
    with NativeModel(builder.to_bytes(), threads=threads, kernel=kernel) as model:
        return model.run(x)


def signs(rng, shape) -> np.ndarray:
    return np.where(rng.standard_normal(shape) >= 0, 1.0, -1.0).astype(np.float32)


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).contiguous().numpy()


def binary_dots(x, filters, stride, dilation, pads, pad_value, groups) -> np.ndarray:
    """torch.conv2d on +-1 tensors, padded with +1 (one-padding) or 0, NHWC out."""
    xs = torch.from_numpy(np.where(x >= 0, 1.0, -1.0).astype(np.float32)).permute(0, 3, 1, 2)
    top, bottom, left, right = pads
    xs = F.pad(xs, (left, right, top, bottom), value=float(pad_value))
    w = torch.from_numpy(filters).permute(0, 3, 1, 2)
    return nhwc(F.conv2d(xs, w, stride=stride, dilation=dilation, groups=groups))


BCONV_CASES = [
    # (H, W, Cin, out_c, k, stride, dilation, pads, pad_value, groups)
    (9, 7, 1, 5, 3, 1, 1, (1, 1, 1, 1), 1, 1),
    (8, 8, 33, 17, 3, 2, 1, (0, 1, 0, 1), 1, 1),  # TF-SAME stride 2 (asymmetric)
    (8, 8, 33, 17, 3, 2, 1, (1, 1, 1, 1), 1, 1),  # PyTorch padding=1, stride 2 (symmetric)
    (11, 9, 64, 64, 3, 1, 1, (1, 1, 1, 1), 0, 1),  # zero-padding (LCE SAME, pad_values 0)
    (10, 10, 100, 130, 5, 1, 2, (4, 4, 4, 4), 1, 1),  # dilation 2
    (12, 12, 65, 31, 7, 2, 1, (3, 3, 3, 3), 0, 1),
    (6, 6, 96, 48, 3, 1, 1, (1, 1, 1, 1), 1, 3),  # groups, 32 channels per group
    (7, 5, 90, 60, 3, 1, 1, (2, 0, 1, 1), 0, 6),  # groups of 15 channels, zero-padded
    (5, 5, 300, 257, 1, 1, 1, (0, 0, 0, 0), 1, 1),  # 1x1, nothing to stage
    (4, 4, 256, 256, 3, 1, 1, (1, 1, 1, 1), 1, 1),
]


@pytest.mark.parametrize(
    "case", BCONV_CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"-s{c[5]}d{c[6]}p{c[8]}g{c[9]}"
)
def test_bconv2d_float_output(kernel: str, case) -> None:
    H, W, C, out_c, k, stride, dilation, pads, pad_value, groups = case
    rng = np.random.default_rng(sum(case[:5]))
    filters = signs(rng, (out_c, k, k, C // groups))
    multiplier = rng.uniform(-2, 2, out_c).astype(np.float32)
    bias = rng.standard_normal(out_c).astype(np.float32)
    b = ModelBuilder()
    x = b.add_input((1, H, W, C))
    params = dict(
        stride_h=stride,
        stride_w=stride,
        dilation_h=dilation,
        dilation_w=dilation,
        pad_value=pad_value,
        groups=groups,
    )
    params.update(zip(("pad_top", "pad_bottom", "pad_left", "pad_right"), pads, strict=True))
    y = b.add_op(
        "BCONV2D",
        [
            b.add_op("QUANTIZE", [x]),
            b.add_constant(filters, "bits"),
            b.add_constant(multiplier),
            b.add_constant(bias),
        ],
        clamp_min=-3,
        clamp_max=40,
        out_max=25.0,
        **params,
    )
    inputs = rng.standard_normal((2, H, W, C)).astype(np.float32)
    inputs[0, 0, 0, : min(C, 3)] = [0.0, -0.0, 0.0][: min(C, 3)]  # sign(0) = +1, also for -0.0
    got = run(b, y, inputs, kernel, threads=2)
    dots = binary_dots(inputs, filters, stride, dilation, pads, pad_value, groups)
    want = np.minimum(np.clip(dots, -3, 40).astype(np.float32) * multiplier + bias, np.float32(25.0))
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", BCONV_CASES[:8], ids=lambda c: "x".join(map(str, c[:5])) + f"-g{c[9]}")
def test_bconv2d_bit_output_equals_binarized_float_output(kernel: str, case) -> None:
    H, W, C, out_c, k, stride, dilation, pads, pad_value, groups = case
    rng = np.random.default_rng(7 + sum(case[:5]))
    filters = signs(rng, (out_c, k, k, C // groups))
    multiplier = rng.uniform(-2, 2, out_c).astype(np.float32)
    multiplier[:2] = [0.0, -0.0][: min(out_c, 2)]
    bias = (rng.standard_normal(out_c) * 4).astype(np.float32)
    threshold, flip = bit_output_thresholds(multiplier, bias, clamp_min=0)
    flipped = filters.copy()
    flipped[flip] *= -1
    b = ModelBuilder()
    x = b.add_input((1, H, W, C))
    params = dict(
        stride_h=stride,
        stride_w=stride,
        dilation_h=dilation,
        dilation_w=dilation,
        pad_value=pad_value,
        groups=groups,
    )
    params.update(zip(("pad_top", "pad_bottom", "pad_left", "pad_right"), pads, strict=True))
    bits = b.add_op(
        "BCONV2D",
        [
            b.add_op("QUANTIZE", [x]),
            b.add_constant(flipped, "bits"),
            None,
            None,
            b.add_constant(threshold, "i32"),
        ],
        **params,
    )
    inputs = rng.standard_normal((2, H, W, C)).astype(np.float32)
    got = run(b, b.add_op("DEQUANTIZE", [bits]), inputs, kernel)
    dots = binary_dots(inputs, filters, stride, dilation, pads, pad_value, groups)
    y = np.clip(dots, 0, None).astype(np.float32) * multiplier + bias
    np.testing.assert_array_equal(got, np.where(y < 0, -1.0, 1.0).astype(np.float32))


def test_quantize_with_affine_and_dequantize(kernel: str) -> None:
    rng = np.random.default_rng(3)
    C = 70
    m = rng.uniform(-2, 2, C).astype(np.float32)
    bias = rng.standard_normal(C).astype(np.float32)
    b = ModelBuilder()
    x = b.add_input((1, 3, 5, C))
    plain = b.add_op("DEQUANTIZE", [b.add_op("QUANTIZE", [x])])
    affine = b.add_op("DEQUANTIZE", [b.add_op("QUANTIZE", [x, b.add_constant(m), b.add_constant(bias)])])
    both = b.add_op("CONCAT", [plain, affine], axis=3)
    inputs = rng.standard_normal((3, 3, 5, C)).astype(np.float32)
    inputs[0, 0, 0, :4] = [0.0, -0.0, np.nan, -1e-30]
    got = run(b, both, inputs, kernel)
    with np.errstate(invalid="ignore"):
        want = np.concatenate(
            [np.where(inputs < 0, -1.0, 1.0), np.where(inputs * m + bias < 0, -1.0, 1.0)], axis=3
        )
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_bmaxpool2d(kernel: str) -> None:
    rng = np.random.default_rng(4)
    C = 75
    b = ModelBuilder()
    x = b.add_input((1, 9, 8, C))
    pooled = b.add_op(
        "BMAXPOOL2D",
        [b.add_op("QUANTIZE", [x])],
        kernel_h=3,
        kernel_w=2,
        stride_h=2,
        stride_w=2,
        pad_top=1,
        pad_bottom=1,
        pad_right=1,
    )
    inputs = rng.standard_normal((2, 9, 8, C)).astype(np.float32)
    got = run(b, b.add_op("DEQUANTIZE", [pooled]), inputs, kernel)
    padded = F.pad(nchw(np.where(inputs >= 0, 1.0, -1.0).astype(np.float32)), (0, 1, 1, 1), value=-np.inf)
    np.testing.assert_array_equal(got, nhwc(F.max_pool2d(padded, (3, 2), stride=2)))


CONV_CASES = [
    # (H, W, Cin, out_c, k, stride, dilation, pads, groups)
    (15, 15, 3, 8, 3, 2, 1, (0, 1, 0, 1), 1),  # QuickNet stem (TF SAME)
    (23, 23, 3, 16, 7, 2, 1, (3, 3, 3, 3), 1),  # Bi-Real stem
    (9, 9, 1, 64, 3, 1, 1, (1, 1, 1, 1), 1),  # fmnist-bnn stem
    (7, 7, 37, 70, 1, 1, 1, (0, 0, 0, 0), 1),  # 1x1: the GEMM reads the input directly
    (8, 8, 20, 30, 3, 1, 2, (2, 1, 0, 3), 2),  # grouped, dilated, asymmetric pads
    (13, 13, 24, 24, 3, 2, 1, (1, 1, 1, 1), 24),  # depthwise stride 2
    (6, 6, 19, 19, 5, 1, 1, (2, 2, 2, 2), 19),  # depthwise, odd channel count
    (5, 5, 4, 12, 3, 1, 1, (1, 1, 1, 1), 4),  # channel multiplier 3: grouped GEMM
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"-g{c[8]}")
def test_conv2d(kernel: str, case) -> None:
    H, W, C, out_c, k, stride, dilation, pads, groups = case
    rng = np.random.default_rng(sum(case[:5]))
    filters = rng.standard_normal((out_c, k, k, C // groups)).astype(np.float32)
    bias = rng.standard_normal(out_c).astype(np.float32)
    b = ModelBuilder()
    x = b.add_input((1, H, W, C))
    params = dict(stride_h=stride, stride_w=stride, dilation_h=dilation, dilation_w=dilation, groups=groups)
    params.update(zip(("pad_top", "pad_bottom", "pad_left", "pad_right"), pads, strict=True))
    y = b.add_op(
        "CONV2D", [x, b.add_constant(filters), b.add_constant(bias)], out_min=-1.0, out_max=6.0, **params
    )
    inputs = rng.standard_normal((2, H, W, C)).astype(np.float32)
    got = run(b, y, inputs, kernel, threads=2)
    top, bottom, left, right = pads
    padded = F.pad(nchw(inputs), (left, right, top, bottom))
    want = F.conv2d(
        padded,
        torch.from_numpy(filters).permute(0, 3, 1, 2),
        torch.from_numpy(bias),
        stride=stride,
        dilation=dilation,
        groups=groups,
    )
    np.testing.assert_allclose(got, np.clip(nhwc(want), -1, 6), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 6272), (1, 7, 7, 13)])
def test_dense(kernel: str, shape) -> None:
    rng = np.random.default_rng(5)
    K = int(np.prod(shape))
    weights = rng.standard_normal((37, K)).astype(np.float32)
    bias = rng.standard_normal(37).astype(np.float32)
    b = ModelBuilder()
    x = b.add_input(shape)
    y = b.add_op("DENSE", [x, b.add_constant(weights), b.add_constant(bias)], out_min=0.0)
    inputs = rng.standard_normal((3, *shape[1:])).astype(np.float32)
    got = run(b, y, inputs, kernel, threads=2)
    want = np.maximum(inputs.reshape(3, -1).astype(np.float64) @ weights.T + bias, 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("op", "function"),
    [
        ("ADD", np.add),
        ("SUB", np.subtract),
        ("MUL", np.multiply),
        ("DIV", np.divide),
        ("MAXIMUM", np.maximum),
        ("MINIMUM", np.minimum),
    ],
)
@pytest.mark.parametrize("other", [(1, 4, 5, 6), (6,), (1, 1, 1, 6), (), (4, 1, 6), (1, 4, 1, 1)])
def test_elementwise_broadcasting(kernel: str, op: str, function, other) -> None:
    rng = np.random.default_rng(6)
    constant = rng.uniform(0.5, 2.0, other).astype(np.float32)
    b = ModelBuilder()
    x = b.add_input((1, 4, 5, 6))
    y = b.add_op(op, [x, b.add_constant(constant)], out_min=-2.0, out_max=3.0)
    inputs = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(run(b, y, inputs, kernel), np.clip(function(inputs, constant), -2, 3))


def test_elementwise_of_two_activations_large(kernel: str) -> None:
    rng = np.random.default_rng(7)
    b = ModelBuilder()
    x = b.add_input((1, 64, 64, 24))
    y = b.add_op("ADD", [x, b.add_op("CLIP", [x], out_min=0.0)])  # large: split over threads
    inputs = rng.standard_normal((1, 64, 64, 24)).astype(np.float32)
    np.testing.assert_array_equal(run(b, y, inputs, kernel, threads=2), inputs + np.maximum(inputs, 0))


@pytest.mark.parametrize(("ceil", "include_pad"), [(False, 0), (False, 1), (True, 0)])
def test_pools(kernel: str, ceil: bool, include_pad: int) -> None:
    rng = np.random.default_rng(8)
    inputs = rng.standard_normal((2, 9, 7, 5)).astype(np.float32)
    # PyTorch ceil_mode adds windows at the end: the same as extra bottom/right pads that never count
    extra_h = 1 if ceil else 0
    extra_w = 1 if ceil else 0
    b = ModelBuilder()
    x = b.add_input((1, 9, 7, 5))
    geometry = dict(
        kernel_h=3,
        kernel_w=3,
        stride_h=2,
        stride_w=2,
        pad_top=1,
        pad_left=1,
        pad_bottom=1 + extra_h,
        pad_right=1 + extra_w,
    )
    mx = b.add_op("MAXPOOL2D", [x], **geometry)
    av = b.add_op("AVGPOOL2D", [x], count_include_pad=include_pad, **geometry)
    got = run(b, b.add_op("CONCAT", [mx, av], axis=3), inputs, kernel)
    t = nchw(inputs)
    want_max = F.max_pool2d(t, 3, 2, padding=1, ceil_mode=ceil)
    want_avg = F.avg_pool2d(t, 3, 2, padding=1, ceil_mode=ceil, count_include_pad=bool(include_pad))
    np.testing.assert_allclose(
        got, np.concatenate([nhwc(want_max), nhwc(want_avg)], axis=3), rtol=1e-6, atol=1e-6
    )


def test_reductions(kernel: str) -> None:
    rng = np.random.default_rng(9)
    inputs = rng.standard_normal((2, 6, 7, 11)).astype(np.float32)
    b = ModelBuilder()
    x = b.add_input((1, 6, 7, 11))
    gap = b.add_op("MEAN", [x], axes=0b0110, output_shape=(1, 11))
    top = b.add_op("REDUCE_MAX", [x], axes=0b1000, output_shape=(1, 6, 7, 1))
    total = b.add_op("REDUCE_SUM", [x], axes=0b1010, output_shape=(1, 7))
    flat = [b.add_op("RESHAPE", [t], output_shape=(1, s)) for t, s in ((gap, 11), (top, 42), (total, 7))]
    got = run(b, b.add_op("CONCAT", flat, axis=1), inputs, kernel)
    want = np.concatenate(
        [inputs.mean(axis=(1, 2)), inputs.max(axis=3).reshape(2, -1), inputs.sum(axis=(1, 3))], axis=1
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("mode", "numpy_mode"), [(0, "constant"), (1, "reflect"), (2, "edge")])
def test_pad(kernel: str, mode: int, numpy_mode: str) -> None:
    rng = np.random.default_rng(10)
    inputs = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    b = ModelBuilder()
    x = b.add_input((1, 5, 4, 3))
    y = b.add_op(
        "PAD",
        [x],
        pad_before_1=2,
        pad_after_1=1,
        pad_before_2=0,
        pad_after_2=3,
        pad_before_3=1,
        mode=mode,
        value=1.5,
    )
    pads = ((0, 0), (2, 1), (0, 3), (1, 0))
    kwargs = {"constant_values": 1.5} if numpy_mode == "constant" else {}
    np.testing.assert_array_equal(run(b, y, inputs, kernel), np.pad(inputs, pads, mode=numpy_mode, **kwargs))


def test_unary_and_shape_ops(kernel: str) -> None:
    rng = np.random.default_rng(11)
    inputs = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    inputs[0, 0, 0, :2] = 0.0
    slope = rng.uniform(0, 1, 5).astype(np.float32)
    b = ModelBuilder()
    x = b.add_input((1, 3, 4, 5))
    parts = [
        b.add_op("CLIP", [x], out_min=0.0, out_max=0.5),
        b.add_op("PRELU", [x, b.add_constant(slope)]),
        b.add_op("PRELU", [x, b.add_constant(np.array([0.1], np.float32))]),
        b.add_op("SIGN", [x]),
    ]
    moved = b.add_op("TRANSPOSE", [x], perm_0=0, perm_1=2, perm_2=3, perm_3=1)
    soft = b.add_op("SOFTMAX", [b.add_op("RESHAPE", [moved], output_shape=(1, 4, 15))], beta=0.5)
    flat = [b.add_op("RESHAPE", [t], output_shape=(1, 60)) for t in (*parts, moved, soft)]
    got = run(b, b.add_op("CONCAT", flat, axis=1), inputs, kernel)
    moved_np = inputs.transpose(0, 2, 3, 1)
    logits = 0.5 * moved_np.reshape(2, 4, 15)
    soft_np = np.exp(logits - logits.max(-1, keepdims=True))
    soft_np /= soft_np.sum(-1, keepdims=True)
    want = [
        np.clip(inputs, 0, 0.5),
        np.where(inputs >= 0, inputs, slope * inputs),
        np.where(inputs >= 0, inputs, np.float32(0.1) * inputs),
        np.sign(inputs),
        moved_np,
        soft_np,
    ]
    np.testing.assert_allclose(
        got, np.concatenate([w.reshape(2, -1) for w in want], axis=1), rtol=1e-6, atol=1e-7
    )


def test_threads_give_identical_outputs(kernel: str, model_files) -> None:
    data = model_files["binary_net"].read_bytes()
    inputs = np.random.default_rng(12).standard_normal((4, 10, 10, 1)).astype(np.float32)
    with (
        NativeModel(data, threads=1, kernel=kernel) as one,
        NativeModel(data, threads=2, kernel=kernel) as two,
    ):
        np.testing.assert_array_equal(one.run(inputs), two.run(inputs))


def test_kernels_agree_on_a_whole_model(native_build, model_files) -> None:
    data = model_files["binary_net"].read_bytes()
    inputs = np.random.default_rng(13).standard_normal((4, 10, 10, 1)).astype(np.float32)
    outputs = {k: NativeModel(data, kernel=k).run(inputs) for k in available_kernels()}
    for name, out in outputs.items():
        np.testing.assert_allclose(out, outputs["scalar"], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(("relu_before", "relu_after"), [(True, False), (False, True), (False, False)])
def test_fold_bconv_output_matches_the_onnx_pattern(kernel: str, relu_before: bool, relu_after: bool) -> None:
    """[Relu](BatchNorm(a * [Relu](conv(sign x, sign w)))) folded by formats.ebnn.fold_bconv_output."""
    rng = np.random.default_rng(21)
    H, C, out_c = 7, 48, 24
    filters = signs(rng, (out_c, 3, 3, C))
    scale = rng.uniform(0.1, 1.0, out_c).astype(np.float32)
    bn_scale = rng.uniform(-1.5, 1.5, out_c).astype(np.float32)
    bn_shift = rng.standard_normal(out_c).astype(np.float32)
    multiplier, bias, params = fold_bconv_output(scale, bn_scale, bn_shift, relu_before, relu_after)
    b = ModelBuilder()
    x = b.add_input((1, H, H, C))
    y = b.add_op(
        "BCONV2D",
        [
            b.add_op("QUANTIZE", [x]),
            b.add_constant(filters, "bits"),
            b.add_constant(multiplier),
            b.add_constant(bias),
        ],
        pad_top=1,
        pad_bottom=1,
        pad_left=1,
        pad_right=1,
        **params,
    )
    inputs = rng.standard_normal((2, H, H, C)).astype(np.float32)
    got = run(b, y, inputs, kernel)
    dots = binary_dots(inputs, filters, 1, 1, (1, 1, 1, 1), 1, 1).astype(np.float64)
    z = scale * dots
    z = np.maximum(z, 0) if relu_before else z
    z = bn_scale * z + bn_shift
    want = np.maximum(z, 0) if relu_after else z
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
