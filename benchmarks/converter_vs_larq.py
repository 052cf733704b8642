"""edgebnn's PyTorch -> ONNX -> LCE path versus larq's native Keras -> LCE path, side by side.

The same architecture and the same weights are built twice: natively with larq (QuantConv2D,
ste_sign, one-padding) and converted by ``larq_compute_engine.convert_keras_model``; and in PyTorch
(where-binarizer, one-padding), exported with ``torch.onnx.export`` and converted by edgebnn. Printed:

- both op histograms (they should be identical) and the max |difference| of their outputs;
- latency of both flatbuffers in the LCE interpreter, measured interleaved in one run (A, B, A, B...)
  so machine noise hits both alike; the ratio edgebnn / native (target <= 1.02);
- conversion time of zoo models (resnet20, birealnet18), export and conversion separately.

    .venv/bin/python benchmarks/converter_vs_larq.py [--rounds 30] [--size 32] [--skip-zoo]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from converter.audit import audit  # noqa: E402
from converter.conversion import convert  # noqa: E402
from runtime.engines import LceEngine  # noqa: E402

CHANNELS = (32, 64, 64, 128)  # stem output, then three binary convs (LCE-friendly multiples of 32)


def build_larq(size: int, classes: int, seed: int):
    """The native model: float stem, three binary convs with one-padding and BatchNorm, GAP, dense."""
    import larq as lq
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    binary = dict(
        input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
        padding="same", pad_values=1.0, use_bias=False,
    )  # fmt: skip
    inputs = tf.keras.Input((size, size, 3))
    x = tf.keras.layers.Conv2D(CHANNELS[0], 3, padding="same", use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization(epsilon=1e-3)(x)
    x = lq.layers.QuantConv2D(CHANNELS[1], 3, **binary)(x)
    x = tf.keras.layers.BatchNormalization(epsilon=1e-3)(x)
    x = tf.keras.layers.MaxPool2D(2)(x)
    x = lq.layers.QuantConv2D(CHANNELS[2], 3, **binary)(x)
    x = tf.keras.layers.BatchNormalization(epsilon=1e-3)(x)
    x = lq.layers.QuantConv2D(CHANNELS[3], 3, strides=2, **binary)(x)
    x = tf.keras.layers.BatchNormalization(epsilon=1e-3)(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(classes)(x)
    model = tf.keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-trivial BatchNorm statistics
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n),
                               rng.uniform(-0.5, 0.5, n), rng.uniform(0.5, 2.0, n)])  # fmt: skip
    return model


def one_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TF-SAME one-padding of a 3x3 conv (what larq's pad_values=1 computes)."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        out = -(-int(size) // stride)
        total = max((out - 1) * stride + 3 - int(size), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=1.0)


class TorchTwin(nn.Module):
    """The same network in PyTorch, weights copied from the Keras model."""

    def __init__(self, keras_model):
        super().__init__()
        import tensorflow as tf

        convs = [layer for layer in keras_model.layers if isinstance(layer, tf.keras.layers.Conv2D)]
        norms = [
            layer for layer in keras_model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)
        ]
        dense = keras_model.layers[-1]
        kernels = [conv.get_weights()[0].transpose(3, 2, 0, 1) for conv in convs]  # HWIO -> OIHW
        self.kernels = [torch.tensor(kernels[0])] + [
            torch.tensor(np.where(k >= 0, 1.0, -1.0), dtype=torch.float32) for k in kernels[1:]
        ]
        self.strides = [1, 1, 1, 2]
        self.norms = nn.ModuleList()
        for norm in norms:
            gamma, beta, mean, var = (torch.tensor(w, dtype=torch.float32) for w in norm.get_weights())
            bn = nn.BatchNorm2d(len(gamma), eps=norm.epsilon)
            bn.weight.data, bn.bias.data, bn.running_mean.data, bn.running_var.data = gamma, beta, mean, var
            self.norms.append(bn)
        weight, bias = dense.get_weights()
        self.fc = nn.Linear(*weight.shape)
        self.fc.weight.data, self.fc.bias.data = torch.tensor(weight.T), torch.tensor(bias)

    def forward(self, x):
        x = self.norms[0](F.conv2d(x, self.kernels[0], padding=1))
        for index in (1, 2, 3):
            if index == 2:
                x = F.max_pool2d(x, 2)
            x = one_pad(torch.where(x >= 0, 1.0, -1.0), self.strides[index])
            x = self.norms[index](F.conv2d(x, self.kernels[index], stride=self.strides[index]))
        return self.fc(x.mean(dim=(2, 3)))


def export_onnx(model: nn.Module, size: int) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stdout, sys.stdout = sys.stdout, io.StringIO()
        try:
            program = torch.onnx.export(model.eval(), (torch.zeros(1, 3, size, size),), dynamo=True,
                                        input_names=["input"], output_names=["logits"])  # fmt: skip
        finally:
            sys.stdout = stdout
    return program.model_proto.SerializeToString()


def interleaved_latency(
    models: dict[str, bytes], x: np.ndarray, rounds: int, runs: int
) -> dict[str, list[float]]:
    """Per-round median latency (ms) of each model; the models alternate within every round."""
    engines = {
        name: LceEngine(data, threads=1, kernel="default", xnnpack=False) for name, data in models.items()
    }
    for engine in engines.values():  # warm-up
        engine.set_input(x)
        for _ in range(5):
            engine.invoke()
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for round_index in range(rounds):
        order = list(engines) if round_index % 2 == 0 else list(reversed(engines))
        for name in order:
            engine = engines[name]
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                engine.invoke()
                times.append((time.perf_counter() - start) * 1e3)
            samples[name].append(statistics.median(times))
    return samples


def zoo_conversion_times(names: list[str]) -> None:
    try:
        from trainer.export import export_onnx as zoo_export
        from trainer.zoo import MODELS, create_model
    except ImportError:
        print("zoo not available: skipped")
        return
    for name in names:
        spec = MODELS[name]
        model = create_model(name).eval()
        shape = (spec.in_channels, spec.input_size, spec.input_size)
        start = time.perf_counter()
        proto = zoo_export(model, input_shape=shape)
        exported = time.perf_counter()
        flatbuffer = convert(proto)
        converted = time.perf_counter()
        report = audit(flatbuffer)
        print(f"{name:12s} input {list(shape)}: export {exported - start:6.1f} s, convert {converted - exported:6.1f} s, "
              f"{report.binary_convs} LceBconv2d, {len(flatbuffer) / 1e6:.2f} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=32, help="input height and width (default 32)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (default 30)")
    parser.add_argument("--runs", type=int, default=20, help="invocations per model per round (default 20)")
    parser.add_argument("--skip-zoo", action="store_true", help="skip the zoo conversion times")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from larq_compute_engine import convert_keras_model

    keras_model = build_larq(args.size, 10, seed=0)
    start = time.perf_counter()
    native = convert_keras_model(keras_model)
    native_seconds = time.perf_counter() - start
    twin = TorchTwin(keras_model)
    onnx_bytes = export_onnx(twin, args.size)
    start = time.perf_counter()
    ours = convert(onnx_bytes)
    ours_seconds = time.perf_counter() - start

    native_ops, our_ops = audit(native).op_histogram, audit(ours).op_histogram
    print(f"native larq -> LCE ops: {native_ops}")
    print(f"edgebnn PyTorch -> ONNX -> LCE ops: {our_ops}")
    print(f"op histograms identical: {native_ops == our_ops}")
    print(f"size: native {len(native):,} B, edgebnn {len(ours):,} B")
    print(f"conversion: native {native_seconds:.2f} s, edgebnn {ours_seconds:.2f} s")

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, args.size, args.size, 3), dtype=np.float32)
    outputs = {}
    for name, data in (("native", native), ("edgebnn", ours)):
        engine = LceEngine(data, threads=1, kernel="default", xnnpack=False)
        outputs[name] = engine.predict(x)
    keras_out = keras_model(x).numpy()
    print(f"max |edgebnn - native| {np.abs(outputs['edgebnn'] - outputs['native']).max():.3g}, "
          f"max |native - keras| {np.abs(outputs['native'] - keras_out).max():.3g} (logit scale {keras_out.std():.3g})")  # fmt: skip

    samples = interleaved_latency({"native": native, "edgebnn": ours}, x, args.rounds, args.runs)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = [a / b for a, b in zip(samples["edgebnn"], samples["native"], strict=True)]
    print(
        f"LCE interpreter, 1 thread, {args.rounds} interleaved rounds x {args.runs} runs, input {args.size}x{args.size}:"
    )
    for name, value in medians.items():
        print(f"  {name:8s} median {value:.3f} ms")
    print(
        f"  latency ratio edgebnn/native: {statistics.median(ratios):.3f} (median of per-round ratios; "
        f"IQR {np.percentile(ratios, 25):.3f}-{np.percentile(ratios, 75):.3f}; target <= 1.02)"
    )

    if not args.skip_zoo:
        zoo_conversion_times(["resnet20", "birealnet18"])


if __name__ == "__main__":
    main()
