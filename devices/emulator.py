"""An emulated Raspberry Pi on this machine: a Debian bookworm root filesystem for arm64 (or armhf)
run under qemu-user as a Cortex-A72 with a Pi-4-like ``/proc/cpuinfo``, served by its own (arm64,
emulated) OpenSSH server on a loopback port. Built once, cached in ``<cache>/emulator/<name>-<arch>``.

Emulated wall time is NOT a latency (scalar code runs ~5x, SIMD ~500x slower than on a real Pi):
every result taken on it is marked ``emulated: true``. Needs root, ``qemu-user-static``,
``binfmt-support`` and ``debootstrap`` (``scripts/ensure-system.sh test`` installs them).

    $ edgebnn devices emulate rpi4 up          # ~3 min the first time, seconds afterwards
    $ edgebnn devices check rpi4 --host emulator
    $ edgebnn devices emulate rpi4 down
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices import counting
from devices.cache import cache_dir
from devices.errors import DevicesError
from devices.profiles import Profile, load_profile

ARCHES = {"arm64": "aarch64", "armhf": "arm"}  # Debian arch -> qemu/binfmt name
UNAME = {"arm64": "aarch64", "armhf": "armv7l"}
PACKAGES = "python3,python3-venv,openssh-server,openssh-sftp-server"
USER = "pi"
READY_MARK = ".edgebnn-rootfs"


@dataclass(frozen=True)
class Emulator:
    name: str  # profile name, e.g. rpi4
    arch: str = "arm64"

    @property
    def home(self) -> Path:
        return cache_dir("emulator", f"{self.name}-{self.arch}")

    @property
    def rootfs(self) -> Path:
        return self.home / "rootfs"

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def identity(self) -> Path:
        return self.home / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.home / "known_hosts"


def pi_cpuinfo(profile: Profile, arch: str, cores: int) -> str:
    """A /proc/cpuinfo like the one a Raspberry Pi kernel shows (pure)."""
    emulation = profile.extra.get("emulation", {})
    blocks = []
    for index in range(cores):
        if arch == "arm64":
            blocks.append(
                f"processor\t: {index}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
                f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
                f"CPU part\t: {emulation.get('cpu_part', '0xd08')}\nCPU revision\t: {emulation.get('cpu_revision', 3)}\n"
            )
        else:
            blocks.append(
                f"processor\t: {index}\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\n"
                "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n"
                f"CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\n"
                f"CPU part\t: {emulation.get('cpu_part', '0xd08')}\nCPU revision\t: {emulation.get('cpu_revision', 3)}\n"
            )
    tail = (
        f"Hardware\t: {emulation.get('hardware', 'BCM2835')}\nRevision\t: {emulation.get('revision', 'c03114')}\n"
        f"Serial\t\t: 10000000edb0e0a1\nModel\t\t: {emulation.get('model', profile.description)}\n"
    )
    return "\n".join(blocks) + "\n" + tail


# ---- helpers -----------------------------------------------------------------------------------


def _sh(argv: list[str], what: str, *, env: dict[str, str] | None = None, log: Path | None = None) -> None:
    """Run a host command; on failure raise DevicesError naming the step (and the log)."""
    if log is not None:
        with open(log, "ab") as out:
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
        detail = f"see {log}"
    else:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        code, detail = done.returncode, (done.stderr or done.stdout).strip()[-300:]
    if code != 0:
        raise DevicesError(f"emulator: {what} failed ({code}): {detail}")


def _require_host(arch: str) -> None:
    if os.geteuid() != 0:
        raise DevicesError("the emulated Pi needs root (chroot, mount); run with sudo")
    for tool, package in (
        ("debootstrap", "debootstrap"),
        (f"qemu-{ARCHES[arch]}-static", "qemu-user-static"),
    ):
        if not shutil.which(tool):
            raise DevicesError(
                f"{tool} not found; run `sudo bash scripts/ensure-system.sh test` (package {package})"
            )
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        _sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], "mounting binfmt_misc")
    entry = binfmt / f"qemu-{ARCHES[arch]}"
    if not entry.exists() or "enabled" not in entry.read_text():
        if not shutil.which("update-binfmts"):
            raise DevicesError(
                "update-binfmts not found; install binfmt-support (scripts/ensure-system.sh test)"
            )
        _sh(["update-binfmts", "--enable", f"qemu-{ARCHES[arch]}"], f"enabling binfmt qemu-{ARCHES[arch]}")


def _qemu_env(profile: Profile, arch: str) -> dict[str, str]:
    emulation = profile.extra.get("emulation", {})
    cpu = (
        emulation.get("qemu_cpu", "cortex-a72")
        if arch == "arm64"
        else emulation.get("qemu_cpu_armhf", "cortex-a15")
    )
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "QEMU_CPU": cpu, "LANG": "C.UTF-8"}


def _mounted_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (from /proc/self/mounts)."""
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == str(root) or point.startswith(str(root) + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _processes_in(root: Path) -> list[int]:
    """Processes whose root directory is ``root`` (the chroot's sshd and everything it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "root") == str(root):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- build -------------------------------------------------------------------------------------


def build(emulator: Emulator, *, log=print) -> Path:
    """Build the root filesystem once (debootstrap + first-boot configuration); reuse it afterwards."""
    if emulator.arch not in ARCHES:
        raise DevicesError(
            f"arch must be one of {', '.join(ARCHES)}, got {emulator.arch!r}", parameter="arch"
        )
    _require_host(emulator.arch)
    if (emulator.rootfs / READY_MARK).exists():
        return emulator.rootfs
    profile = load_profile(emulator.name)
    emulator.home.mkdir(parents=True, exist_ok=True)
    partial = emulator.home / "rootfs.partial"
    for point in _mounted_under(partial):
        subprocess.run(["umount", "-l", point], check=False)
    if _mounted_under(partial):  # never delete through a bind mount of the host's /dev
        raise DevicesError(f"emulator: cannot unmount everything under {partial}; unmount it by hand")
    shutil.rmtree(partial, ignore_errors=True)
    build_log = emulator.home / "build.log"
    build_log.write_text("")
    mirror = os.environ.get("EDGEBNN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    env = {**os.environ, **_qemu_env(profile, emulator.arch)}
    log(
        f"building the {emulator.arch} root filesystem in {emulator.rootfs} (a few minutes, once; log: {build_log})"
    )
    _sh(
        ["debootstrap", f"--arch={emulator.arch}", "--foreign", "--variant=minbase",
         f"--include={PACKAGES}", "bookworm", str(partial), mirror],
        "debootstrap (first stage)", env=env, log=build_log,
    )  # fmt: skip
    _sh(["chroot", str(partial), "/debootstrap/debootstrap", "--second-stage"], "debootstrap (second stage)",
        env=env, log=build_log)  # fmt: skip
    for point in _mounted_under(partial):  # the second stage may leave proc/sys mounted
        subprocess.run(["umount", "-l", point], check=False)
    configure(partial, env["QEMU_CPU"], emulator.name)
    (partial / READY_MARK).write_text(
        json.dumps({"arch": emulator.arch, "mirror": mirror, "built": time.time()})
    )
    os.replace(partial, emulator.rootfs)
    return emulator.rootfs


def configure(rootfs: Path, qemu_cpu: str, name: str) -> None:
    """First-boot configuration of a fresh rootfs: user pi, a host key, sshd settings."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "QEMU_CPU": qemu_cpu}
    _sh(
        ["chroot", str(rootfs), "useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", USER],
        "adding user pi",  # password "*": no password login, but not a locked account (sshd refuses those)
        env=env,
    )
    host_key = rootfs / "etc/ssh/edgebnn_host_ed25519_key"
    _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgebnn-{name}", "-f", str(host_key)],
        "generating the host key")  # fmt: skip
    (rootfs / "etc/ssh/sshd_config.d/edgebnn.conf").write_text(
        "# edgebnn emulated Pi: key-only login for pi, and the CPU model qemu must emulate\n"
        "HostKey /etc/ssh/edgebnn_host_ed25519_key\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"PermitRootLogin no\nAllowUsers {USER}\nUsePAM no\nPrintMotd no\n"
        f"SetEnv QEMU_CPU={qemu_cpu}\n"
    )


