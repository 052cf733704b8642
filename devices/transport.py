"""Transports: run a shell command and copy files on a device, locally, over SSH or over adb.

Every remote command is one shell string built from an argv list with ``shlex.join`` (or
``shlex.quote`` per word), so file names with spaces, quotes or ``;`` travel as data, never as code.
SSH goes through the system OpenSSH client: key authentication only (``BatchMode=yes``), host keys
checked by default, one shared connection (ControlMaster) for all the commands of a session, and
``ConnectTimeout`` so an unreachable host fails within seconds.

    >>> from devices.transport import LocalTransport
    >>> with LocalTransport() as local:
    ...     local.run("echo hello").stdout
    'hello\\n'
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from devices.errors import DevicesError

CONNECT_TIMEOUT_S = 6  # TCP + SSH handshake; with the process limit below a dead host fails in < 10 s
HOST_KEY_POLICIES = ("strict", "accept-new")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])$")


class RemoteTimeout(DevicesError):
    """A remote command ran past its time limit (the ssh/adb client was killed)."""


class Transport(Protocol):
    description: str

    def run(
        self, command: str, *, timeout: float | None = None, stdin: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...

    def put(self, local: str | os.PathLike[str], remote: str) -> None: ...

    def get(self, remote: str, local: str | os.PathLike[str]) -> None: ...

    def close(self) -> None: ...


def _run(argv: list[str], *, timeout: float | None, stdin: bytes | None) -> subprocess.CompletedProcess[str]:
    try:
        completed = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise DevicesError(f"{argv[0]!r} is not installed (needed to reach the device)") from None
    except subprocess.TimeoutExpired:
        raise RemoteTimeout(f"command timed out after {timeout:g} s: {shlex.join(argv[-1:])[:200]}") from None
    return subprocess.CompletedProcess(
        argv,
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


class _ContextMixin:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()  # type: ignore[attr-defined]


# ---- local -------------------------------------------------------------------------------------


class LocalTransport(_ContextMixin):
    description = "local"

    def run(self, command, *, timeout=None, stdin=None, check=True):
        completed = _run(["sh", "-c", command], timeout=timeout, stdin=stdin)
        if check and completed.returncode != 0:
            raise DevicesError(f"local command failed ({completed.returncode}): {_tail(completed.stderr)}")
        return completed

    def put(self, local, remote):
        shutil.copyfile(local, remote)

    def get(self, remote, local):
        shutil.copyfile(remote, local)

    def close(self):
        pass


# ---- SSH ---------------------------------------------------------------------------------------


def explain_ssh_failure(stderr: str, target: str) -> str:
    """One line that says what went wrong with an ssh/scp call that exited 255 (pure)."""
    text = stderr.lower()
    if "could not resolve hostname" in text or "name or service not known" in text:
        return f"cannot resolve host name in {target!r}"
    if "connection refused" in text:
        return f"{target}: connection refused (is sshd running, is the port right?)"
    if "timed out" in text or "no route to host" in text or "network is unreachable" in text:
        return f"{target} is unreachable: {_tail(stderr, 1)}"
    if "remote host identification has changed" in text:
        return f"{target}: the host key CHANGED since it was recorded in known_hosts; check the device, then fix known_hosts"
    if "host key verification failed" in text or "no matching host key" in text:
        return (
            f"{target}: host key not known; connect once with ssh to verify it, or pass "
            "--accept-new-host-key (trust on first use) or --known-hosts FILE"
        )
    if "permission denied" in text or "too many authentication failures" in text:
        return (
            f"{target}: authentication failed (key-only login, no passwords); pass --identity KEY "
            "or add your public key to ~/.ssh/authorized_keys on the device"
        )
    if "no such identity" in text or "identity file" in text and "not accessible" in text:
        return f"{target}: identity file not readable: {_tail(stderr, 1)}"
    if "connection closed" in text or "connection reset" in text or "broken pipe" in text:
        return f"{target}: connection lost: {_tail(stderr, 1)}"
    return f"{target}: ssh failed: {_tail(stderr) or 'no message'}"


@dataclass
class SSHTransport(_ContextMixin):
    """``user@address`` reached with the system ``ssh``/``scp`` (key auth, one shared connection)."""

    host: str
    port: int | None = None
    identity: str | None = None
    known_hosts: str | None = None
    host_key_policy: str = "strict"  # "accept-new": trust on first use, still refuse changed keys
    connect_timeout: int = CONNECT_TIMEOUT_S
    _control_dir: str | None = field(default=None, repr=False)
    _master_open: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not _HOST_RE.match(self.host):
            raise DevicesError(
                f"host must look like USER@ADDRESS or ADDRESS, got {self.host!r}", parameter="host"
            )
        if self.port is not None and not 0 < int(self.port) < 65536:
            raise DevicesError(f"port must be 1..65535, got {self.port}", parameter="port")
        if self.host_key_policy not in HOST_KEY_POLICIES:
            raise DevicesError(f"host key policy must be one of {', '.join(HOST_KEY_POLICIES)}")
        if self.identity is not None and not Path(self.identity).is_file():
            raise DevicesError(f"identity file not found: {self.identity}", parameter="identity")
        if self.known_hosts is not None and not Path(self.known_hosts).is_file():
            raise DevicesError(f"known_hosts file not found: {self.known_hosts}", parameter="known_hosts")

    @property
    def description(self) -> str:
        return f"{self.host}" + (f" port {self.port}" if self.port else "")

    def options(self, *, shared: bool = True) -> list[str]:
        """The ``-o`` options shared by ssh and scp (an argv fragment); ``shared``: use the open master."""
        strict = "yes" if self.host_key_policy == "strict" else "accept-new"
        options = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-o", "ConnectionAttempts=1",
            "-o", f"StrictHostKeyChecking={strict}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if self.known_hosts:
            options += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity:
            options += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        if shared and self._control_dir:
            options += ["-o", f"ControlPath={self._control_dir}/%C", "-o", "ControlMaster=no"]
        return options

    def ssh_argv(self, command: str) -> list[str]:
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *self.options(), *port, "-T", "--", self.host, command]

    def scp_argv(self, source: str, destination: str) -> list[str]:
        port = ["-P", str(self.port)] if self.port else []
        return ["scp", "-q", *self.options(), *port, "--", source, destination]

    def _remote(self, path: str) -> str:
        return f"{self.host}:{path}"

    def connect(self) -> None:
        """Open the shared connection (and fail here, clearly, if the device cannot be reached)."""
        if self._master_open:
            return
        self._control_dir = tempfile.mkdtemp(prefix="edgebnn-ssh-")
        port = ["-p", str(self.port)] if self.port else []
        argv = ["ssh", *self.options(shared=False), "-o", f"ControlPath={self._control_dir}/%C"]
        argv += ["-o", "ControlMaster=yes", "-o", "ControlPersist=120", "-f", "-N", *port, "--", self.host]
        # The backgrounded master inherits stdout/stderr: give it a file, not a pipe, or we would wait on it.
        with tempfile.TemporaryFile() as errors:
            try:
                code = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                    timeout=self.connect_timeout + 3, check=False,
                ).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                self._cleanup_dir()
                raise DevicesError(
                    f"{self.description} is unreachable: no answer within {self.connect_timeout + 3} s"
                ) from None
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace")
        if code != 0:
            self._cleanup_dir()
            raise DevicesError(explain_ssh_failure(message, self.description))
        self._master_open = True

    def run(self, command, *, timeout=None, stdin=None, check=True):
        self.connect()
        completed = _run(self.ssh_argv(command), timeout=timeout, stdin=stdin)
        if completed.returncode == 255:
            raise DevicesError(explain_ssh_failure(completed.stderr, self.description))
        if check and completed.returncode != 0:
            raise DevicesError(
                f"{self.description}: remote command failed ({completed.returncode}): {_tail(completed.stderr)}"
            )
        return completed

    def _scp(self, source: str, destination: str, what: str) -> None:
        self.connect()
        completed = _run(self.scp_argv(source, destination), timeout=600, stdin=None)
        if completed.returncode != 0:
            text = completed.stderr
            if "no space left" in text.lower() or "disk quota" in text.lower():
                raise DevicesError(f"{self.description}: remote disk full while copying {what}")
            raise DevicesError(
                f"{self.description}: copying {what} failed: {_tail(text) or explain_ssh_failure(text, self.description)}"
            )

    def put(self, local, remote):
        # An absolute local path: scp would read "a:b" as host "a" otherwise.
        try:
            self._scp(str(Path(local).resolve()), self._remote(remote), str(local))
        except DevicesError:
            # SFTP reports a full disk as a bare "Failure": ask the device how much room is left.
            free = self.run(f"df -Pk -- {shlex.quote(str(Path(remote).parent))} | awk 'NR==2 {{print $4}}'",
                            timeout=60, check=False).stdout.strip()  # fmt: skip
            if free.isdigit() and int(free) * 1024 < Path(local).stat().st_size + 4096:
                raise DevicesError(
                    f"{self.description}: remote disk full while copying {local} ({int(free)} KiB free "
                    f"in {Path(remote).parent})"
                ) from None
            raise

    def get(self, remote, local):
        self._scp(self._remote(remote), str(Path(local).resolve()), remote)

    def _cleanup_dir(self) -> None:
        if self._control_dir:
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = None

    def close(self) -> None:
        """Stop the shared connection (its background ssh process) and remove its socket folder."""
        if self._master_open and self._control_dir:
            port = ["-p", str(self.port)] if self.port else []
            subprocess.run(
                ["ssh", "-o", f"ControlPath={self._control_dir}/%C", *port, "-O", "exit", "--", self.host],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
        self._master_open = False
        self._cleanup_dir()


# ---- adb ---------------------------------------------------------------------------------------


@dataclass
class AdbTransport(_ContextMixin):
    """An Android device reached with ``adb -s SERIAL``. ``adb shell`` joins its words with spaces and
    hands them to the device's sh, so the command is quoted like an SSH command."""

    serial: str
    adb: str = "adb"

    def __post_init__(self) -> None:
        if not self.serial or self.serial.startswith("-") or any(c.isspace() for c in self.serial):
            raise DevicesError(f"adb serial must be one word (see `adb devices`), got {self.serial!r}")

    @property
    def description(self) -> str:
        return f"adb device {self.serial}"

    def shell_argv(self, command: str) -> list[str]:
        return [self.adb, "-s", self.serial, "shell", command]

    def push_argv(self, local: str, remote: str) -> list[str]:
        return [self.adb, "-s", self.serial, "push", str(local), remote]

    def pull_argv(self, remote: str, local: str) -> list[str]:
        return [self.adb, "-s", self.serial, "pull", remote, str(local)]

    def run(self, command, *, timeout=None, stdin=None, check=True):
        completed = _run(self.shell_argv(command), timeout=timeout, stdin=stdin)
        if check and completed.returncode != 0:
            raise DevicesError(
                f"{self.description}: command failed ({completed.returncode}): {_tail(completed.stderr or completed.stdout)}"
            )
        return completed

    def put(self, local, remote):
        completed = _run(self.push_argv(str(local), remote), timeout=600, stdin=None)
        if completed.returncode != 0:
            raise DevicesError(
                f"{self.description}: adb push failed: {_tail(completed.stderr or completed.stdout)}"
            )

    def get(self, remote, local):
        completed = _run(self.pull_argv(remote, str(local)), timeout=600, stdin=None)
        if completed.returncode != 0:
            raise DevicesError(
                f"{self.description}: adb pull failed: {_tail(completed.stderr or completed.stdout)}"
            )

    def close(self):
        pass
