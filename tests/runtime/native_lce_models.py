"""LCE .tflite models made by larq + LCE for the native runtime's translation tests (run in a child
process, so that TensorFlow never enters the test process).

    .venv/bin/python tests/runtime/native_lce_models.py /tmp/lce-models

``features.tflite`` exercises what LCE's converter emits beyond the tiny net of ``models.py``:
one-padding and zero-padding (SAME, pad_values 0), stride 2, dilation 2, channel counts that are
not multiples of 32, a fused ReLU, BatchNorms with negative scales (bit output with flipped
channels), a binary max-pool, a grouped binary conv (LCE runs it with its indirect kernel only),
depthwise and float convs, concatenation, average pooling, a dense layer and a softmax.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _randomize(model, seed: int) -> None:
    """Random BatchNorm statistics (negative scales too) and weights that are not all +-1."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(-1.5, 1.5, gamma.shape).astype(np.float32),
                rng.uniform(-0.5, 0.5, beta.shape).astype(np.float32),
                rng.uniform(-2.0, 2.0, mean.shape).astype(np.float32),
                rng.uniform(0.5, 2.0, var.shape).astype(np.float32),
            ])  # fmt: skip


def features_net():
    import larq as lq
    import tensorflow as tf

    tf.random.set_seed(1)
    quant = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip",
             "use_bias": False}  # fmt: skip
    inputs = tf.keras.Input((13, 11, 5))
    x = tf.keras.layers.Conv2D(40, 3, padding="same")(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    a = lq.layers.QuantConv2D(48, 3, padding="same", pad_values=1.0, **quant)(x)  # one-padding
    a = tf.keras.layers.BatchNormalization()(a)  # -> bit output into the next binary conv
    a = lq.layers.QuantConv2D(44, 3, strides=2, padding="same", pad_values=1.0, **quant)(a)
    a = tf.keras.layers.BatchNormalization()(a)
    b = lq.layers.QuantConv2D(36, 3, strides=2, padding="same", pad_values=0.0, **quant)(x)  # zero-padding
    b = tf.keras.layers.BatchNormalization()(b)
    x = tf.keras.layers.Concatenate()([a, b])
    x = lq.layers.QuantConv2D(
        64, 3, dilation_rate=2, padding="same", pad_values=1.0, activation="relu", **quant
    )(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.MaxPool2D(2, padding="same")(x)  # feeds a binarizer: LceBMaxPool2d
    x = lq.layers.QuantConv2D(64, 1, **quant)(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = tf.keras.layers.AveragePooling2D(2, padding="same")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(7)(x)
    outputs = tf.keras.layers.Softmax()(x)
    model = tf.keras.Model(inputs, outputs)
    _randomize(model, 2)
    return model


def grouped_net():
    import larq as lq
    import tensorflow as tf

    tf.random.set_seed(3)
    quant = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip",
             "use_bias": False}  # fmt: skip
    inputs = tf.keras.Input((9, 9, 64))
    x = lq.layers.QuantConv2D(64, 3, padding="same", pad_values=1.0, groups=2, **quant)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(5)(x)
    model = tf.keras.Model(inputs, outputs)
    _randomize(model, 4)
    return model


def write_all(folder: Path) -> dict[str, Path]:
    import larq_compute_engine as lce

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"features": folder / "features.tflite", "grouped": folder / "grouped.tflite"}
    paths["features"].write_bytes(lce.convert_keras_model(features_net()))
    paths["grouped"].write_bytes(lce.convert_keras_model(grouped_net()))
    return paths


if __name__ == "__main__":
    for name, path in write_all(Path(sys.argv[1])).items():
        print(name, path, path.stat().st_size)
