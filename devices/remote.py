"""A temporary folder on a device, and the commands run in it: what a benchmark needs on a remote target.

One fresh folder per session (``mktemp -d`` in the profile's ``remote_tmp``, else ``$TMPDIR`` or
/tmp), removed at the end, also after a crash, a timeout or Ctrl-C. Every command runs in that
folder as the leader of its own process group, its pid recorded, so that a timeout or clean-up
kills the whole group first. Every word of every command is quoted (``shlex``).

    >>> from devices.remote import RemoteFolder
    >>> from devices.transport import LocalTransport
    >>> with RemoteFolder(LocalTransport()) as folder:
    ...     _ = folder.write_text("hello.txt", "hi")
    ...     folder.run(["cat", "hello.txt"], timeout=60).stdout
    'hi'
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

from devices.errors import DevicesError
from devices.transport import Transport


def in_dir(folder: str, argv: list[str], env: dict[str, str] | None = None) -> str:
    """The shell command that runs ``argv`` in ``folder``, with ``env``, as its process group's leader
    with its pid in ``folder/.pid`` (pure; every word quoted)."""
    assignments = [f"{key}={value}" for key, value in (env or {}).items()]
    prefix = ["env", *assignments] if assignments else []
    return f"cd {shlex.quote(folder)} && echo $$ > .pid && exec {shlex.join([*prefix, *argv])}"


class RemoteFolder:
    """A fresh temporary folder on the device behind ``transport``; a context manager."""

    def __init__(self, transport: Transport, parent: str = ""):
        self.transport = transport
        where = shlex.quote(parent) if parent else '"${TMPDIR:-/tmp}"'
        done = transport.run(f"mktemp -d {where}/edgebnn-bench.XXXXXX", timeout=60, check=False)
        path = done.stdout.strip()
        if done.returncode != 0 or not path.startswith("/"):
            reason = (
                "disk full" if "space" in done.stderr.lower() else (done.stderr.strip() or "mktemp failed")
            )
            raise DevicesError(
                f"{transport.description}: cannot create a temp folder in {parent or '$TMPDIR'}: {reason}"
            )
        self.path = path

    def __enter__(self) -> RemoteFolder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def remote(self, relative: str) -> str:
        """The path on the device of ``relative`` (a path inside the folder)."""
        return str(PurePosixPath(self.path) / relative)

    def put(self, local: str | os.PathLike, relative: str) -> str:
        """Copy a host file into the folder (its parent folders made); its path on the device."""
        target = self.remote(relative)
        parent = str(PurePosixPath(target).parent)
        if parent != self.path:
            self.transport.run(f"mkdir -p -- {shlex.quote(parent)}", timeout=60)
        self.transport.put(local, target)
        return target

    def write_text(self, relative: str, text: str) -> str:
        with tempfile.TemporaryDirectory(prefix="edgebnn-put-") as scratch:
            local = Path(scratch) / "file"
            local.write_text(text)
            return self.put(local, relative)

    def get(self, relative_or_path: str, local: str | os.PathLike) -> None:
        source = relative_or_path if relative_or_path.startswith("/") else self.remote(relative_or_path)
        self.transport.get(source, local)

    def run(
        self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the folder (``check=False``); RemoteTimeout past ``timeout`` seconds."""
        return self.transport.run(in_dir(self.path, argv, env), timeout=timeout, check=False)

    def kill(self) -> None:
        """Kill the process group of the last command (after a timeout: the device may still run it)."""
        q = shlex.quote(self.path)
        self.transport.run(
            f"[ -f {q}/.pid ] && kill -KILL -- -$(cat {q}/.pid) 2>/dev/null; rm -f {q}/.pid",
            timeout=60,
            check=False,
        )

    def close(self) -> None:
        """Kill what still runs in the folder's process group, then remove the folder. A device that
        cannot be reached any more is left alone (the error that got us here is the one to report)."""
        q = shlex.quote(self.path)
        kill = (
            f"if [ -f {q}/.pid ]; then kill -KILL -- -$(cat {q}/.pid) 2>/dev/null; "
            f"kill -KILL $(cat {q}/.pid) 2>/dev/null; fi"
        )
        with contextlib.suppress(DevicesError):
            self.transport.run(f"{kill}; rm -rf -- {q}", timeout=60, check=False)