# ---- up / down / status ------------------------------------------------------------------------


def read_state(emulator: Emulator) -> dict[str, Any] | None:
    try:
        return json.loads(emulator.state_file.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def install_counter(emulator: Emulator, *, log=print) -> bool:
    """Install (or refresh) the instruction counter in the arm64 rootfs (``devices.counting``);
    False, with a note, where this host lacks qemu-user or the plugin header (counting is optional)."""
    if emulator.arch != "arm64":
        return False
    try:
        counting.install(emulator.rootfs, log=log)
    except DevicesError as error:
        log(f"note: no instruction counter on the emulated Pi ({error})")
        return False
    return True


def up(emulator: Emulator, *, port: int | None = None, log=print) -> dict[str, Any]:
    """Start sshd inside the emulated Pi (building it first if needed); returns how to connect.
    Also installs the instruction counter (``devices.counting``) when this host can build it."""
    state = read_state(emulator)
    if state and _alive(state["pid"]) and _port_open(state["port"]):
        install_counter(emulator, log=log)
        return state
    down(emulator)  # a stale half-started one
    rootfs = build(emulator, log=log)
    install_counter(emulator, log=log)
    profile = load_profile(emulator.name)
    home = emulator.home
    if not emulator.identity.exists():
        _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgebnn-emulator", "-f", str(emulator.identity)],
            "generating the client key")  # fmt: skip
    passwd = {
        line.split(":")[0]: line.split(":") for line in (rootfs / "etc/passwd").read_text().splitlines()
    }
    uid, gid = int(passwd[USER][2]), int(passwd[USER][3])
    ssh_dir = rootfs / "home" / USER / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(Path(str(emulator.identity) + ".pub").read_text())
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, uid, gid)
    (rootfs / "run/sshd").mkdir(parents=True, exist_ok=True)

    cpuinfo = home / "cpuinfo"
    cpuinfo.write_text(pi_cpuinfo(profile, emulator.arch, os.cpu_count() or 4))
    mounts = [
        (["mount", "-t", "proc", "proc", str(rootfs / "proc")], "proc"),
        (["mount", "-t", "sysfs", "sysfs", str(rootfs / "sys")], "sys"),
        (["mount", "--bind", "/dev", str(rootfs / "dev")], "dev"),
        (["mount", "--bind", "/dev/pts", str(rootfs / "dev/pts")], "dev/pts"),
        (["mount", "--bind", str(cpuinfo), str(rootfs / "proc/cpuinfo")], "Pi cpuinfo"),
    ]
    try:
        for argv, what in mounts:
            _sh(argv, f"mounting {what}")
        port = port or _free_port()
        host_pub = (rootfs / "etc/ssh/edgebnn_host_ed25519_key.pub").read_text().split()
        emulator.known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        with open(home / "sshd.log", "ab") as sshd_log:
            server = subprocess.Popen(
                ["chroot", str(rootfs), "/usr/sbin/sshd", "-D", "-e", "-p", str(port), "-o", "ListenAddress=127.0.0.1"],
                stdin=subprocess.DEVNULL, stdout=sshd_log, stderr=sshd_log,
                env=_qemu_env(profile, emulator.arch), start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not _port_open(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise DevicesError(f"emulator: sshd did not start; see {home / 'sshd.log'}")
            time.sleep(0.3)
    except BaseException:
        down(emulator)
        raise
    state = {
        "name": emulator.name,
        "arch": emulator.arch,
        "uname": UNAME[emulator.arch],
        "qemu_cpu": _qemu_env(profile, emulator.arch)["QEMU_CPU"],
        "host": f"{USER}@127.0.0.1",
        "port": port,
        "identity": str(emulator.identity),
        "known_hosts": str(emulator.known_hosts),
        "pid": server.pid,
        "rootfs": str(rootfs),
        "emulated": True,
    }
    _write_atomic(emulator.state_file, json.dumps(state, indent=2))
    return state


def down(emulator: Emulator) -> bool:
    """Stop sshd and everything running in the emulated Pi, then unmount. True if something ran."""
    rootfs = emulator.rootfs
    stopped = False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _processes_in(rootfs)
        for pid in pids:
            try:
                os.kill(pid, sig)
                stopped = True
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    for point in _mounted_under(rootfs):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        stopped = True
    emulator.state_file.unlink(missing_ok=True)
    return stopped


def status(emulator: Emulator) -> dict[str, Any]:
    state = read_state(emulator) or {}
    running = bool(state) and _alive(state["pid"]) and _port_open(state["port"])
    return {
        "name": emulator.name,
        "arch": emulator.arch,
        "built": (emulator.rootfs / READY_MARK).exists(),
        "running": running,
        "rootfs": str(emulator.rootfs),
        **(
            {key: state[key] for key in ("host", "port", "identity", "known_hosts", "qemu_cpu")}
            if running
            else {}
        ),
    }


def connection_of(spec: str) -> dict[str, Any]:
    """``emulator`` or ``emulator:rpi4`` or ``emulator:rpi4-armhf`` -> the running emulator's state."""
    name = spec.partition(":")[2] or "rpi4"
    arch = "arm64"
    for suffix in ("-arm64", "-armhf"):
        if name.endswith(suffix):
            name, arch = name[: -len(suffix)], suffix[1:]
    emulator = Emulator(name, arch)
    state = read_state(emulator)
    if not state or not _alive(state["pid"]):
        raise DevicesError(
            f"the emulated {emulator.name} ({emulator.arch}) is not running; start it with "
            f"`edgebnn devices emulate {emulator.name} up"
            + (" --arch armhf`" if emulator.arch == "armhf" else "`")
        )
    return state
