"""The native runtime's library for a device: cross-compiled on this host, checked, shipped with the worker.

A device runs ``.ebnn`` models with ``libedgebnn.so`` built for its architecture. This host builds
it (``make -C runtime/native CC=aarch64-linux-gnu-gcc lib``: the NEON kernels for a 64-bit Pi;
``arm-linux-gnueabihf-gcc``: the scalar kernels for a 32-bit OS), checks the ELF header of the
result, and the benchmark copies it into the worker's folder (``runtime.worker.worker_files``).

    >>> cross_compiler("aarch64", host_machine="x86_64")
    ('aarch64-linux-gnu-gcc', 'gcc-aarch64-linux-gnu libc6-dev-arm64-cross')
    >>> cross_compiler("x86_64", host_machine="x86_64")
    ('cc', 'gcc make')
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

from devices.errors import DevicesError
from devices.lce_benchmark import check_binary_fits
from runtime.worker import package_root

# device architecture (uname -m) -> (cross compiler, the Debian packages that provide it)
CROSS_COMPILERS = {
    "aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
    "armv7l": ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf libc6-dev-armhf-cross"),
    "x86_64": ("x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu"),
}
BUILD_NAMES = {"armv8l": "armv7l"}  # a 32-bit OS on a 64-bit core runs the armv7 build


def native_dir() -> Path:
    return package_root() / "runtime" / "native"


def cross_compiler(arch: str, *, host_machine: str | None = None) -> tuple[str, str]:
    """(compiler, packages) that build the library for ``arch`` on this host."""
    arch = BUILD_NAMES.get(arch, arch)
    if arch == (host_machine or platform.machine()):
        return "cc", "gcc make"
    if arch not in CROSS_COMPILERS:
        raise DevicesError(
            f"the native runtime has no build for architecture {arch!r} (aarch64, armv7l and x86_64 only)"
        )
    return CROSS_COMPILERS[arch]


def library_path(arch: str) -> Path:
    return native_dir() / "build" / BUILD_NAMES.get(arch, arch) / "libedgebnn.so"


def build_library(arch: str, *, log=print) -> Path:
    """``libedgebnn.so`` for ``arch``, (re)built on this host (make is incremental) and checked.

    DevicesError (exit 2) naming the package when the cross compiler is missing, or when the
    result is built for another architecture."""
    compiler, packages = cross_compiler(arch)
    if shutil.which(compiler) is None:
        raise DevicesError(
            f"the native runtime for {arch} is cross-compiled on this host with {compiler}, which is missing: "
            f"sudo apt-get install -y {packages}"
        )
    path = library_path(arch)
    if not path.is_file():
        log(f"cross-compiling the native runtime for {arch} ({compiler})")
    done = subprocess.run(
        ["nice", "-n", "10", "make", "-s", "-j2", "-C", str(native_dir()), f"CC={compiler}", "lib"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not path.is_file():
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise DevicesError(f"building the native runtime for {arch} failed: {(lines or ['no message'])[-1]}")
    check_library(path, arch)
    return path


def check_library(path: Path, arch: str) -> None:
    """DevicesError when ``path`` is not a library for ``arch`` (e.g. the host's, copied over)."""
    try:
        check_binary_fits(path, BUILD_NAMES.get(arch, arch))
    except DevicesError as error:
        compiler = CROSS_COMPILERS.get(arch, ("cc",))[0]
        raise DevicesError(
            f"native runtime library: {error} (make -C runtime/native CC={compiler} lib)"
        ) from None
