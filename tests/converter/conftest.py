"""Session fixtures of the converter tests (models from ``converter_nets``)."""

from __future__ import annotations

import pytest
import torch
from converter_nets import ForeignBNN, export, fmnist_metadata


@pytest.fixture(scope="session")
def foreign_onnx() -> dict[str, bytes]:
    """The foreign BNN (28x20 input, seed 0) exported both ways."""
    torch.manual_seed(0)
    model = ForeignBNN()
    return {
        "dynamo": export(model, (1, 28, 20), dynamo=True),
        "legacy": export(model, (1, 28, 20), dynamo=False),
    }


@pytest.fixture(scope="session")
def fmnist_onnx_path(tmp_path_factory) -> str:
    """A foreign BNN for 28x28 Fashion-MNIST with edgebnn metadata, as a file."""
    torch.manual_seed(3)
    data = export(ForeignBNN(size=(28, 28)), (1, 28, 28), dynamo=True, metadata=fmnist_metadata())
    path = tmp_path_factory.mktemp("fmnist") / "foreign.onnx"
    path.write_bytes(data)
    return str(path)
