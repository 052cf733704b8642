"""Foreign models for the converter tests: small PyTorch BNNs written here (not from the zoo),
exported with plain ``torch.onnx.export`` (dynamo and legacy)."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(1)

FMNIST_MEAN, FMNIST_STD = (0.286,), (0.353,)


def where_binarizer(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def signsign_binarizer(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(torch.sign(x) + 0.1)


BINARIZERS = {"where": where_binarizer, "signsign": signsign_binarizer, "sign": torch.sign}


def tf_same(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class BinaryConv(nn.Module):
    """A binary conv as a foreign exporter writes it: binarizer, one-padding, +-mean|W| weights."""

    def __init__(self, cin, cout, stride=1, padding="same", binarizer="where", binary_weights=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.stride, self.padding, self.binarizer, self.binary_weights = (
            stride,
            padding,
            binarizer,
            binary_weights,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = BINARIZERS[self.binarizer](x)
        if self.padding == "same":
            (top, bottom), (left, right) = (tf_same(int(s), 3, self.stride) for s in x.shape[2:])
            x = F.pad(x, (left, right, top, bottom), value=1.0)
        elif self.padding == "symmetric":  # PyTorch's padding=1 with ones
            x = F.pad(x, (1, 1, 1, 1), value=1.0)
        weight = self.weight
        if self.binary_weights:
            weight = torch.sign(weight) * weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        return F.conv2d(x, weight, stride=self.stride)


class ForeignBNN(nn.Module):
    """float stem -> binary conv (residual) -> maxpool -> binary stride-2 conv (TF-SAME) -> dense.

    A non-square input (28x20) makes the NCHW/NHWC flatten order matter before the dense layer.
    """

    def __init__(self, in_channels=1, size=(28, 20), classes=10, stride2_padding="same"):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(32)
        self.conv1 = BinaryConv(32, 32)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = BinaryConv(32, 64, stride=2, padding=stride2_padding)
        self.bn2 = nn.BatchNorm2d(64)
        height, width = -(-(size[0] // 2) // 2), -(-(size[1] // 2) // 2)
        self.fc = nn.Linear(64 * height * width, classes)
        randomize_batchnorm(self)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        x = x + self.bn1(self.conv1(x))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def randomize_batchnorm(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics (negative scales included) so folding mistakes show."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and module.track_running_stats:
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            if module.affine:
                module.weight.data.uniform_(-1.0, 1.0, generator=generator)
                module.bias.data.uniform_(-0.5, 0.5, generator=generator)


def export(model: nn.Module, shape, *, dynamo: bool, dynamic_axes=None, metadata=None) -> bytes:
    """Plain ``torch.onnx.export`` (dynamo or legacy) of ``model`` in eval mode, as bytes."""
    model.eval()
    example = torch.randn(1, *shape)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(
                model, (example,), dynamo=True, input_names=["input"], output_names=["logits"], verbose=False
            )
            proto = program.model_proto
        else:
            buffer = io.BytesIO()
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes=dynamic_axes or {"input": {0: "N"}, "logits": {0: "N"}},
            )
            proto = onnx.load_model_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    return proto.SerializeToString()


def random_inputs(shape, count=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape), dtype=np.float32)


def fmnist_metadata() -> dict:
    return {
        "edgebnn.model": "foreign-bnn",
        "edgebnn.input_shape": [1, 28, 28],
        "edgebnn.normalization": {"mean": list(FMNIST_MEAN), "std": list(FMNIST_STD)},
        "edgebnn.labels": [f"class {i}" for i in range(10)],
    }
