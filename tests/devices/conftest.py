"""Fixtures of the devices tests: the emulated Raspberry Pi 4 (real qemu-user + a real arm64 OpenSSH
server, built once into the shared cache ``$EDGEBNN_CACHE`` or ``~/.cache/edgebnn``) and tiny real
models (a torch CNN exported to ONNX, a float .tflite from TensorFlow's converter)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

# If any command built from it were not quoted, the device would create a file called PWNED.
HOSTILE_NAME = "devtest tiny model; touch PWNED 'q' \"dq\" $(touch PWNED).onnx"
# Every model file name starts with this marker, so that the tests can tell their own remote files and
# processes from those of anyone else using the same emulated Pi.
MARKER = "devtest"


def _emulator_missing() -> str | None:
    if os.geteuid() != 0:
        return "the emulated Pi needs root (chroot, mount)"
    for tool in ("qemu-aarch64-static", "debootstrap", "ssh", "scp", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} missing: run `sudo bash scripts/ensure-system.sh test`"
    return None


@pytest.fixture(scope="session")
def emulated_pi():
    """The running emulated rpi4 (arm64): its connection state. Stopped at the end if we started it."""
    missing = _emulator_missing()
    if missing:
        pytest.skip(missing)
    from devices import emulator

    machine = emulator.Emulator("rpi4", "arm64")
    was_running = emulator.status(machine)["running"]
    state = emulator.up(machine)
    yield state
    if not was_running:
        emulator.down(machine)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny float CNN as .onnx (torch.onnx.export) and as .tflite (TFLiteConverter), an input .npy,
    and the ONNX model again under a hostile file name."""
    import torch

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 5)
    ).eval()  # fmt: skip
    onnx_path = folder / f"{MARKER}-tiny.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), str(onnx_path), input_names=["input"],
                      output_names=["logits"], dynamo=False)  # fmt: skip
    shutil.copyfile(onnx_path, folder / HOSTILE_NAME)

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.standard_normal((3, 3, 1, 4)).astype(np.float32))
    dense = tf.constant(rng.standard_normal((8 * 8 * 4, 5)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
    def tiny(x):
        y = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"))
        return tf.matmul(tf.reshape(y, [1, -1]), dense)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([tiny.get_concrete_function()], tiny)
    tflite_path = folder / f"{MARKER}-tiny_float.tflite"
    tflite_path.write_bytes(converter.convert())

    np.save(folder / "input_nchw.npy", rng.standard_normal((1, 1, 8, 8)).astype(np.float32))
    np.save(folder / "input_nhwc.npy", rng.standard_normal((1, 8, 8, 1)).astype(np.float32))
    # Sniffed as ONNX (it starts like one), so it reaches the device, where the runtime refuses it.
    (folder / f"{MARKER}-broken.onnx").write_bytes(b"\x08\x07" + b"this is not an onnx model" * 4)
    return {
        "onnx": onnx_path,
        "tflite": tflite_path,
        "hostile": folder / HOSTILE_NAME,
        "broken": folder / f"{MARKER}-broken.onnx",
        "input_nchw": folder / "input_nchw.npy",
        "input_nhwc": folder / "input_nhwc.npy",
    }


@pytest.fixture(scope="session")
def host_output():
    """model, input -> the output of the same model run on this host with the runtime the device uses."""
    return _host_output


def _host_output(model: Path, x: np.ndarray) -> np.ndarray:
    if model.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
