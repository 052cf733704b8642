"""Build the native runtime once per session (make, nice'd) and share small model files.

`native_build` is build/<arch> (the library the Python binding loads, the C test programs);
`asan_build` is build/<arch>-asan (-fsanitize=address,undefined, -Werror), `tsan_build`
build/<arch>-tsan (-fsanitize=thread).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # nativebuild.py, ebnn_models.py
from nativebuild import ARCH, NATIVE, make  # noqa: E402


@pytest.fixture(scope="session")
def native_build() -> Path:
    make("all")
    return NATIVE / "build" / ARCH


@pytest.fixture(scope="session")
def asan_build() -> Path:
    make("SAN=1", "lib", "tests")
    return NATIVE / "build" / f"{ARCH}-asan"


@pytest.fixture(scope="session")
def tsan_build() -> Path:
    make("SAN=thread", "lib", "tests")
    return NATIVE / "build" / f"{ARCH}-tsan"


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> dict[str, Path]:
    from ebnn_models import MODELS

    folder = tmp_path_factory.mktemp("ebnn")
    paths = {}
    for name, build in MODELS.items():
        paths[name] = folder / f"{name}.ebnn"
        paths[name].write_bytes(build())
    return paths


@pytest.fixture(scope="session")
def kernels(native_build) -> list[str]:
    from runtime.native import available_kernels

    return available_kernels()
