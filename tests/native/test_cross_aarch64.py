"""The aarch64 build: the library with its NEON kernels, cross-compiled with Debian's
gcc-aarch64-linux-gnu and run under qemu-aarch64 as a Cortex-A72 (the Raspberry Pi 4's core):
the kernel sweeps (NEON against the scalar reference, random shapes), the loader fuzzing and the
API test under AddressSanitizer + UBSan (LeakSanitizer off: it cannot stop threads under
qemu-user), and the outputs against the host's: the scalar set bit for bit, the NEON set within
float rounding. Skipped where the cross compiler or qemu is missing (`make test` installs them)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nativebuild import NATIVE, make

CROSS = "aarch64-linux-gnu-gcc"
QEMU = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
SYSROOT = Path("/usr/aarch64-linux-gnu")
NO_LEAKS = {"ASAN_OPTIONS": "detect_leaks=0"}  # LeakSanitizer needs ptrace-like thread stops

pytestmark = pytest.mark.skipif(
    shutil.which(CROSS) is None or QEMU is None or not SYSROOT.is_dir(),
    reason="needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (scripts/ensure-system.sh test)",
)


@pytest.fixture(scope="module")
def aarch64_build() -> Path:
    make(f"CC={CROSS}", "lib", "tests")
    return NATIVE / "build" / "aarch64"


@pytest.fixture(scope="module")
def aarch64_asan_build() -> Path:
    make(f"CC={CROSS}", "SAN=1", "lib", "tests")
    return NATIVE / "build" / "aarch64-asan"


def qemu(program: Path, *args: str, env: dict | None = None) -> str:
    done = subprocess.run(
        [QEMU, "-cpu", "cortex-a72", "-L", str(SYSROOT), str(program), *args],
        capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, (
        f"{program.name} under qemu exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def test_neon_kernels_match_the_scalar_reference_under_qemu(aarch64_build: Path) -> None:
    assert (
        "ARM aarch64"
        in subprocess.run(
            ["file", str(aarch64_build / "libedgebnn.so")], capture_output=True, text=True
        ).stdout
    )
    assert (aarch64_build / "libedgebnn.a").is_file()
    for seed in ("1", "2"):
        output = qemu(aarch64_build / "test_kernels", "--iterations", "30", "--seed", seed)
        lines = {line.split(":")[0]: line for line in output.splitlines()}
        assert lines["neon"].endswith(": ok") and "bmaxpool 30" in lines["neon"], output
        assert lines["scalar"].endswith(": ok"), output
        assert output.strip().endswith(f"2 kernel set(s), seed {seed}: ok")


def test_loader_fuzzing_and_api_under_address_sanitizer(aarch64_asan_build: Path, model_files) -> None:
    paths = [str(path) for path in model_files.values()]
    output = qemu(aarch64_asan_build / "test_loader", "--flips", "100", *paths, env=NO_LEAKS)
    assert output.strip().endswith(f"{len(paths)} file(s): ok"), output
    for path in paths:
        assert "kernels neon scalar" in qemu(aarch64_asan_build / "test_api", path, env=NO_LEAKS)
    output = qemu(aarch64_asan_build / "test_kernels", "--iterations", "4", env=NO_LEAKS)
    assert output.strip().endswith(": ok")


def _dump(program: list[str], path: Path, out: Path, kernel: str | None) -> np.ndarray:
    env = {key: value for key, value in os.environ.items() if key != "EDGEBNN_NATIVE_KERNEL"}
    if kernel is not None:
        env["EDGEBNN_NATIVE_KERNEL"] = kernel
    done = subprocess.run([*program, str(path), "--dump", str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return np.fromfile(out, np.float32)


def test_outputs_equal_the_hosts(aarch64_build: Path, native_build: Path, model_files, tmp_path) -> None:
    arm = [QEMU, "-cpu", "cortex-a72", "-L", str(SYSROOT), str(aarch64_build / "test_api")]
    host = [str(native_build / "test_api")]
    for name, path in model_files.items():
        # the same portable C on both: bit for bit
        arm_scalar = _dump(arm, path, tmp_path / f"{name}.arm.f32", "scalar")
        np.testing.assert_array_equal(arm_scalar, _dump(host, path, tmp_path / f"{name}.host.f32", "scalar"))
        # NEON (FMA in its float kernels) against the host's best set: float rounding only
        arm_neon = _dump(arm, path, tmp_path / f"{name}.neon.f32", "neon")
        best = _dump(host, path, tmp_path / f"{name}.best.f32", None)
        np.testing.assert_allclose(arm_neon, best, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(arm_neon, arm_scalar, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="an x86-64 host")
def test_neon_is_refused_by_name_off_aarch64(native_build: Path, model_files, tmp_path) -> None:
    path = next(iter(model_files.values()))
    env = {**os.environ, "EDGEBNN_NATIVE_KERNEL": "neon"}
    done = subprocess.run(
        [str(native_build / "test_api"), str(path)], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "asks for kernel 'neon', which this build of the library lacks (it needs an aarch64 CPU)" in (
        done.stderr + done.stdout
    )
