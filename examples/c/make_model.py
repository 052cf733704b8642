"""The default model of examples/c when no trained one exists: fmnist-bnn with random weights.

    .venv/bin/python examples/c/make_model.py build/model/fmnist-bnn.onnx

Exports ``trainer.zoo``'s fmnist-bnn (seeded random weights: it runs and classifies, but guesses)
to ONNX with the deploy metadata a trained model carries (Fashion-MNIST normalisation and class
names), so the C app reads them from the embedded model like it would from a trained one. The
Makefile then converts it (``edgebnn convert ... --target native --embed c``). For a model that
has learnt something, use ``make demo``'s ``runs/demo/fmnist-bnn.onnx`` (the Makefile does when
it exists) or ``edgebnn export run/best.pt -o m.onnx``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from formats.metadata import DeployMetadata
from trainer.data import FASHION_MNIST_CLASSES
from trainer.export import export_onnx
from trainer.zoo import create_model

# The usual Fashion-MNIST training-split statistics on the [0, 1] pixel scale.
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


def main(path: str) -> int:
    torch.manual_seed(0)
    model = create_model("fmnist-bnn").eval()
    metadata = DeployMetadata(model="fmnist-bnn", input_shape=(1, 28, 28), mean=(FMNIST_MEAN,),
                              std=(FMNIST_STD,), labels=FASHION_MNIST_CLASSES)  # fmt: skip
    export_onnx(model, input_shape=(1, 28, 28), metadata=metadata, path=Path(path), verify=False)
    print(f"wrote {path} (fmnist-bnn, random weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
