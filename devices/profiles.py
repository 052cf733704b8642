"""Device profiles: what a target is (CPU, OS bitness, memory) and how edgebnn reaches it.

A profile is a TOML file. The built-in ones ship in ``devices/profiles/``; users add their own in
``$XDG_CONFIG_HOME/edgebnn/devices/*.toml`` (same name overrides a built-in) or pass one file with
``--device-file``. Tables this module does not know (for example ``[cost_model]``, written by the
runtime stage) are kept untouched in ``profile.extra``.

    >>> from devices.profiles import load_profile, profile_names
    >>> "rpi4" in profile_names()
    True
    >>> rpi4 = load_profile("rpi4")
    >>> rpi4.architecture, rpi4.cores, rpi4.connection
    ('aarch64', 4, 'ssh')
"""

from __future__ import annotations

import os
import platform
import re
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from devices.errors import DevicesError

CONNECTIONS = ("local", "ssh", "adb")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    connection: str = "ssh"  # local | ssh | adb
    architecture: str = "aarch64"  # as `uname -m` prints it
    os_bits: int = 64
    cpu: str = ""
    cores: int = 0
    clock_mhz: int = 0
    memory_mb: int = 0
    simd: tuple[str, ...] = ()
    lce_runner: str = "lce_benchmark_model"  # what runs LCE models there: "lce" (wheel) or the binary
    lce_binary: str = ""
    platforms: tuple[str, ...] = ()  # wheel platform tags that fit (the glibc of the device adds more)
    min_glibc: str = ""
    default_user: str = ""
    remote_tmp: str = ""  # where temp dirs go on the device ("" = the device's $TMPDIR or /tmp)
    source: str = ""  # the file it was read from
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys and tables, e.g. cost_model

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["simd"], data["platforms"] = list(self.simd), list(self.platforms)
        return {**data, **self.extra}


_KNOWN = {f.name for f in fields(Profile)} - {"source", "extra"}
_TYPES: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "description": str,
    "connection": str,
    "architecture": str,
    "os_bits": int,
    "cpu": str,
    "cores": int,
    "clock_mhz": int,
    "memory_mb": int,
    "simd": list,
    "lce_runner": str,
    "lce_binary": str,
    "platforms": list,
    "min_glibc": str,
    "default_user": str,
    "remote_tmp": str,
}


def user_profile_dir() -> Path:
    """``$XDG_CONFIG_HOME/edgebnn/devices`` (``~/.config/edgebnn/devices`` by default)."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "edgebnn" / "devices"


def parse_profile(data: dict[str, Any], source: str = "") -> Profile:
    """Validate one parsed TOML document into a Profile (pure: no I/O)."""
    where = f" in {source}" if source else ""
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DevicesError(
            f"device profile{where}: 'name' must be lower-case letters, digits, '.', '_' or '-'"
        )
    for key, expected in _TYPES.items():
        if key in data and (not isinstance(data[key], expected) or isinstance(data[key], bool)):
            raise DevicesError(f"device profile {name!r}{where}: {key!r} must be a {expected.__name__}")
    if data.get("connection", "ssh") not in CONNECTIONS:
        raise DevicesError(
            f"device profile {name!r}{where}: connection must be one of {', '.join(CONNECTIONS)}"
        )
    known = {key: value for key, value in data.items() if key in _KNOWN}
    for key in ("simd", "platforms"):
        if key in known:
            known[key] = tuple(str(item) for item in known[key])
    extra = {key: value for key, value in data.items() if key not in _KNOWN}
    return Profile(**known, source=source, extra=extra)


def read_profile_file(path: str | os.PathLike[str]) -> Profile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DevicesError(f"device file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DevicesError(f"cannot read device file {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise DevicesError(f"device file {path} is not valid TOML: {error}") from None
    return parse_profile(data, str(path))


def _profile_files() -> dict[str, Path]:
    """name -> file; user files override the built-in ones of the same file name."""
    found: dict[str, Path] = {}
    builtin = resources.files("devices") / "profiles"
    for entry in sorted(builtin.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            found[entry.name[: -len(".toml")]] = Path(str(entry))
    user_dir = user_profile_dir()
    if user_dir.is_dir():
        for path in sorted(user_dir.glob("*.toml")):
            found[path.stem] = path
    return found


def profile_names() -> list[str]:
    return sorted(_profile_files())


def load_profile(name: str, device_file: str | os.PathLike[str] | None = None) -> Profile:
    """The profile called ``name`` (``device_file`` wins when given); ``host`` gets live facts."""
    if device_file is not None:
        profile = read_profile_file(device_file)
    else:
        files = _profile_files()
        if name not in files:
            raise DevicesError(f"unknown device {name!r}; choose from: {', '.join(sorted(files))}")
        profile = read_profile_file(files[name])
    return with_host_facts(profile) if profile.connection == "local" else profile


# ---- live facts of this machine -----------------------------------------------------------------

_SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "neon", "asimd", "asimddp", "sve")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def host_facts() -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mhz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    clock = int(mhz) // 1000 if mhz.isdigit() else 0
    if not clock and (found := re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)):
        clock = round(float(found.group(1)))
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    return {
        "architecture": platform.machine(),
        "os_bits": 64 if platform.architecture()[0] == "64bit" else 32,
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cores": os.cpu_count() or 0,
        "clock_mhz": clock,
        "memory_mb": int(mem.group(1)) // 1024 if mem else 0,
        "simd": tuple(flag for flag in _SIMD_FLAGS if flag in flags),
    }


def with_host_facts(profile: Profile) -> Profile:
    """Fill the zero/"live" fields of a local profile with this machine's facts."""
    facts = host_facts()
    updates = {key: value for key, value in facts.items() if getattr(profile, key) in (0, "", "live", ())}
    return Profile(**{**{f.name: getattr(profile, f.name) for f in fields(profile)}, **updates})
