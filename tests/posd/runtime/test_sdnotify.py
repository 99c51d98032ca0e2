"""sd_notify datagrams as a real AF_UNIX listener (the service manager's side) receives them."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posd.runtime import Notifier

WAIT_S = 5.0


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
        name = address
    else:
        token = f"posd-test-{os.getpid()}-{os.urandom(6).hex()}"
        sock.bind(b"\0" + token.encode())
        name = "@" + token
    sock.settimeout(WAIT_S)
    yield sock, name
    sock.close()


def fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_notify_fields_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": name})
    assert notifier.enabled
    assert notifier.notify(ready=True, status="running")
    assert fields(sock) == {"READY": "1", "STATUS": "running"}
    notifier.notify(watchdog=True)
    assert fields(sock) == {"WATCHDOG": "1"}
    notifier.notify(stopping=True, status="stopping")
    assert fields(sock) == {"STOPPING": "1", "STATUS": "stopping"}
    notifier.close()


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": name})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.notify(reloading=True, status="reloading")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    got = fields(sock)
    assert got["RELOADING"] == "1"
    assert before <= int(got["MONOTONIC_USEC"]) <= after
    notifier.close()


def test_status_cannot_inject_fields(listener: tuple[socket.socket, str]) -> None:
    sock, name = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": name})
    notifier.notify(status="reader error: gone\nREADY=1")
    assert fields(sock) == {"STATUS": "reader error: gone READY=1"}
    notifier.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.notify(ready=True) is False
    assert notifier.watchdog_interval is None


def test_unsupported_address_is_ignored() -> None:
    assert not Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_missing_listener_does_not_raise(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "absent.sock")})
    assert notifier.notify(ready=True) is False
    notifier.close()


def test_watchdog_interval_is_half_the_timeout_for_this_process() -> None:
    pid = str(os.getpid())
    assert Notifier.from_environ({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}
    assert Notifier.from_environ(env).watchdog_interval == 1.0
    other = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environ(other).watchdog_interval is None
    for bad in ("", "0", "-5", "soon"):
        assert Notifier.from_environ({"WATCHDOG_USEC": bad}).watchdog_interval is None
    assert (
        Notifier.from_environ({"WATCHDOG_USEC": "1", "WATCHDOG_PID": "x"}).watchdog_interval is None
    )


def test_unset_removes_the_variables_for_children() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1", "PATH": "/bin"}
    Notifier.from_environ(env, unset=True).close()
    assert env == {"PATH": "/bin"}
