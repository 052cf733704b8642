"""Pure helpers of the converter (no TensorFlow): geometry, weight checks, readers, embedding."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from converter.embed import c_identifier, embed_c
from converter.errors import ConverterError
from converter.graph import analyze, binary_weight_scales, load_onnx, resolve_input_shape
from converter.lowering import lce_mistakes_for_same, same_pads
from formats.errors import FormatError
from formats.tflite import read_tflite


def test_same_pads_matches_tensorflow_geometry():
    assert same_pads(32, 3, 1) == (1, 1)
    assert same_pads(32, 3, 2) == (0, 1)  # even size, stride 2: all padding after
    assert same_pads(31, 3, 2) == (1, 1)
    assert same_pads(224, 7, 2) == (2, 3)
    assert same_pads(8, 1, 2) == (0, 0)


def test_lce_pad_fusion_predicate():
    # pad (1,1) at stride 2 on 32: LCE 0.16 takes it for SAME (which is (0,1)): would be wrong
    assert lce_mistakes_for_same([[0, 0], [1, 1], [1, 1], [0, 0]], (32, 32), (3, 3), (2, 2), (1, 1))
    assert lce_mistakes_for_same([[0, 0], [3, 3], [3, 3], [0, 0]], (224, 224), (7, 7), (2, 2), (1, 1))
    # odd size: (1,1) is SAME geometry anyway; not fusable shapes are left alone
    assert not lce_mistakes_for_same([[0, 0], [2, 2], [2, 2], [0, 0]], (32, 32), (3, 3), (1, 1), (1, 1))
    assert not lce_mistakes_for_same([[0, 0], [1, 1], [0, 0], [0, 0]], (32, 32), (3, 3), (2, 2), (1, 1))


def test_binary_weight_scales():
    rng = np.random.default_rng(0)
    signs = np.where(rng.standard_normal((4, 3, 3, 3)) >= 0, 1.0, -1.0).astype(np.float32)
    scales = np.array([0.5, 1.0, 2.0, 0.1], dtype=np.float32)
    assert np.allclose(binary_weight_scales(signs * scales[:, None, None, None]), scales)
    assert np.allclose(
        binary_weight_scales(signs * -scales[:, None, None, None]), scales
    )  # folded negative BN
    assert binary_weight_scales(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)) is None
    zero_channel = signs.copy()
    zero_channel[1] = 0.0
    assert binary_weight_scales(zero_channel) is None


def _where_conv_model(dims, value_1=1.0, weights=None) -> onnx.ModelProto:
    weights = weights if weights is not None else np.ones((2, 1, 3, 3), np.float32)
    nodes = [
        helper.make_node("GreaterOrEqual", ["input", "zero"], ["ge"]),
        helper.make_node("Where", ["ge", "one", "minus_one"], ["b"]),
        helper.make_node("Conv", ["b", "w"], ["logits"]),
    ]
    inits = [
        onnx.numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        onnx.numpy_helper.from_array(np.array(value_1, np.float32), "one"),
        onnx.numpy_helper.from_array(np.array(-1.0, np.float32), "minus_one"),
        onnx.numpy_helper.from_array(weights, "w"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_binarizer_and_binary_conv_are_recognised():
    info = analyze(_where_conv_model([1, 1, 5, 5]))
    (conv,) = info.convs.values()
    assert conv.binary and conv.binarized_input and conv.float_input == "input"
    info = analyze(_where_conv_model([1, 1, 5, 5], value_1=0.5))  # Where(x>=0, 0.5, -1): not +-1
    (conv,) = info.convs.values()
    assert not conv.binary and not conv.binarized_input


def _conv_relu_model(bias=None, extra_consumer=False) -> onnx.ModelProto:
    """binarizer -> binary Conv (weights +-2) [-> bias] -> Relu [, and the conv output added back]."""
    model = _where_conv_model([1, 1, 5, 5], weights=np.full((2, 1, 3, 3), -2.0, np.float32))
    graph = model.graph
    conv = graph.node[2]
    conv.output[0] = "conv"
    if bias is not None:
        conv.input.append("bias")
        graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(bias, np.float32), "bias"))
    graph.node.append(helper.make_node("Relu", ["conv"], ["relu" if extra_consumer else "logits"]))
    if extra_consumer:
        graph.node.append(helper.make_node("Add", ["relu", "conv"], ["logits"]))
    return model


def test_relu_after_binary_conv_is_found_only_where_the_scale_commutes():
    (conv,) = analyze(_conv_relu_model()).convs.values()
    assert conv.binary and conv.relu_after == "logits"
    (conv,) = analyze(_conv_relu_model(bias=[0.5, 0.0])).convs.values()  # relu(a*acc + b) != a*relu(..)
    assert conv.binary and conv.relu_after is None
    (conv,) = analyze(_conv_relu_model(bias=[0.0, 0.0])).convs.values()
    assert conv.relu_after == "logits"
    (conv,) = analyze(_conv_relu_model(extra_consumer=True)).convs.values()  # the Add needs a*acc
    assert conv.binary and conv.relu_after is None


def test_convert_attribute_is_the_function_even_after_its_module_is_imported():
    import importlib

    import converter

    importlib.import_module("converter.conversion")
    assert callable(converter.convert) and converter.convert.__module__ == "converter.conversion"
    assert converter.convert is converter.conversion.convert
    from converter import convert

    assert convert is converter.conversion.convert


def test_resolve_input_shape():
    assert resolve_input_shape(_where_conv_model(["N", 1, 5, 5]), None) == [1, 1, 5, 5]
    assert resolve_input_shape(_where_conv_model(["N", 1, "H", "W"]), (1, 7, 6)) == [1, 1, 7, 6]
    with pytest.raises(ConverterError, match="dynamic shape"):
        resolve_input_shape(_where_conv_model(["N", 1, "H", "W"]), None)
    with pytest.raises(ConverterError, match="axis 1"):
        resolve_input_shape(_where_conv_model(["N", 1, 5, 5]), (3, 5, 5))


def test_load_onnx_errors(tmp_path):
    with pytest.raises(ConverterError, match="not a valid ONNX model"):
        load_onnx(b"\x08\x07garbage" * 10)
    with pytest.raises(ConverterError, match="does not exist"):
        load_onnx(tmp_path / "missing.onnx")


def test_read_tflite_rejects_non_flatbuffers():
    with pytest.raises(FormatError, match="no 'TFL3' identifier"):
        read_tflite(b"not a model at all")
    with pytest.raises(FormatError, match="corrupt or truncated"):
        read_tflite(b"\x20\x00\x00\x00TFL3" + b"\xff" * 24)


def test_embed_c_contents():
    files = embed_c(bytes(range(40)), "my-model", {"runtime_required": "stock TFLite"})
    assert sorted(files) == ["my-model.c", "my-model.h", "my-model.json"]
    source = files["my-model.c"].decode()
    assert "const unsigned char my_model[]" in source and "my_model_len = 40u" in source
    assert "aligned(16)" in source and "0x27," in source
    manifest = json.loads(files["my-model.json"])
    assert manifest["symbol"] == "my_model" and manifest["size_bytes"] == 40
    assert c_identifier("3x") == "model_3x" and c_identifier("a.b-c") == "a_b_c"
    with pytest.raises(ConverterError):
        embed_c(b"", "empty")


def test_readers_do_not_import_tensorflow():
    code = (
        "import sys, converter, converter.audit, formats.tflite, runtime.verify, converter.graph;"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported';"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _modules(*packages) -> list[str]:
    import pkgutil

    return sorted(
        f"{package.__name__}.{info.name}"
        for package in packages
        for info in pkgutil.iter_modules(package.__path__)
        if not info.ispkg and info.name != "__main__"
    )


def test_module_examples_run():
    """The examples at the top of the converter's and the CLI's modules run (or say why they cannot)."""
    import doctest
    import importlib

    import converter
    import edgebnn

    names = _modules(converter, edgebnn)
    assert {"converter.conversion", "converter.audit", "edgebnn.cli", "edgebnn.zoo_graph"} <= set(names)
    for name in names:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
