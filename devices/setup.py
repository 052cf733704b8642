"""``edgebnn devices setup``: install the runtimes on a device that has no internet.

The wheels for the device's architecture, glibc and Python are downloaded ON THIS HOST with
``pip download --only-binary=:all: --platform ...`` into ``<cache>/wheels/<platform>-cp<XY>``
(a second setup finds them there), copied to a temp folder on the device and installed with
``pip install --no-index`` into a venv (``~/.edgebnn/venv``) or a ``--target`` folder. The
``native`` runtime (edgebnn's own engine) has no wheel: its library is cross-compiled on this host
for the device's architecture (``devices.native_library``: ``aarch64-linux-gnu-gcc`` for a 64-bit
Pi) and travels with the benchmark worker.

    >>> from devices.setup import platform_tags
    >>> platform_tags("aarch64", "2.36")[:2]
    ['manylinux_2_36_aarch64', 'manylinux_2_35_aarch64']
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from devices.cache import cache_dir
from devices.check import REMOTE_VENV, probe
from devices.errors import DevicesError
from devices.native_library import build_library
from devices.transport import Transport

RUNTIME_PACKAGES = {
    "numpy": "numpy==1.26.4",
    "onnxruntime": "onnxruntime==1.31.1",
    "litert": "ai-edge-litert==2.3.0",
}
MANYLINUX_ARCHES = {"aarch64": "aarch64", "armv7l": "armv7l", "armv8l": "armv7l", "x86_64": "x86_64"}


def platform_tags(arch: str, glibc: str | None) -> list[str]:
    """Every wheel platform tag a Linux device of this architecture and glibc accepts, best first."""
    if arch not in MANYLINUX_ARCHES:
        raise DevicesError(f"no Python wheels are published for architecture {arch!r}")
    machine = MANYLINUX_ARCHES[arch]
    major, minor = (int(part) for part in (glibc or "2.17").split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)] if major == 2 else []
    if minor >= 17:
        tags.append(f"manylinux2014_{machine}")
    return tags + [f"linux_{machine}"]


def download_wheels(packages: list[str], arch: str, glibc: str | None, python: str, *, log=print) -> Path:
    """The wheels of ``packages`` (and their dependencies) for that device, cached on this host."""
    tags = platform_tags(arch, glibc)
    py = "".join(python.split(".")[:2])
    folder = cache_dir("wheels", f"{tags[0]}-cp{py}")
    folder.mkdir(parents=True, exist_ok=True)
    common = ["--only-binary=:all:", *[f"--platform={tag}" for tag in tags], f"--python-version={py}",
              "--implementation=cp", f"--abi=cp{py}", "--abi=abi3", "--abi=none", "-d", str(folder), *packages]  # fmt: skip
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q"]
    cached = subprocess.run(
        [*pip, "--no-index", f"--find-links={folder}", *common], capture_output=True, text=True
    )
    if cached.returncode == 0:
        return folder
    log(f"downloading wheels for {tags[0]} cp{py} into {folder}")
    done = subprocess.run([*pip, *common], capture_output=True, text=True)
    if done.returncode != 0:
        missing = [
            line for line in done.stderr.splitlines() if "No matching distribution" in line or "ERROR" in line
        ]
        raise DevicesError(
            f"no wheels for {arch} (glibc {glibc}, Python {python}) of {' '.join(packages)}: "
            f"{(missing or done.stderr.strip().splitlines() or ['pip failed'])[-1].strip()}"
            + ("; this is a 32-bit OS: install the 64-bit OS" if arch.startswith("armv") else "")
        )
    return folder


def wheel_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.whl"))


def install_command(
    python: str, wheel_dir: str, packages: list[str], *, venv: str | None, target: str | None
) -> str:
    """The remote shell command that installs the pushed wheels offline (pure; every word quoted)."""
    q = shlex.quote
    specs = " ".join(q(spec) for spec in packages)
    # --no-compile: byte-compiling thousands of files is slow on a small CPU (and ~10x under emulation);
    # Python caches what is really imported on first use instead.
    offline = f"--no-index --find-links {q(wheel_dir)} --disable-pip-version-check --no-compile -q"
    if target is not None:
        # Debian's python3 has no pip: borrow one from a throw-away venv inside the temp folder.
        helper = f"{wheel_dir}/pip-venv"
        return (f"{q(python)} -m venv {q(helper)} && {q(helper + '/bin/python')} -m pip install {offline} "
                f"--target {q(target)} {specs}")  # fmt: skip
    assert venv is not None
    return f"{q(python)} -m venv {q(venv)} && {q(venv + '/bin/python')} -m pip install {offline} {specs}"


def _already_installed(facts: dict[str, Any], python: str, packages: list[str]) -> bool:
    """True when the probe found exactly these versions in that venv's Python."""
    wanted = {spec.split("==")[0].replace("-", "_"): spec.split("==")[1] for spec in packages}
    for found in facts.get("pythons", []):
        if found.get("python") == python:
            modules = found.get("modules", {})
            return all(modules.get(name) == version for name, version in wanted.items())
    return False


