"""ONNX export and checkpoints: the deploy graph contract, bit-exact binary weights, ONNX Runtime parity,
the ``edgebnn export`` command and its errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from edgebnn.cli import main
from trainer.checkpoint import (
    load_checkpoint,
    load_state_strict,
    model_from_checkpoint,
    new_checkpoint,
    save_checkpoint,
)
from trainer.errors import TrainerError
from trainer.export import check_onnxruntime, export_onnx
from trainer.layers import aux_loss, binary_layers
from trainer.zoo import create_model

DATA = {
    "name": "fashion-mnist",
    "input_shape": [1, 28, 28],
    "mean": [0.286],
    "std": [0.353],
    "classes": list("abcdefghij"),
}


def trained_a_little(model: torch.nn.Module, input_shape: list[int], steps: int = 2) -> torch.nn.Module:
    """A few SGD steps so BatchNorm statistics and (for LNS) mapping outputs are not at their init."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        logits = model(torch.randn(8, *input_shape))
        loss = torch.nn.functional.cross_entropy(
            logits, torch.randint(0, logits.shape[1], (8,))
        ) + 1e-4 * aux_loss(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def run_onnx(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


def initializers(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in proto.graph.initializer}


@pytest.fixture(scope="module")
def lns_export() -> tuple[torch.nn.Module, onnx.ModelProto]:
    torch.manual_seed(0)
    model = create_model("fmnist-bnn", width=32, weight_binarizer="lns", binarizer_config={"rho": 0.01})
    model = trained_a_little(model, [1, 28, 28])
    proto = export_onnx(
        model, input_shape=[1, 28, 28], metadata={"edgebnn.model": "fmnist-bnn", "edgebnn.labels": ["a"]}
    )
    return model, proto


def test_exported_binary_weights_are_the_training_weights_bit_for_bit(lns_export) -> None:
    model, proto = lns_export
    weights = initializers(proto)
    model.train()  # the training forward's weights
    for name, layer in binary_layers(model):
        exported = weights[f"{name}.frozen_weight"]
        assert np.array_equal(exported, layer.binary_weight().detach().numpy())
        scale = np.abs(exported).reshape(exported.shape[0], -1)
        assert (scale > 0).all() and (scale == scale[:, :1]).all()  # exactly +-s_o per output channel
    model.eval()


def test_deploy_graph_contract(lns_export) -> None:
    _, proto = lns_export
    onnx.checker.check_model(proto)
    nodes = proto.graph.node
    weights = initializers(proto)
    producers = {output: node for node in nodes for output in node.output}
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == [
        "logits"
    ]
    assert not any("mapping" in name for name in weights)  # LNS mapping networks dropped
    pads = [node for node in nodes if node.op_type == "Pad"]
    assert len(pads) == 3
    for pad in pads:
        assert weights[pad.input[2]].item() == 1.0  # one-padding
        where = producers[pad.input[0]]
        assert where.op_type == "Where" and producers[where.input[0]].op_type == "GreaterOrEqual"
        assert sorted([weights[where.input[1]].item(), weights[where.input[2]].item()]) == [-1.0, 1.0]
        conv = next(node for node in nodes if pad.output[0] in node.input)
        assert conv.op_type == "Conv"
        assert all(v == 0 for a in conv.attribute if a.name == "pads" for v in a.ints)
    assert sum(node.op_type == "BatchNormalization" for node in nodes) >= 3  # not folded into binary convs
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert metadata == {"edgebnn.model": "fmnist-bnn", "edgebnn.labels": '["a"]'}


def test_onnxruntime_reproduces_pytorch_with_dynamic_batch(lns_export) -> None:
    model, proto = lns_export
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(run_onnx(proto, x.numpy()), expected, rtol=1e-4, atol=1e-4)


def test_onnxruntime_check_detects_a_different_model(lns_export) -> None:
    _, proto = lns_export
    other = create_model("fmnist-bnn", width=32, weight_binarizer="lns").eval()
    with pytest.raises(TrainerError, match="does not reproduce"):
        check_onnxruntime(proto, other, [1, 28, 28])


# fmnist-bnn is exported above and by the CLI test; torch.export takes 5-40 s per model on 2 busy
# cores, so the larger models are marked slow (they still run in CI).
ZOO_EXPORTS = {
    "resnet20": dict(input_size=16),
    "vgg-small": dict(input_size=16, width=32),
    "birealnet18": dict(input_size=32, num_classes=10),
    "quicknet-small": dict(input_size=32, num_classes=10),
}
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "name", [name if name == "resnet20" else pytest.param(name, marks=SLOW) for name in ZOO_EXPORTS]
)
def test_zoo_model_exports_and_matches_onnxruntime(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **ZOO_EXPORTS[name])
    shape = [model.config["in_channels"], *model.config["input_size"]]
    model = trained_a_little(model, shape, steps=1)
    proto = export_onnx(model, input_shape=shape)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(
        run_onnx(proto, x.numpy()), expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max()
    )
    weights = initializers(proto)
    for layer_name, layer in binary_layers(model):
        assert np.array_equal(weights[f"{layer_name}.frozen_weight"], layer.binary_weight().detach().numpy())
    if name == "resnet20":  # stride-2 binary convs: TF-SAME one-padding (0, 1) on even sizes
        strided = [
            n
            for n in proto.graph.node
            if n.op_type == "Conv"
            and list(next(a.ints for a in n.attribute if a.name == "strides")) == [2, 2]
        ]
        producers = {output: node for node in proto.graph.node for output in node.output}
        binary_strided = [n for n in strided if producers[n.input[0]].op_type == "Pad"]
        assert len(binary_strided) == 2
        for conv in binary_strided:
            assert weights[producers[conv.input[0]].input[1]].tolist() == [0, 0, 0, 0, 0, 0, 1, 1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quicknet"])
def test_quicknet_exports_at_224(name: str) -> None:
    model = create_model(name).eval()
    proto = export_onnx(model, input_shape=[3, 224, 224])
    assert (
        sum(
            node.op_type == "Pad" and node.input[2] and initializers(proto)[node.input[2]].item() == 1.0
            for node in proto.graph.node
        )
        == 16
    )


# --- checkpoints and the CLI ------------------------------------------------------------------------


@pytest.fixture()
def checkpoint_path(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = trained_a_little(create_model("fmnist-bnn", width=32), [1, 28, 28], steps=1)
    path = tmp_path / "run" / "model.pt"
    path.parent.mkdir()  # atomic writes never create folders
    save_checkpoint(
        path,
        new_checkpoint(
            model,
            epoch=3,
            data=DATA,
            metrics={"best_val_acc": 0.5, "test_acc": 0.25},
            binarizer={"name": "ste", "config": {}},
        ),
    )
    return path


def test_checkpoint_round_trip(checkpoint_path: Path) -> None:
    checkpoint = load_checkpoint(checkpoint_path)
    assert checkpoint["epoch"] == 3 and checkpoint["model"]["name"] == "fmnist-bnn"
    assert [p.name for p in checkpoint_path.parent.iterdir()] == ["model.pt"]  # no temporary files left
    model = model_from_checkpoint(checkpoint)
    assert not model.training
    again = create_model("fmnist-bnn", width=32)
    again.load_state_dict(checkpoint["state_dict"])
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), again.eval()(x))


class Foreign:  # a pickled class that weights_only loading refuses
    pass


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a checkpoint at all", "not a readable checkpoint"),
        ({"a": 1}, "not an edgebnn checkpoint"),
        ([1, 2, 3], "not an edgebnn checkpoint"),
        ({"format": "edgebnn-checkpoint/1", "model": {"name": "fmnist-bnn"}}, "no model config"),
        (Foreign(), "not a readable checkpoint"),
    ],
)
def test_bad_checkpoints_are_trainer_errors(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(TrainerError, match=message):
        load_checkpoint(path)


def test_truncated_and_missing_checkpoints(tmp_path: Path, checkpoint_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint_path.read_bytes()[:2000])
    with pytest.raises(TrainerError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(TrainerError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_load_state_strict_names_the_first_mismatch() -> None:
    narrow, wide = create_model("fmnist-bnn", width=32), create_model("fmnist-bnn", width=64)
    with pytest.raises(
        TrainerError,
        match=r"shape mismatch for '0.weight': checkpoint \(64, 1, 3, 3\), model \(32, 1, 3, 3\)",
    ):
        load_state_strict(narrow, wide.state_dict())
    state = narrow.state_dict()
    del state["9.bias"]
    with pytest.raises(TrainerError, match="missing tensor '9.bias'"):
        load_state_strict(create_model("fmnist-bnn", width=32), state)
    # A plain BNN initialises an LNS one: only the mapping networks are missing, and that is allowed.
    lns = create_model("fmnist-bnn", width=32, weight_binarizer="lns")
    load_state_strict(lns, narrow.state_dict())
    assert torch.equal(lns.state_dict()["2.conv.weight"], narrow.state_dict()["2.conv.weight"])
    with pytest.raises(TrainerError, match="missing tensor .*mapping"):
        load_state_strict(lns, narrow.state_dict(), allow_mapping=False)


def test_cli_export_writes_a_verified_onnx_file(checkpoint_path: Path, capsys) -> None:
    out = checkpoint_path.parent / "deploy" / "model.onnx"
    # A missing output folder is refused before any work (never created): one clear line, exit 2.
    assert main(["export", str(checkpoint_path), "-o", str(out)]) == 2
    assert f"folder {out.parent} does not exist" in capsys.readouterr().err
    assert not out.parent.exists()
    out.parent.mkdir()
    assert main(["export", str(checkpoint_path), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    proto = onnx.load(out)
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert metadata["edgebnn.input_shape"] == "[1, 28, 28]"
    assert metadata["edgebnn.normalization"] == '{"mean": [0.286], "std": [0.353]}'
    assert metadata["edgebnn.accuracy"] == "0.25" and metadata["edgebnn.binarizer"] == "ste"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]
    model = model_from_checkpoint(load_checkpoint(checkpoint_path))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        np.testing.assert_allclose(run_onnx(proto, x.numpy()), model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_cli_export_bad_input_exits_2_without_output(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.onnx"
    assert main(["export", str(tmp_path / "missing.pt"), "-o", str(out)]) == 2
    assert "edgebnn: error: checkpoint" in capsys.readouterr().err
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(pickle.dumps({"weights": [1, 2]}, protocol=2))
    assert main(["export", str(foreign), "-o", str(out)]) == 2
    assert "edgebnn: error:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [foreign]


def test_wrong_input_shape_is_a_trainer_error() -> None:
    model = create_model("fmnist-bnn", width=32)
    with pytest.raises(TrainerError, match="does not accept inputs of shape"):
        export_onnx(model, input_shape=[3, 28, 28])
    with pytest.raises(TrainerError, match=r"\[C, H, W\]"):
        export_onnx(model, input_shape=[28, 28])
