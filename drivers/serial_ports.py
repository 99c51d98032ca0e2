"""Serial port discovery: the candidates `card_reader.port = "auto"` probes, and the
listing `posd devices` prints.

pyserial's list_ports does the sysfs work of listing; this module orders and labels what it
finds. USB-CDC readers (/dev/ttyACM*) come first, then USB serial adapters (/dev/ttyUSB*), then
built-in UARTs (/dev/ttyS*), since that is how likely each is to have a card reader behind it.

`port_facts` adds what pyserial does not tell and a technician needs to pin a port: its kernel
driver (sysfs), its /dev/serial/by-id names, and udev's ID_PATH (from udev's database, where
udev keeps the properties it computed: `udevadm info` prints the same).
"""

from __future__ import annotations

import os
import termios
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import serial
from serial.tools import list_ports

__all__ = [
    "DEV",
    "OPEN_ERRORS",
    "STABLE_READER_PATH",
    "SYSFS",
    "UDEV_DB",
    "PortFacts",
    "SerialPort",
    "by_id_links",
    "kernel_driver",
    "list_serial_ports",
    "open_errno",
    "open_error_detail",
    "port_facts",
    "reader_candidates",
    "udev_properties",
    "without_ports",
]

STABLE_READER_PATH = "/dev/posd-reader"
"""The name systemd/99-posd.rules gives a known reader; `auto` uses it when it exists."""

SYSFS = Path("/sys")
DEV = Path("/dev")
UDEV_DB = Path("/run/udev/data")

_PREFIXES = ("/dev/ttyACM", "/dev/ttyUSB", "/dev/ttyS")
# Linux >= 6.5 puts a UART's tty under the serial core's own port and controller devices,
# whose drivers ("port", "ctrl") say nothing: the driver that counts is the controller's.
_SERIAL_CORE_BUS = "serial-base"

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


@dataclass(frozen=True, slots=True)
class PortFacts:
    """What `posd devices` shows of a port beside pyserial's listing."""

    driver: str | None
    """The kernel driver behind the tty: cdc_acm, ftdi_sio, cp210x, ch341, pl2303, serial8250."""
    by_id: tuple[str, ...]
    """Its /dev/serial/by-id names: stable across replugs and reboots (they hold the serial)."""
    id_path: str | None
    """udev's ID_PATH (the USB port it is plugged into); None where udev's database is not
    readable or says none."""


def _tty_dir(device: str, sysfs: Path) -> Path | None:
    for name in (os.path.basename(device), os.path.basename(os.path.realpath(device))):
        candidate = sysfs / "class" / "tty" / name
        if candidate.is_dir():
            return candidate
    return None


def kernel_driver(device: str, sysfs: Path = SYSFS) -> str | None:
    """The name of the kernel driver of the tty `device` (e.g. /dev/ttyUSB0), from sysfs."""
    tty_dir = _tty_dir(device, sysfs)
    if tty_dir is None:
        return None
    node = tty_dir / "device"
    if not node.exists():
        return None  # a virtual tty (console, pty): no device behind it
    node = node.resolve()
    for _ in range(4):
        driver = node / "driver"
        if not driver.is_symlink():
            return None
        target = driver.resolve()
        if target.parent.parent.name != _SERIAL_CORE_BUS:
            return target.name
        node = node.parent
    return None


def by_id_links(dev: Path = DEV) -> dict[str, list[str]]:
    """The /dev/serial/by-id symlinks udev made, by the real path of the port they name."""
    links: dict[str, list[str]] = {}
    try:
        names = sorted((dev / "serial" / "by-id").iterdir())
    except OSError:
        return links
    for link in names:
        if link.is_symlink():
            links.setdefault(os.path.realpath(link), []).append(str(link))
    return links


def udev_properties(device: str, sysfs: Path = SYSFS, udev_db: Path = UDEV_DB) -> dict[str, str]:
    """The properties udev stored for the tty `device` (its `E:` lines), {} when there are none
    to read."""
    tty_dir = _tty_dir(device, sysfs)
    if tty_dir is None:
        return {}
    try:
        numbers = (tty_dir / "dev").read_text(encoding="ascii").strip()
        text = (udev_db / f"c{numbers}").read_text(encoding="utf-8", errors="replace")
    except (OSError, UnicodeDecodeError):
        return {}
    properties = {}
    for line in text.splitlines():
        if line.startswith("E:") and "=" in line:
            key, _, value = line[2:].partition("=")
            properties[key] = value
    return properties


def port_facts(
    device: str,
    *,
    sysfs: Path = SYSFS,
    dev: Path = DEV,
    udev_db: Path = UDEV_DB,
    by_id: dict[str, list[str]] | None = None,
) -> PortFacts:
    """The driver, by-id names and ID_PATH of a port (`by_id`: `by_id_links(dev)`, when the
    caller has it already)."""
    links = by_id_links(dev) if by_id is None else by_id
    return PortFacts(
        driver=kernel_driver(device, sysfs),
        by_id=tuple(links.get(os.path.realpath(device), ())),
        id_path=udev_properties(device, sysfs, udev_db).get("ID_PATH") or None,
    )
