"""The C test programs of runtime/native/tests: kernel sweeps against the scalar references (every
kernel set this CPU has), the public API, and the loader fuzzer under AddressSanitizer + UBSan."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SANITIZER_ENV = {
    **os.environ,
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=98",
}


def run(program: Path, *args: str, env: dict | None = None, timeout: int = 300) -> str:
    done = subprocess.run([str(program), *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, (
        f"{program.name} {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    )
    assert "sanitizer" not in done.stderr.lower(), done.stderr[-6000:]  # ASan, UBSan and TSan reports
    return done.stdout


@pytest.mark.parametrize("seed", [1, 2])
def test_kernel_sweeps_match_the_scalar_references(native_build: Path, kernels: list[str], seed: int) -> None:
    output = run(native_build / "test_kernels", "--seed", str(seed), "--iterations", "50")
    for kernel in kernels:
        assert f"{kernel}: bgemm" in output and "cases: ok" in output
    assert output.strip().endswith(": ok")


def test_api_on_real_models(native_build: Path, model_files: dict[str, Path]) -> None:
    for path in model_files.values():
        assert run(native_build / "test_api", str(path)).strip().endswith(": ok")


def test_loader_fuzzing_under_sanitizers(asan_build: Path, model_files: dict[str, Path]) -> None:
    output = run(
        asan_build / "test_loader",
        "--seed",
        "7",
        "--flips",
        "1500",
        *map(str, model_files.values()),
        env=SANITIZER_ENV,
    )
    assert output.strip().endswith("file(s): ok")
    assert "absurd fields" in output


def test_api_and_kernels_under_sanitizers(asan_build: Path, model_files: dict[str, Path]) -> None:
    for path in model_files.values():
        run(asan_build / "test_api", str(path), env=SANITIZER_ENV)
    run(asan_build / "test_kernels", "--seed", "3", "--iterations", "12", env=SANITIZER_ENV)


def test_threads_under_thread_sanitizer(tsan_build: Path, model_files: dict[str, Path]) -> None:
    """The pool and the multi-threaded ops (2-thread kernel sweeps, 2-thread models): no data race."""
    env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1:exitcode=97"}
    run(tsan_build / "test_kernels", "--seed", "4", "--iterations", "6", env=env)
    for path in model_files.values():
        run(tsan_build / "test_api", str(path), env=env)
