"""Resolve ``--host`` into a transport: ``USER@ADDRESS`` (SSH), ``adb:SERIAL``, ``local``, or
``emulator[:NAME[-armhf]]`` (the emulated Pi started by ``edgebnn devices emulate NAME up``, whose
results are marked ``emulated: true``). ``local`` is this machine: a benchmark there runs the
installed worker in place, nothing is copied.

    >>> from devices.target import open_target
    >>> target = open_target("local")
    >>> target.local, target.emulated, target.transport.run("uname -s").stdout.strip()
    (True, False, 'Linux')
"""

from __future__ import annotations

from dataclasses import dataclass

from devices import emulator as emulator_module
from devices.errors import DevicesError
from devices.transport import AdbTransport, LocalTransport, SSHTransport, Transport


@dataclass
class Target:
    transport: Transport
    emulated: bool
    description: str
    local: bool = False  # this machine, with its installed edgebnn (no copies needed)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_target(
    host: str,
    *,
    port: int | None = None,
    identity: str | None = None,
    known_hosts: str | None = None,
    accept_new_host_key: bool = False,
) -> Target:
    if not host:
        raise DevicesError("host is required (USER@ADDRESS, adb:SERIAL, local or emulator)", parameter="host")
    if host == "local":
        return Target(LocalTransport(), False, "local", local=True)
    if host.startswith("adb:"):
        transport = AdbTransport(host[len("adb:") :])
        return Target(transport, False, transport.description)
    if host == "emulator" or host.startswith("emulator:"):
        state = emulator_module.connection_of(host)
        transport = SSHTransport(
            state["host"], port=state["port"], identity=state["identity"], known_hosts=state["known_hosts"]
        )
        return Target(
            transport, True, f"emulated {state['name']} ({state['arch']}) at {transport.description}"
        )
    policy = "accept-new" if accept_new_host_key else "strict"
    transport = SSHTransport(
        host, port=port, identity=identity, known_hosts=known_hosts, host_key_policy=policy
    )
    return Target(transport, False, transport.description)
