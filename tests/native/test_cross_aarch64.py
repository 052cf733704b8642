"""The aarch64 build (issue 13's starting point): the scalar library and its C tests cross-compiled
with Debian's gcc-aarch64-linux-gnu and run under qemu-aarch64; its outputs equal the host's
scalar outputs bit for bit. Skipped where the cross compiler or qemu is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nativebuild import NATIVE, make

CROSS = "aarch64-linux-gnu-gcc"
QEMU = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
SYSROOT = Path("/usr/aarch64-linux-gnu")

pytestmark = pytest.mark.skipif(
    shutil.which(CROSS) is None or QEMU is None or not SYSROOT.is_dir(),
    reason="needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user(-static)",
)


@pytest.fixture(scope="module")
def aarch64_build() -> Path:
    make(f"CC={CROSS}", "lib", "tests")
    return NATIVE / "build" / "aarch64"


def qemu(program: Path, *args: str, env: dict | None = None) -> str:
    done = subprocess.run(
        [QEMU, "-L", str(SYSROOT), str(program), *args], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, (
        f"{program.name} under qemu exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def test_scalar_library_builds_and_passes_under_qemu(aarch64_build: Path, model_files) -> None:
    assert (
        "ARM aarch64"
        in subprocess.run(
            ["file", str(aarch64_build / "libedgebnn.so")], capture_output=True, text=True
        ).stdout
    )
    assert (aarch64_build / "libedgebnn.a").is_file()
    output = qemu(aarch64_build / "test_kernels", "--iterations", "15")
    assert "scalar: bgemm" in output and output.strip().endswith(": ok")
    qemu(aarch64_build / "test_loader", "--flips", "100", *map(str, model_files.values()))


def test_outputs_equal_the_hosts_scalar_outputs(
    aarch64_build: Path, native_build: Path, model_files, tmp_path
) -> None:
    env = {**os.environ, "EDGEBNN_NATIVE_KERNEL": "scalar"}
    for name, path in model_files.items():
        arm, host = tmp_path / f"{name}.arm.f32", tmp_path / f"{name}.host.f32"
        qemu(aarch64_build / "test_api", str(path), "--dump", str(arm), env=env)
        done = subprocess.run(
            [str(native_build / "test_api"), str(path), "--dump", str(host)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        np.testing.assert_array_equal(
            np.fromfile(arm, np.float32), np.fromfile(host, np.float32), err_msg=name
        )
