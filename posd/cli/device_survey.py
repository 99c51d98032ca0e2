"""What `posd devices` (and `posd check`, when no posd is running) finds on the box: the serial
ports with their drivers and stable names, each reader candidate PINGed with SRL/1 (all at once,
each port opened exclusively, so a port posd holds is reported busy and never written to), and
the USB devices with their interfaces. Judging it against the config is `device_checks`;
advice is `device_advice`; printing is `device_report`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from serial.tools import list_ports

from drivers.card_reader import ProbeResult, probe_port
from drivers.serial_ports import (
    DEV,
    SYSFS,
    UDEV_DB,
    PortFacts,
    SerialPort,
    by_id_links,
    list_serial_ports,
    port_facts,
)
from drivers.usb_devices import UsbDevice, UsbListing, libusb_backend, list_usb
from posd.cli.device_checks import DeviceCheck, config_checks
from posd.config import Config

__all__ = [
    "DEFAULT_READER_BAUDRATE",
    "DEFAULT_TIMEOUT_S",
    "DevicesReport",
    "Host",
    "PortReport",
    "SerialPortEntry",
    "host_serial_ports",
    "posd_links",
    "real",
    "survey",
    "usb_serial_port",
]

DEFAULT_TIMEOUT_S = 1.5
DEFAULT_READER_BAUDRATE = 115200


@dataclass(frozen=True, slots=True)
class SerialPortEntry:
    """A serial port as listed, and whether it is a place a card reader may be."""

    port: SerialPort
    manufacturer: str | None = None
    candidate: bool = True


@dataclass(frozen=True, slots=True)
class PortReport:
    entry: SerialPortEntry
    links: tuple[str, ...]
    """The /dev/posd-* names pointing at this port."""
    role: str | None
    """What the config makes of the port where it is not a reader candidate."""
    probe: ProbeResult | None
    facts: PortFacts = field(default_factory=lambda: PortFacts(None, (), None))

    @property
    def device(self) -> str:
        return self.entry.port.device


@dataclass(frozen=True, slots=True)
class DevicesReport:
    ports: tuple[PortReport, ...]
    usb: UsbListing
    pinged: bool
    baudrate: int
    timeout_s: float
    config: str | None
    config_note: str | None
    checks: tuple[DeviceCheck, ...] = ()
    usb_links: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The /dev/posd-* names pointing at a USB device node, by the node's path."""

    @property
    def missing(self) -> list[DeviceCheck]:
        return [c for c in self.checks if c.found is False]

    def readers(self) -> list[PortReport]:
        """The ports an SRL/1 reader answered on, in listing order."""
        return [p for p in self.ports if p.probe is not None and p.probe.status == "reader"]


def host_serial_ports() -> list[SerialPortEntry]:
    """The machine's serial ports, readers' likely ports first."""
    # SerialPort has no manufacturer; pyserial's listing does.
    makers = {info.device: info.manufacturer for info in list_ports.comports()}
    return [
        SerialPortEntry(port, makers.get(port.device), port.reader_candidate)
        for port in list_serial_ports()
    ]


@dataclass(frozen=True, slots=True)
class Host:
    """Where `posd devices` looks. Tests point it at ptys, a sysfs tree, a /dev and an /etc of
    their own, and a pyusb backend."""

    serial_ports: Callable[[], Sequence[SerialPortEntry]] = host_serial_ports
    sysfs: Path = SYSFS
    dev: Path = DEV
    usb_backend: Callable[[], Any] = libusb_backend
    """The pyusb backend to list USB devices with; returning None means no libusb."""
    udev_db: Path = UDEV_DB
    etc: Path = Path("/etc")
    """Where passwd and group are: systemd-sysusers writes the posd user there, and
    `usermod -aG` changes them."""
    uid: Callable[[], int] = os.getuid
    groups: Callable[[], list[int]] = os.getgroups
    """The groups of this process: a membership added since login is not among them."""


def real(path: str | Path) -> str:
    return os.path.realpath(path)