def setup_device(
    transport: Transport,
    *,
    runtimes: list[str] = ("onnxruntime", "litert", "native"),  # type: ignore[assignment]
    target: str | None = None,
    venv: str | None = None,
    force: bool = False,
    log=print,
) -> dict[str, Any]:
    """Download (once), push and install the runtime wheels; returns what was installed where."""
    for name in runtimes:
        if name != "native" and (name not in RUNTIME_PACKAGES or name == "numpy"):
            raise DevicesError(f"unknown runtime {name!r}; choose from onnxruntime, litert, native")
    facts = probe(transport)
    library = None
    if "native" in runtimes:  # before any download: a missing cross compiler is named at once
        try:
            library = str(build_library(facts.get("architecture") or "unknown", log=log))
        except DevicesError as error:
            raise DevicesError(f"{error} (or set up without it: --runtime onnxruntime,litert)") from None
    if not facts.get("python"):
        raise DevicesError(
            f"{transport.description}: no python3 on the device (sudo apt install python3 python3-venv)"
        )
    if target is None and not facts.get("venv_ok"):
        raise DevicesError(
            f"{transport.description}: python3 cannot create venvs (sudo apt install python3-venv)"
        )
    packages = [RUNTIME_PACKAGES["numpy"], *(RUNTIME_PACKAGES[name] for name in runtimes if name != "native")]
    venv_path = None if target is not None else (venv or f"{facts['home'] or '.'}/{REMOTE_VENV}")
    if not force and target is None and _already_installed(facts, f"{venv_path}/bin/python", packages):
        log(f"already installed in {venv_path}: {' '.join(packages)} (--force reinstalls)")
        return {"installed": [], "venv": venv_path, "target": None, "wheels": None,
                "runtimes": facts["runtimes"], "native_library": library, "facts": facts}  # fmt: skip
    folder = download_wheels(packages, facts["architecture"], facts["glibc"], facts["python"], log=log)
    wheels = wheel_files(folder)
    system_python = "python3"
    tmp = transport.run('mktemp -d "${TMPDIR:-/tmp}/edgebnn-wheels.XXXXXX"', timeout=60).stdout.strip()
    try:
        log(
            f"copying {len(wheels)} wheels ({sum(w.stat().st_size for w in wheels) / 2**20:.0f} MB) to {transport.description}"
        )
        for wheel in wheels:
            transport.put(wheel, f"{tmp}/{wheel.name}")
        log(f"installing {' '.join(packages)} into {target or venv_path}")
        done = transport.run(
            install_command(system_python, tmp, packages, venv=venv_path, target=target),
            timeout=1800,
            check=False,
        )
        if done.returncode != 0:
            text = done.stderr + done.stdout
            if "no space left" in text.lower():
                raise DevicesError(f"{transport.description}: remote disk full while installing the wheels")
            if "is not a supported wheel" in text or "exec format error" in text.lower():
                raise DevicesError(
                    f"{transport.description}: wrong architecture for the wheels: {text.strip().splitlines()[-1]}"
                )
            raise DevicesError(f"{transport.description}: installing the wheels failed: "
                               f"{(text.strip().splitlines() or ['no message'])[-1]}")  # fmt: skip
    finally:
        with contextlib.suppress(DevicesError):  # an unreachable device: report the first error
            transport.run(f"rm -rf -- {shlex.quote(tmp)}", timeout=60, check=False)
    after = probe(transport)
    return {"installed": packages, "venv": venv_path, "target": target, "wheels": str(folder),
            "runtimes": after["runtimes"], "native_library": library, "facts": after}  # fmt: skip
