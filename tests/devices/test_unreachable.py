"""SSH failures that need no device: refused and unreachable hosts end with one clear DevicesError.
(The 10-second bound is ConnectTimeout plus a hard process limit; not asserted, timings never are.)"""

from __future__ import annotations

import socket

import pytest

from devices.errors import DevicesError
from devices.transport import SSHTransport
from edgebnn.cli import main as edgebnn_main


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe goes


def test_connection_refused():
    with pytest.raises(DevicesError, match="connection refused"):
        SSHTransport("pi@127.0.0.1", port=_closed_port()).run("true")


def test_unreachable_address_fails_with_a_clear_message():
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed, so the connection can only time out or be refused
    with pytest.raises(DevicesError, match="unreachable|refused"):
        SSHTransport("pi@192.0.2.1", connect_timeout=3).run("true")


def test_cli_prints_one_line_and_exits_2(capsys):
    assert (
        edgebnn_main(["devices", "check", "rpi4", "--host", "pi@127.0.0.1", "--port", str(_closed_port())])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgebnn: error:") and "connection refused" in err and "\n" not in err
    assert edgebnn_main(["devices", "check", "rpi4", "--host", "pi@x", "--identity", "/nonexistent/key"]) == 2
    assert "--identity file not found" in capsys.readouterr().err
