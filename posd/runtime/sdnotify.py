"""The sd_notify protocol, spoken directly: one AF_UNIX datagram of `KEY=VALUE` lines.

systemd passes the socket in NOTIFY_SOCKET (a path, or an abstract name written with a leading
'@'), and the watchdog timeout in WATCHDOG_USEC (for the process in WATCHDOG_PID, when set).
Without NOTIFY_SOCKET every call is a no-op, so `posd run` behaves the same outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__package__)

_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def _watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    raw = environ.get("WATCHDOG_USEC", "")
    if not raw:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            log.warning("ignoring WATCHDOG_PID=%r: not a process id", owner)
            return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", raw)
        return None
    return usec if usec > 0 else None


def _clean(value: str) -> str:
    # A newline would start a new assignment inside the datagram.
    return " ".join(value.splitlines())


class Notifier:
    """Sends state changes to the service manager; every method is a no-op without one."""

    def __init__(
        self, address: str | bytes | None = None, watchdog_usec: int | None = None
    ) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # The manager reads promptly; if its queue is ever full, a dropped status beats a
            # daemon blocked in sendto.
            self._sock.setblocking(False)

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = False
    ) -> Notifier:
        """The notifier systemd configured for this process (no-op when none was).

        `unset=True` removes the variables afterwards so child processes do not inherit them.
        """
        env: MutableMapping[str, str] = os.environ if environ is None else environ
        socket_name = env.get("NOTIFY_SOCKET", "")
        address = _address(socket_name) if socket_name else None
        if socket_name and address is None:
            log.warning(
                "NOTIFY_SOCKET=%r is not a socket path or @name; not notifying", socket_name
            )
        watchdog = _watchdog_usec(env, os.getpid())
        if unset:
            for key in _ENV_KEYS:
                env.pop(key, None)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the timeout), or None when no watchdog is set."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(
        self,
        *,
        ready: bool = False,
        status: str | None = None,
        watchdog: bool = False,
        stopping: bool = False,
        reloading: bool = False,
    ) -> bool:
        """Send one datagram with the given fields; True when it went out.

        RELOADING=1 carries MONOTONIC_USEC, which systemd's Type=notify-reload requires to match
        the reload to the request.
        """
        lines: list[str] = []
        if reloading:
            lines.append("RELOADING=1")
            lines.append(f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        if stopping:
            lines.append("STOPPING=1")
        if ready:
            lines.append("READY=1")
        if status is not None:
            lines.append(f"STATUS={_clean(status)}")
        if watchdog:
            lines.append("WATCHDOG=1")
        return self.send("\n".join(lines))

    def send(self, message: str) -> bool:
        if self._sock is None or self.address is None or not message:
            return False
        try:
            self._sock.sendto(message.encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
