"""Tiny real models for the runtime tests: a larq binary net converted by LCE, its float TFLite twin
(TensorFlow's own converter) and an ONNX twin exported from PyTorch.

Run as a script to write them into a folder (handy for trying ``edgebnn bench`` by hand):

    .venv/bin/python tests/runtime/models.py /tmp/models
    .venv/bin/python tests/runtime/models.py /tmp/models --size 64 --width 128   # a bigger trio
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# larq and the LCE Keras path need Keras 2: set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

SIZE, WIDTH = 16, 64  # input SIZE x SIZE x 3 (NHWC for the TF models, NCHW for the ONNX twin)


def _keras_net(binary: bool, size: int = SIZE, width: int = WIDTH):
    import larq as lq
    import tensorflow as tf

    tf.random.set_seed(0)
    quant = {
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
    }
    if not binary:
        quant = {}
    layers = [
        tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False, input_shape=(size, size, 3)),
        tf.keras.layers.BatchNormalization(),
        lq.layers.QuantConv2D(width, 3, padding="same", pad_values=1.0, use_bias=False, **quant),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.MaxPool2D(2),
        lq.layers.QuantConv2D(width, 3, padding="same", pad_values=1.0, use_bias=False, **quant),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10),
    ]
    return tf.keras.Sequential(layers)


def binary_tflite(size: int = SIZE, width: int = WIDTH) -> bytes:
    """A binary net with LCE custom ops (LceQuantize, LceBconv2d...)."""
    import larq_compute_engine as lce

    return lce.convert_keras_model(_keras_net(binary=True, size=size, width=width))


def float_tflite(size: int = SIZE, width: int = WIDTH) -> bytes:
    """The same architecture in float, converted by TensorFlow: no custom ops."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(
        _keras_net(binary=False, size=size, width=width)
    ).convert()


def onnx_model(path: Path, accuracy: float | None = None, size: int = SIZE, width: int = WIDTH) -> Path:
    """A float CNN of the same shape exported by torch.onnx, with optional edgebnn.accuracy metadata."""
    import onnx
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(32),
        torch.nn.Conv2d(32, width, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(width),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(width, width, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(width),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(width, 10),
    ).eval()
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, size, size),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamo=False,
    )
    model = onnx.load(str(path))
    if accuracy is not None:
        onnx.helper.set_model_props(model, {"edgebnn.model": "tiny-cnn", "edgebnn.accuracy": str(accuracy)})
    onnx.save(model, str(path))
    return path


def write_all(folder: Path, size: int = SIZE, width: int = WIDTH) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "binary": folder / "tiny_bnn.tflite",
        "float": folder / "tiny_float.tflite",
        "onnx": folder / "tiny_cnn.onnx",
    }
    paths["binary"].write_bytes(binary_tflite(size, width))
    paths["float"].write_bytes(float_tflite(size, width))
    onnx_model(paths["onnx"], accuracy=0.5, size=size, width=width)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write the tiny binary/float/ONNX test models into FOLDER.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=SIZE, help=f"input height and width (default {SIZE})")
    parser.add_argument(
        "--width", type=int, default=WIDTH, help=f"channels of the binary convs (default {WIDTH})"
    )
    args = parser.parse_args()
    for kind, path in write_all(args.folder, args.size, args.width).items():
        print(kind, path, path.stat().st_size)
