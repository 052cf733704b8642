"""The 32-bit armv7 build (Raspberry Pi OS 32-bit, armhf): the portable scalar kernels only,
cross-compiled with Debian's gcc-arm-linux-gnueabihf and run under qemu-arm (Cortex-A15: qemu has
no 32-bit A72 model). Its kernel sweeps, the loader fuzzing under AddressSanitizer + UBSan (32-bit
size_t: every size check is exercised with the narrower type), outputs bit-identical to the host's
scalar set, and the clear refusal of the NEON kernels there. Skipped without the cross compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nativebuild import NATIVE, make

CROSS = "arm-linux-gnueabihf-gcc"
QEMU = shutil.which("qemu-arm") or shutil.which("qemu-arm-static")
SYSROOT = Path("/usr/arm-linux-gnueabihf")

pytestmark = pytest.mark.skipif(
    shutil.which(CROSS) is None or QEMU is None or not SYSROOT.is_dir(),
    reason="needs gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross and qemu-user (scripts/ensure-system.sh test)",
)


def qemu(
    program: Path, *args: str, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [QEMU, "-cpu", "cortex-a15", "-L", str(SYSROOT), str(program), *args],
        capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
    )  # fmt: skip
    if check:
        assert done.returncode == 0, f"{program.name}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def armv7_build() -> Path:
    make(f"CC={CROSS}", "lib", "tests")
    return NATIVE / "build" / "armv7l"


def test_scalar_build_passes_its_sweeps_and_loader_fuzzing(armv7_build: Path, model_files) -> None:
    assert (
        "ARM, EABI5"
        in subprocess.run(["file", str(armv7_build / "libedgebnn.so")], capture_output=True, text=True).stdout
    )
    output = qemu(armv7_build / "test_kernels", "--iterations", "20").stdout
    assert output.strip().endswith("1 kernel set(s), seed 1: ok") and "scalar: bgemm" in output
    make(f"CC={CROSS}", "SAN=1", "lib", "tests")
    asan = NATIVE / "build" / "armv7l-asan"
    paths = [str(path) for path in model_files.values()]
    done = qemu(asan / "test_loader", "--flips", "60", *paths, env={"ASAN_OPTIONS": "detect_leaks=0"})
    assert done.stdout.strip().endswith(f"{len(paths)} file(s): ok")


def test_outputs_equal_the_hosts_scalar_outputs(armv7_build: Path, native_build: Path, model_files, tmp_path):
    env = {"EDGEBNN_NATIVE_KERNEL": "scalar"}
    for name, path in model_files.items():
        arm, host = tmp_path / f"{name}.armv7.f32", tmp_path / f"{name}.host.f32"
        assert (
            "kernels scalar," in qemu(armv7_build / "test_api", str(path), "--dump", str(arm), env=env).stdout
        )
        done = subprocess.run([str(native_build / "test_api"), str(path), "--dump", str(host)],
                              env={**os.environ, **env}, capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        np.testing.assert_array_equal(
            np.fromfile(arm, np.float32), np.fromfile(host, np.float32), err_msg=name
        )


def test_neon_is_refused_with_the_reason(armv7_build: Path, model_files) -> None:
    path = next(iter(model_files.values()))
    done = qemu(armv7_build / "test_api", str(path), env={"EDGEBNN_NATIVE_KERNEL": "neon"}, check=False)
    assert done.returncode != 0
    assert (
        "asks for kernel 'neon', which this build of the library lacks (it needs the aarch64 build of the "
        "library; this 32-bit armv7 build has the scalar kernels only); available here: scalar"
    ) in done.stderr + done.stdout