def posd_links(dev: Path) -> dict[str, list[str]]:
    """The /dev/posd-* symlinks udev made, by the real path they point at."""
    links: dict[str, list[str]] = {}
    try:
        names = sorted(dev.glob("posd-*"))
    except OSError:
        return links
    for link in names:
        if link.is_symlink():
            links.setdefault(real(link), []).append(str(link))
    return links


def _extra_entry(path: str, description: str) -> SerialPortEntry:
    return SerialPortEntry(SerialPort(path, description, None, None, None), None, True)


def _serial_entries(host: Host, config: Config | None) -> list[SerialPortEntry]:
    """The listed ports, with the ports the daemon would take for its reader made candidates
    (and added where the listing leaves them out: a pty, a UART of an odd name)."""
    entries = list(host.serial_ports())
    wanted = [str(host.dev / "posd-reader")]
    if config is not None and config.card_reader.port is not None:
        wanted.append(config.card_reader.port)
    for path in wanted:
        if not os.path.exists(path):
            continue
        resolved = real(path)
        at = next((i for i, e in enumerate(entries) if real(e.port.device) == resolved), None)
        if at is None:
            entries.append(_extra_entry(resolved, f"not listed by the kernel; {path}"))
        else:
            entries[at] = replace(entries[at], candidate=True)
    return entries


async def survey(
    host: Host,
    config: Config | None,
    *,
    ping: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> DevicesReport:
    """List, probe and check. USB is listed in a thread while the serial ports are PINGed."""
    baudrate = config.card_reader.baudrate if config is not None else DEFAULT_READER_BAUDRATE
    entries = _serial_entries(host, config)
    links = posd_links(host.dev)
    by_id = by_id_links(host.dev)
    scanner_port = None
    if config is not None and config.qr_scanner.kind == "serial" and config.qr_scanner.port:
        scanner_port = real(config.qr_scanner.port)

    probes: dict[str, asyncio.Task[ProbeResult]] = {}
    async with asyncio.TaskGroup() as tg:
        usb_task = tg.create_task(asyncio.to_thread(list_usb, host.sysfs, host.usb_backend))
        if ping:
            for entry in entries:
                resolved = real(entry.port.device)
                if entry.candidate and resolved != scanner_port and resolved not in probes:
                    probes[resolved] = tg.create_task(probe_port(resolved, baudrate, timeout_s))

    ports = []
    for entry in entries:
        resolved = real(entry.port.device)
        role = "QR scanner (qr_scanner.port); not PINGed" if resolved == scanner_port else None
        task = probes.get(resolved)
        facts = port_facts(
            entry.port.device, sysfs=host.sysfs, dev=host.dev, udev_db=host.udev_db, by_id=by_id
        )
        ports.append(
            PortReport(
                entry,
                tuple(links.get(resolved, ())),
                role,
                task.result() if task else None,
                facts,
            )
        )
    usb = usb_task.result()
    usb_links = {
        d.node: tuple(links.get(real(host.dev / d.node), ()))
        for d in usb.devices
        if real(host.dev / d.node) in links
    }
    report = DevicesReport(
        ports=tuple(ports),
        usb=usb,
        pinged=ping,
        baudrate=baudrate,
        timeout_s=timeout_s,
        config=str(config.source) if config is not None else None,
        config_note=None,
        usb_links=usb_links,
    )
    if config is None:
        return report
    return replace(report, checks=tuple(config_checks(report, config, host.dev)))


def _same_device(port: SerialPort, d: UsbDevice) -> bool:
    if (port.vid, port.pid) != (d.vendor_id, d.product_id):
        return False
    return None in (port.serial_number, d.serial_number) or port.serial_number == d.serial_number


def usb_serial_port(report: DevicesReport, d: UsbDevice) -> PortReport | None:
    """The serial port a USB device provides (a CDC reader, a USB serial adapter), when the
    ids (and serial number, where both have one) single it out."""
    matches = [p for p in report.ports if _same_device(p.entry.port, d)]
    return matches[0] if len(matches) == 1 else None
