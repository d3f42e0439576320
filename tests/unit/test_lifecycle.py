"""sd_notify over a real unix datagram socket, and the watchdog's interval."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import pytest
import structlog

from gateway.lifecycle import SystemdNotifier, watchdog_interval


def _listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_notify_sends_one_datagram_to_a_socket_file(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _listener(path) as systemd:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
        notifier.notify("READY=1", "STATUS=0 active calls")
        assert systemd.recv(4096) == b"READY=1\nSTATUS=0 active calls"
        notifier.close()


def test_notify_reaches_the_abstract_namespace() -> None:
    name = f"sipgw-unit-{secrets.token_hex(6)}"
    with _listener("\0" + name) as systemd:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        notifier.notify("WATCHDOG=1")
        assert systemd.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    notifier.notify("READY=1")  # no socket, no error


def test_a_gone_socket_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    with structlog.testing.capture_logs() as logs:
        notifier.notify("READY=1")
    notifier.close()
    assert [(e["event"], e["message"]) for e in logs] == [("systemd.notify_failed", "READY=1")]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_pings_at_half_the_timeout(
    environ: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(environ) == expected
