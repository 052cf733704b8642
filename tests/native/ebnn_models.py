"""Small .ebnn models for the native runtime's C tests (loader fuzzing, API), built with formats.ebnn.

Together they use every op of the format once or more, so that a fuzzed file that still loads
exercises every op's run function.
"""

from __future__ import annotations

import numpy as np

from formats.ebnn import ModelBuilder, bit_output_thresholds
from formats.metadata import DeployMetadata


def signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.standard_normal(shape) >= 0, 1.0, -1.0).astype(np.float32)


def binary_net(seed: int = 0) -> bytes:
    """A small BNN: float stem, affine QUANTIZE, bit-output BCONV2D, BMAXPOOL2D, grouped and
    zero-padded BCONV2D with float output, residual ADD, depthwise CONV2D, pools, DENSE, SOFTMAX."""
    rng = np.random.default_rng(seed)
    meta = DeployMetadata(
        model="test-bnn", input_shape=(1, 10, 10), mean=(0.5,), std=(0.25,), labels=tuple("abcde")
    )
    b = ModelBuilder(meta)
    x = b.add_input((1, 10, 10, 1), name="input")
    stem = b.add_op(
        "CONV2D",
        [
            x,
            b.add_constant(rng.standard_normal((40, 3, 3, 1)).astype(np.float32)),
            b.add_constant(rng.standard_normal(40).astype(np.float32)),
        ],
        pad_top=1,
        pad_bottom=1,
        pad_left=1,
        pad_right=1,
        name="stem",
    )
    q = b.add_op(
        "QUANTIZE",
        [
            stem,
            b.add_constant(rng.uniform(0.5, 2, 40).astype(np.float32)),
            b.add_constant(rng.standard_normal(40).astype(np.float32)),
        ],
        name="binarize",
    )
    threshold, flip = bit_output_thresholds(rng.standard_normal(48), rng.standard_normal(48) * 3)
    filt = signs(rng, (48, 3, 3, 40))
    filt[flip] *= -1
    bits = b.add_op(
        "BCONV2D",
        [q, b.add_constant(filt, "bits"), None, None, b.add_constant(threshold, "i32")],
        pad_top=0,
        pad_bottom=1,
        pad_left=0,
        pad_right=1,
        stride_h=2,
        stride_w=2,
        name="bconv1",
    )
    pooled = b.add_op(
        "BMAXPOOL2D", [bits], kernel_h=2, kernel_w=2, stride_h=1, stride_w=1, pad_bottom=1, pad_right=1
    )
    conv2 = b.add_op(
        "BCONV2D",
        [
            pooled,
            b.add_constant(signs(rng, (48, 3, 3, 16)), "bits"),
            b.add_constant(rng.uniform(0.1, 1, 48).astype(np.float32)),
            b.add_constant(rng.standard_normal(48).astype(np.float32)),
        ],
        groups=3,
        pad_top=1,
        pad_bottom=1,
        pad_left=1,
        pad_right=1,
        pad_value=0,
        clamp_min=0,
        name="bconv2",
    )
    shortcut = b.add_op("DEQUANTIZE", [bits])
    added = b.add_op("ADD", [conv2, shortcut], out_min=-4.0)
    dw = b.add_op(
        "CONV2D",
        [added, b.add_constant(rng.standard_normal((48, 3, 3, 1)).astype(np.float32))],
        groups=48,
        pad_top=1,
        pad_bottom=1,
        pad_left=1,
        pad_right=1,
    )
    pooled2 = b.add_op(
        "MAXPOOL2D", [dw], kernel_h=2, kernel_w=2, stride_h=2, stride_w=2, pad_bottom=1, pad_right=1
    )
    flat = b.add_op("RESHAPE", [pooled2], output_shape=(1, 3 * 3 * 48))
    logits = b.add_op(
        "DENSE",
        [
            flat,
            b.add_constant(rng.standard_normal((5, 432)).astype(np.float32)),
            b.add_constant(rng.standard_normal(5).astype(np.float32)),
        ],
    )
    b.set_outputs([b.add_op("SOFTMAX", [logits], name="probabilities")])
    return b.to_bytes()


def misc_net(seed: int = 1) -> bytes:
    """The float ops that binary_net leaves out: PAD (reflect, edge), CONCAT, MEAN, REDUCE_MAX/SUM,
    TRANSPOSE, PRELU, CLIP, SIGN, SUB, MUL, DIV, MAXIMUM, MINIMUM, AVGPOOL2D, QUANTIZE+DEQUANTIZE."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.add_input((1, 6, 5, 3), name="input")
    reflect = b.add_op("PAD", [x], pad_before_1=1, pad_after_1=2, pad_before_2=2, pad_after_2=1, mode=1)
    edge = b.add_op("PAD", [x], pad_before_1=1, pad_after_1=2, pad_before_2=2, pad_after_2=1, mode=2)
    constant = b.add_op("PAD", [x], pad_before_1=1, pad_after_1=2, pad_before_2=2, pad_after_2=1, value=0.5)
    cat = b.add_op("CONCAT", [reflect, edge, constant], axis=3)
    avg = b.add_op(
        "AVGPOOL2D",
        [cat],
        kernel_h=3,
        kernel_w=3,
        stride_h=2,
        stride_w=2,
        pad_top=1,
        pad_left=1,
        pad_bottom=1,
        pad_right=1,
    )
    prelu = b.add_op("PRELU", [avg, b.add_constant(rng.uniform(0, 0.5, 9).astype(np.float32))])
    clipped = b.add_op("CLIP", [prelu], out_min=-1.0, out_max=1.5)
    signed = b.add_op("SIGN", [b.add_op("SUB", [clipped, b.add_constant(np.float32(0.1).reshape(()))])])
    scaled = b.add_op("MUL", [clipped, b.add_constant(rng.standard_normal((1, 1, 1, 9)).astype(np.float32))])
    ratio = b.add_op("DIV", [scaled, b.add_constant(rng.uniform(1, 2, (5, 1, 9)).astype(np.float32))])
    top = b.add_op("MAXIMUM", [ratio, signed])
    low = b.add_op("MINIMUM", [top, b.add_op("DEQUANTIZE", [b.add_op("QUANTIZE", [ratio])])])
    moved = b.add_op("TRANSPOSE", [low], perm_0=0, perm_1=3, perm_2=1, perm_3=2)
    mean = b.add_op("MEAN", [moved], axes=0b1100, output_shape=(1, 9))
    most = b.add_op("REDUCE_MAX", [moved], axes=0b1100, output_shape=(1, 9, 1, 1))
    total = b.add_op("REDUCE_SUM", [moved], axes=0b0010, output_shape=(1, 5, 4))
    flat = b.add_op("RESHAPE", [total], output_shape=(1, 20))
    joined = b.add_op("CONCAT", [mean, b.add_op("RESHAPE", [most], output_shape=(1, 9)), flat], axis=1)
    b.set_outputs([joined])
    return b.to_bytes()


MODELS = {"binary_net": binary_net, "misc_net": misc_net}
