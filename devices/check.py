"""``edgebnn devices check``: what a device really is, and the traps it falls into.

One shell script runs on the device (POSIX sh, no Python needed) and prints ``key=value`` lines;
``parse_facts`` reads them and ``find_traps`` compares them with the profile (both pure).

    >>> from devices.check import parse_facts, find_traps
    >>> from devices.profiles import load_profile
    >>> facts = parse_facts("arch=aarch64\\nbits=32\\ncores=4\\nglibc=glibc 2.36\\n")
    >>> facts["os_bits"], facts["glibc"]
    (32, '2.36')
    >>> find_traps(facts, load_profile("rpi4"))[0][:12]
    '32-bit OS on'
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from devices.profiles import Profile
from devices.transport import Transport

REMOTE_VENV = ".edgebnn/venv"  # relative to the device user's home (ssh starts there)
RUNTIME_MODULES = {"onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
                   "numpy": "numpy"}  # fmt: skip
MIN_GLIBC_FOR_WHEELS = (2, 28)  # onnxruntime 1.31 aarch64 wheels are manylinux_2_28; ai-edge-litert similar

_PY_PROBE = (
    "import importlib.metadata as m, importlib.util as u, json, platform, sys\n"
    "mods = {}\n"
    f"for name, dist in {RUNTIME_MODULES!r}.items():\n"
    "    try:\n"
    "        mods[name] = m.version(dist) if u.find_spec(name) else None\n"
    "    except Exception:\n"
    "        mods[name] = None\n"
    "print('py=' + json.dumps({'python': sys.executable, 'version': platform.python_version(), 'modules': mods}))\n"
)

PROBE_SCRIPT = r"""
echo "arch=$(uname -m)"
echo "bits=$(getconf LONG_BIT 2>/dev/null)"
echo "cores=$(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null)"
echo "kernel=$(uname -r)"
echo "model=$( (tr -d '\000' < /proc/device-tree/model) 2>/dev/null || sed -n 's/^Model[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
echo "cpu_part=$(sed -n 's/^CPU part[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
echo "features=$(sed -n 's/^Features[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
echo "mem_kb=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/meminfo)"
echo "tmp_free_kb=$(df -Pk "${TMPDIR:-/tmp}" 2>/dev/null | awk 'NR==2 {print $4}')"
echo "lce_benchmark_model=$(command -v lce_benchmark_model)"
echo "home=$HOME"
for py in "$HOME/%(venv)s/bin/python" python3; do
  if command -v "$py" >/dev/null 2>&1; then "$py" -c %(probe)s 2>/dev/null; fi
done
echo "venv_ok=$(python3 -c 'import ensurepip' 2>/dev/null && echo yes || echo no)"
"""


def probe_command() -> str:
    return PROBE_SCRIPT % {"venv": REMOTE_VENV, "probe": shlex.quote(_PY_PROBE)}


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None


def parse_facts(text: str) -> dict[str, Any]:
    """Probe output -> facts (pure)."""
    raw: dict[str, str] = {}
    pythons = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "py":
            try:
                pythons.append(json.loads(value))
            except ValueError:
                pass
        else:
            raw[key.strip()] = value.strip()
    glibc = re.search(r"(\d+\.\d+)", raw.get("glibc", ""))
    runtimes: dict[str, str | None] = dict.fromkeys(RUNTIME_MODULES)
    for python in pythons:  # the venv first: what edgebnn's setup installed wins
        for name, version in python.get("modules", {}).items():
            runtimes[name] = runtimes.get(name) or version
    with_runtime = [p for p in pythons if any(v for k, v in p.get("modules", {}).items() if k != "numpy")]
    mem_kb, free_kb = _int(raw.get("mem_kb", "")), _int(raw.get("tmp_free_kb", ""))
    return {
        "architecture": raw.get("arch", ""),
        "os_bits": _int(raw.get("bits", "")),
        "cores": _int(raw.get("cores", "")),
        "glibc": glibc.group(1) if glibc else None,
        "kernel": raw.get("kernel"),
        "model": raw.get("model") or None,
        "cpu_part": raw.get("cpu_part") or None,
        "cpu_features": raw.get("features", "").split(),
        "memory_mb": mem_kb // 1024 if mem_kb else None,
        "tmp_free_mb": free_kb // 1024 if free_kb is not None else None,
        "python": pythons[-1]["version"] if pythons else None,
        "python_path": (with_runtime or pythons or [{}])[0].get("python"),
        "pythons": pythons,
        "venv_ok": raw.get("venv_ok") == "yes",
        "home": raw.get("home"),
        "runtimes": {**runtimes, "lce_benchmark_model": raw.get("lce_benchmark_model") or None},
    }


def probe(transport: Transport, timeout: float = 120) -> dict[str, Any]:
    return parse_facts(transport.run(probe_command(), timeout=timeout).stdout)


def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text or "")[:2])


def find_traps(facts: dict[str, Any], profile: Profile) -> list[str]:
    """Warnings about known deployment traps (pure)."""
    traps = []
    arch, bits = facts.get("architecture", ""), facts.get("os_bits")
    if bits == 32 or arch.startswith("armv7"):
        traps.append(
            "32-bit OS on this device: LCE runs several times slower (~5x) than on a 64-bit OS, and no "
            "onnxruntime/ai-edge-litert/numpy wheels exist for armv7l on PyPI; install the 64-bit OS"
        )
    elif profile.architecture not in ("", "live") and arch and arch != profile.architecture:
        traps.append(f"the device is {arch} but profile {profile.name!r} expects {profile.architecture}")
    glibc = facts.get("glibc")
    if glibc and _version(glibc) < MIN_GLIBC_FOR_WHEELS:
        traps.append(
            f"glibc {glibc} is too old for the runtime wheels (need >= "
            f"{'.'.join(map(str, MIN_GLIBC_FOR_WHEELS))}): upgrade the OS (Raspberry Pi OS bookworm has 2.36)"
        )
    if not facts.get("python"):
        traps.append("no python3 on the device: `sudo apt install python3 python3-venv`")
    elif _version(facts["python"]) < (3, 9):
        traps.append(f"Python {facts['python']} is too old for the runtime wheels (need >= 3.9)")
    elif not facts.get("venv_ok"):
        traps.append("python3 cannot create venvs here: `sudo apt install python3-venv`")
    runtimes = facts.get("runtimes", {})
    if not any(runtimes.get(name) for name in ("onnxruntime", "ai_edge_litert", "tflite_runtime")):
        traps.append(f"no runtime installed: run `edgebnn devices setup {profile.name} --host ...`")
    if not runtimes.get("lce_benchmark_model"):
        traps.append(
            "lce_benchmark_model not on PATH: LCE (binary) models cannot run here until you copy it "
            "(release asset of larq/compute-engine) or pass --lce-benchmark-binary to bench"
        )
    if facts.get("tmp_free_mb") is not None and facts["tmp_free_mb"] < 200:
        traps.append(f"only {facts['tmp_free_mb']} MB free in the device's temp folder")
    if facts.get("memory_mb") and facts["memory_mb"] < 768:
        traps.append(f"{facts['memory_mb']} MB of RAM: large models and 4 threads may not fit")
    return traps
