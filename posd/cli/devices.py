"""`posd devices`: the field technician's first look at what is plugged in.

Lists the serial ports and USB devices, marks what looks like a card reader or a QR
scanner, PINGs each serial candidate with SRL/1 (all at once, each port opened
exclusively, so a port posd holds is reported busy and never written to), and, when a
config is at hand, says whether the reader and scanner it names are there.

Exit codes (sysexits): 0 it ran, 69 a device the config needs is missing, 66 the config
named cannot be read, 78 the config is not valid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from serial.tools import list_ports

from drivers.card_reader import ProbeResult, probe_port
from drivers.serial_ports import SerialPort, list_serial_ports
from drivers.usb_devices import (
    LIBUSB_MISSING,
    UsbDevice,
    UsbListing,
    libusb_backend,
    list_usb,
)
from posd.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    ConfigFileError,
    config_path,
    load_config,
    named_config,
)

__all__ = [
    "DeviceCheck",
    "DevicesReport",
    "Host",
    "PortReport",
    "SerialPortEntry",
    "add_arguments",
    "devices",
    "host_serial_ports",
    "posd_links",
    "render_text",
    "report_json",
    "run",
    "survey",
    "usb_serial_port",
]

DEFAULT_TIMEOUT_S = 1.5
DEFAULT_READER_BAUDRATE = 115200
MAX_TIMEOUT_S = 30.0


# -- what is found -----------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class DeviceCheck:
    """Whether a device the config needs is there; `found` None: could not tell."""

    device: str
    setting: str
    found: bool | None
    detail: str


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

    @property
    def missing(self) -> list[DeviceCheck]:
        return [c for c in self.checks if c.found is False]


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
    """Where `posd devices` looks. Tests point it at ptys, a sysfs tree and a pyusb backend."""

    serial_ports: Callable[[], Sequence[SerialPortEntry]] = host_serial_ports
    sysfs: Path = Path("/sys")
    dev: Path = Path("/dev")
    usb_backend: Callable[[], Any] = libusb_backend
    """The pyusb backend to list USB devices with; returning None means no libusb."""


# -- USB -------------------------------------------------------------------------------


# -- serial ----------------------------------------------------------------------------


def _real(path: str | Path) -> str:
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
            links.setdefault(_real(link), []).append(str(link))
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
        real = _real(path)
        at = next((i for i, e in enumerate(entries) if _real(e.port.device) == real), None)
        if at is None:
            entries.append(_extra_entry(real, f"not listed by the kernel; {path}"))
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
    scanner_port = None
    if config is not None and config.qr_scanner.kind == "serial" and config.qr_scanner.port:
        scanner_port = _real(config.qr_scanner.port)

    probes: dict[str, asyncio.Task[ProbeResult]] = {}
    async with asyncio.TaskGroup() as tg:
        usb_task = tg.create_task(asyncio.to_thread(list_usb, host.sysfs, host.usb_backend))
        if ping:
            for entry in entries:
                real = _real(entry.port.device)
                if entry.candidate and real != scanner_port and real not in probes:
                    probes[real] = tg.create_task(probe_port(real, baudrate, timeout_s))

    ports = []
    for entry in entries:
        real = _real(entry.port.device)
        role = "QR scanner (qr_scanner.port); not PINGed" if real == scanner_port else None
        task = probes.get(real)
        ports.append(
            PortReport(entry, tuple(links.get(real, ())), role, task.result() if task else None)
        )
    report = DevicesReport(
        ports=tuple(ports),
        usb=usb_task.result(),
        pinged=ping,
        baudrate=baudrate,
        timeout_s=timeout_s,
        config=str(config.source) if config is not None else None,
        config_note=None,
    )
    if config is None:
        return report
    checks = [
        _reader_check(report, config, host.dev / "posd-reader"),
        *_scanner_checks(report, config),
    ]
    return replace(report, checks=tuple(checks))


# -- checks against the config ---------------------------------------------------------


def _port_probe(report: DevicesReport, path: str) -> ProbeResult | None:
    real = _real(path)
    for port in report.ports:
        if _real(port.entry.port.device) == real:
            return port.probe
    return None


def _reader_found(probe: ProbeResult, path: str) -> str:
    assert probe.info is not None
    info = probe.info
    where = path if _real(path) == path else f"{path} ({_real(path)})"
    return f"{info.model}, firmware {info.firmware}, serial {info.serial} on {where}"


def _named_reader_check(
    report: DevicesReport, setting: str, path: str, baud_hint: str
) -> DeviceCheck:
    if not os.path.exists(path):
        hint = (
            "check the reader's cable and power; is its vid:pid in systemd/99-posd.rules?"
            if Path(path).name == "posd-reader"
            else "check the reader's cable and power, and the path"
        )
        return DeviceCheck("card reader", setting, False, f"{path} is not there: {hint}")
    if not report.pinged:
        return DeviceCheck("card reader", setting, True, f"{path} is there (not PINGed: --no-ping)")
    probe = _port_probe(report, path)
    if probe is None:
        return DeviceCheck("card reader", setting, None, f"{path} is there but was not PINGed")
    if probe.status == "reader":
        return DeviceCheck("card reader", setting, True, _reader_found(probe, path))
    if probe.status in ("busy", "no_permission"):
        return DeviceCheck("card reader", setting, None, f"{path}: {probe.detail}")
    return DeviceCheck("card reader", setting, False, f"{path}: {probe.detail}; {baud_hint}")


def _reader_check(report: DevicesReport, config: Config, stable: Path) -> DeviceCheck:
    port = config.card_reader.port
    baud_hint = (
        f"check the reader's power, and that card_reader.baudrate ({report.baudrate}) "
        "is the reader's"
    )
    if port is not None:
        return _named_reader_check(report, f'card_reader.port = "{port}"', port, baud_hint)
    setting = 'card_reader.port = "auto"'
    if stable.is_symlink():
        # auto takes /dev/posd-reader alone when it exists, as the daemon does.
        return _named_reader_check(report, f"{setting}, so {stable}", str(stable), baud_hint)
    probed = [p.probe for p in report.ports if p.probe is not None]
    if not report.pinged:
        return DeviceCheck("card reader", setting, None, "not PINGed (--no-ping)")
    readers = [p for p in probed if p.status == "reader"]
    if readers:
        detail = _reader_found(readers[0], readers[0].path)
        if len(readers) > 1:
            others = ", ".join(p.path for p in readers[1:])
            detail += f"; readers also answer on {others}: posd takes the first to answer"
        return DeviceCheck("card reader", setting, True, detail)
    busy = [p.path for p in probed if p.status in ("busy", "no_permission")]
    if busy:
        return DeviceCheck(
            "card reader",
            setting,
            None,
            f"no reader answered; not PINGed: {', '.join(busy)} (posd running? permissions?)",
        )
    if not probed:
        return DeviceCheck(
            "card reader",
            setting,
            False,
            "no serial port to look on: plug the reader in (a USB reader shows up as "
            "/dev/ttyACM* or /dev/ttyUSB*)",
        )
    paths = ", ".join(p.path for p in probed)
    return DeviceCheck(
        "card reader", setting, False, f"no SRL/1 reader answered on {paths}; {baud_hint}"
    )


def _hex_or_auto(value: int | None) -> str:
    return "auto" if value is None else f"0x{value:04x}"


def _scanner_checks(report: DevicesReport, config: Config) -> list[DeviceCheck]:
    scanner = config.qr_scanner
    if scanner.kind == "none":
        return []
    if scanner.kind == "serial":
        setting = f'qr_scanner.port = "{scanner.port}"'
        if scanner.port is not None and os.path.exists(scanner.port):
            return [DeviceCheck("QR scanner", setting, True, f"{scanner.port} is there")]
        return [
            DeviceCheck(
                "QR scanner",
                setting,
                False,
                f"{scanner.port} is not there: check the scanner's cable and the path",
            )
        ]
    setting = (
        f"qr_scanner.usb_vendor_id = {_hex_or_auto(scanner.usb_vendor_id)}, "
        f"usb_product_id = {_hex_or_auto(scanner.usb_product_id)}"
    )
    checks = []
    if not report.usb.libusb:
        checks.append(DeviceCheck("libusb", 'qr_scanner.kind = "usb-hid"', False, LIBUSB_MISSING))
    if report.usb.source == "none":
        return [*checks, DeviceCheck("QR scanner", setting, None, "cannot list USB devices")]

    def wanted(d: UsbDevice) -> bool:
        if scanner.usb_vendor_id is None:
            return d.known_scanner is not None
        return d.vendor_id == scanner.usb_vendor_id and scanner.usb_product_id in (
            None,
            d.product_id,
        )

    matches = [d for d in report.usb.devices if wanted(d)]
    usable = [d for d in matches if d.boot_keyboard]
    if usable:
        d = usable[0]
        name = " ".join(s for s in (d.manufacturer, d.product) if s) or "no name"
        checks.append(
            DeviceCheck(
                "QR scanner", setting, True, f"{d.ids} {name} on bus {d.bus} address {d.address}"
            )
        )
    elif matches:
        checks.append(
            DeviceCheck(
                "QR scanner",
                setting,
                False,
                f"{matches[0].ids} is there but has no HID boot-keyboard interface: set the "
                "scanner to USB HID keyboard mode (its manual has a code to scan for it)",
            )
        )
    elif scanner.usb_vendor_id is None:
        checks.append(
            DeviceCheck(
                "QR scanner",
                setting,
                False,
                "no USB device from the known-scanner table: plug the scanner in; if it is "
                "there but not in the table, set usb_vendor_id and usb_product_id to its "
                "ids from the list above",
            )
        )
    else:
        checks.append(
            DeviceCheck(
                "QR scanner",
                setting,
                False,
                "no USB device with these ids: plug the scanner in, or correct the ids "
                "from the list above",
            )
        )
    return checks


# -- output ------------------------------------------------------------------------------


def _same_device(port: SerialPort, d: UsbDevice) -> bool:
    if (port.vid, port.pid) != (d.vendor_id, d.product_id):
        return False
    return None in (port.serial_number, d.serial_number) or port.serial_number == d.serial_number


def usb_serial_port(report: DevicesReport, d: UsbDevice) -> PortReport | None:
    """The serial port a USB device provides (a CDC reader, a USB serial adapter), when the
    ids (and serial number, where both have one) single it out."""
    matches = [p for p in report.ports if _same_device(p.entry.port, d)]
    return matches[0] if len(matches) == 1 else None


def _usb_json(report: DevicesReport, d: UsbDevice) -> dict[str, Any]:
    port = usb_serial_port(report, d)
    return {
        "bus": d.bus,
        "address": d.address,
        "vendor_id": f"0x{d.vendor_id:04x}",
        "product_id": f"0x{d.product_id:04x}",
        "manufacturer": d.manufacturer,
        "product": d.product,
        "serial_number": d.serial_number,
        "known_scanner": d.known_scanner,
        "boot_keyboard": d.boot_keyboard,
        "serial_port": port.entry.port.device if port is not None else None,
    }


def _port_json(p: PortReport) -> dict[str, Any]:
    port = p.entry.port
    probe = p.probe
    return {
        "device": port.device,
        "description": port.description,
        "usb": None
        if port.vid is None
        else {
            "vendor_id": f"0x{port.vid:04x}",
            "product_id": f"0x{port.pid or 0:04x}",
            "serial_number": port.serial_number,
            "manufacturer": p.entry.manufacturer,
        },
        "links": list(p.links),
        "reader_candidate": p.entry.candidate,
        "role": p.role,
        "probe": None
        if probe is None
        else {
            "status": probe.status,
            "detail": probe.detail,
            "reader": None
            if probe.info is None
            else {
                "model": probe.info.model,
                "firmware": probe.info.firmware,
                "serial": probe.info.serial,
            },
        },
    }


def report_json(report: DevicesReport) -> dict[str, Any]:
    """The report as JSON-ready data: what `--json` prints."""
    return {
        "serial_ports": [_port_json(p) for p in report.ports],
        "ping": {
            "done": report.pinged,
            "baudrate": report.baudrate,
            "timeout_s": report.timeout_s,
        },
        "usb": {
            "source": report.usb.source,
            "libusb": report.usb.libusb,
            "note": report.usb.note,
            "devices": [_usb_json(report, d) for d in report.usb.devices],
        },
        "config": None
        if report.config is None
        else {
            "path": report.config,
            "checks": [
                {"device": c.device, "setting": c.setting, "found": c.found, "detail": c.detail}
                for c in report.checks
            ],
        },
        "config_note": report.config_note,
        "missing": [c.device for c in report.missing],
    }


def _port_lines(p: PortReport) -> Iterable[str]:
    port = p.entry.port
    usb_bits = []
    if port.vid is not None:
        usb_bits.append(f"{port.vid:04x}:{port.pid or 0:04x}")
        if port.serial_number:
            usb_bits.append(f"serial {port.serial_number}")
        if p.entry.manufacturer:
            usb_bits.append(p.entry.manufacturer)
    usb_text = f" [{', '.join(usb_bits)}]" if usb_bits else ""
    yield f"  {port.device}  {port.description}{usb_text}"
    for link in p.links:
        yield f"      <- {link}"
    probe = p.probe
    if p.role is not None:
        yield f"      {p.role}"
    elif probe is None:
        yield "      not PINGed" + ("" if p.entry.candidate else " (not a reader's kind of port)")
    elif probe.info is not None:
        info = probe.info
        yield (f"      CARD READER: {info.model}, firmware {info.firmware}, serial {info.serial}")
    elif probe.status == "busy":
        yield f"      busy: {probe.detail}"
    else:
        yield f"      PING: {probe.detail}"


def _usb_lines(report: DevicesReport, d: UsbDevice) -> Iterable[str]:
    name = " ".join(s for s in (d.manufacturer, d.product) if s) or "(no name readable)"
    serial = f" (serial {d.serial_number})" if d.serial_number else ""
    yield f"  {d.bus:03d}:{d.address:03d}  {d.ids}  {name}{serial}"
    if d.known_scanner is not None:
        mode = (
            "in HID keyboard mode"
            if d.boot_keyboard
            else "not in HID keyboard mode: posd cannot read it"
        )
        yield f"      QR SCANNER: {d.known_scanner} (known-scanner table), {mode}"
    elif d.boot_keyboard:
        yield "      HID boot keyboard: a keyboard, or a scanner not in posd's table"
    port = usb_serial_port(report, d)
    if port is not None:
        reader = " (the CARD READER above)" if port.probe and port.probe.info else ""
        yield f"      serial port {port.entry.port.device}{reader}"


def render_text(report: DevicesReport) -> str:
    """The report as a technician reads it."""
    out = []
    if report.pinged:
        out.append(
            f"Serial ports (PING: SRL/1 at {report.baudrate} baud, "
            f"{report.timeout_s:g} s each, all at once)"
        )
    else:
        out.append("Serial ports (not PINGed: --no-ping)")
    if report.ports:
        for p in report.ports:
            out.extend(_port_lines(p))
    else:
        out.append("  none")
    out.append("")
    source = {"libusb": "through libusb", "sysfs": "from sysfs", "none": "not listed"}
    out.append(f"USB devices ({source[report.usb.source]})")
    if report.usb.note:
        out.append(f"  note: {report.usb.note}")
    if report.usb.devices:
        for d in report.usb.devices:
            out.extend(_usb_lines(report, d))
    elif report.usb.source != "none":
        out.append("  none")
    out.append("")
    if report.config is None:
        out.append(f"Config: {report.config_note or 'none'}")
    else:
        out.append(f"Config {report.config}")
        marks = {True: "ok     ", False: "MISSING", None: "?      "}
        for c in report.checks:
            out.append(f"  {marks[c.found]}  {c.device}: {c.setting}")
            out.append(f"           {c.detail}")
    return "\n".join(out)


# -- the command -------------------------------------------------------------------------


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"{text} is out of range, expected more than 0 and at most {MAX_TIMEOUT_S:g} s"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        help=f"config whose reader and scanner to look for (default: ${CONFIG_ENV} or "
        f"{DEFAULT_CONFIG}, when it exists)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw data as JSON")
    parser.add_argument(
        "--no-ping", action="store_true", help="list only; do not PING serial ports"
    )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for each port's PONG (default {DEFAULT_TIMEOUT_S:g})",
    )


def _load(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Config | None, str, int]:
    """The config (or None), a note on it, and the exit code its problems earn (0: none)."""
    path = config_path(args.config, env)
    if named_config(args.config, env) is None and not os.path.exists(path):
        return None, f"no config at {path}; only listing", os.EX_OK
    try:
        return load_config(path), "", os.EX_OK
    except ConfigFileError as exc:
        return None, f"cannot read it: {exc}", os.EX_NOINPUT
    except ConfigError as exc:
        count = len(exc.problems)
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        note = (
            f"{path} has {count} problem{'s' if count != 1 else ''} (listed above; "
            f"`posd config check {path}`): configured devices not checked"
        )
        return None, note, os.EX_CONFIG


async def devices(
    args: argparse.Namespace,
    *,
    host: Host | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """`posd devices` on a running loop: prints the report, returns the exit code."""
    config, note, config_exit = _load(args, os.environ if env is None else env)
    report = await survey(host or Host(), config, ping=not args.no_ping, timeout_s=args.timeout)
    if note:
        report = replace(report, config_note=note)
    if args.json:
        print(json.dumps(report_json(report), indent=2, ensure_ascii=False))
    else:
        print(render_text(report))
    if config_exit != os.EX_OK:
        print(f"posd devices: {note}", file=sys.stderr)
        return config_exit
    if report.missing:
        for check in report.missing:
            print(f"posd devices: {check.device} missing: {check.detail}", file=sys.stderr)
        return os.EX_UNAVAILABLE
    return os.EX_OK


def run(args: argparse.Namespace) -> int:
    """`posd devices`: 0 when it ran, 69 when a configured device is missing, 66/78 when
    the config cannot be used (the devices are listed all the same)."""
    return asyncio.run(devices(args))
