"""Serial port discovery: the candidates `card_reader.port = "auto"` probes, and the
listing `posd devices` prints.

pyserial's list_ports does the sysfs work; this module only orders and
labels what it finds. USB-CDC readers (/dev/ttyACM*) come first, then USB
serial adapters (/dev/ttyUSB*), then built-in UARTs (/dev/ttyS*), since that
is how likely each is to have a card reader behind it.
"""

from __future__ import annotations

import os
import termios
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import serial
from serial.tools import list_ports

__all__ = [
    "OPEN_ERRORS",
    "STABLE_READER_PATH",
    "SerialPort",
    "list_serial_ports",
    "open_errno",
    "open_error_detail",
    "reader_candidates",
    "without_ports",
]

STABLE_READER_PATH = "/dev/posd-reader"
"""The name systemd/99-posd.rules gives a known reader; `auto` uses it when it exists."""

_PREFIXES = ("/dev/ttyACM", "/dev/ttyUSB", "/dev/ttyS")

OPEN_ERRORS = (serial.SerialException, OSError, termios.error)
"""What opening a port with pyserial raises: OSError, SerialException (with an errno or
none), or, for a device unplugged while it is being set up, termios.error itself."""


def open_errno(exc: BaseException) -> int | None:
    """The errno behind one of OPEN_ERRORS; pyserial's "Could not configure port" keeps it
    only in the termios.error it was raised from."""
    for cause in (exc, exc.__context__):
        if isinstance(cause, OSError) and cause.errno is not None:
            return cause.errno
        if isinstance(cause, termios.error) and cause.args and isinstance(cause.args[0], int):
            return cause.args[0]
    return None


def open_error_detail(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, termios.error) and len(exc.args) > 1:
        return str(exc.args[1])
    return str(exc)


@dataclass(frozen=True, slots=True)
class SerialPort:
    device: str
    description: str
    vid: int | None
    pid: int | None
    serial_number: str | None

    @property
    def is_usb(self) -> bool:
        return self.vid is not None

    @property
    def reader_candidate(self) -> bool:
        """Whether `auto` would PING it looking for a card reader."""
        return self.device.startswith(_PREFIXES)

    def describe(self) -> str:
        usb = f" [{self.vid:04x}:{self.pid or 0:04x}]" if self.vid is not None else ""
        return f"{self.device}: {self.description}{usb}"


def _rank(device: str) -> tuple[int, int, str]:
    for rank, prefix in enumerate(_PREFIXES):
        if device.startswith(prefix):
            suffix = device[len(prefix) :]
            return rank, int(suffix) if suffix.isdigit() else 0, device
    return len(_PREFIXES), 0, device


def list_serial_ports() -> list[SerialPort]:
    """Every serial port the kernel knows, readers' likely ports first."""
    ports = [
        SerialPort(
            device=info.device,
            description=info.description if info.description != "n/a" else "serial port",
            vid=info.vid,
            pid=info.pid,
            serial_number=info.serial_number,
        )
        for info in list_ports.comports()
    ]
    return sorted(ports, key=lambda p: _rank(p.device))


def reader_candidates(
    stable_path: str = STABLE_READER_PATH,
    ports: Callable[[], Iterable[SerialPort]] = list_serial_ports,
) -> list[str]:
    """The ports `auto` probes with PING, in order: /dev/posd-reader alone if it exists."""
    if os.path.exists(stable_path):
        return [stable_path]
    candidates = [p for p in ports() if p.reader_candidate]
    return [p.device for p in sorted(candidates, key=lambda p: _rank(p.device))]


def without_ports(paths: Iterable[str], exclude: Collection[str]) -> list[str]:
    """`paths` less those that are, or resolve to, a port in `exclude`: a udev symlink
    (/dev/posd-scanner) and the tty it points at are one port."""
    excluded = {os.path.realpath(p) for p in exclude}
    return [p for p in paths if os.path.realpath(p) not in excluded]
