"""What `posd devices` tells a technician to do about what it found: the config lines for the
reader and scanner, the udev line pinning each (98-posd-local.rules), and every permission
problem with the command that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.qr_scanner import GENERIC_CHIP_VENDORS
from drivers.usb_devices import LIBUSB_MISSING, UsbDevice
from posd.cli.device_access import (
    Accounts,
    Problem,
    membership_problems,
    node_access,
    posd_node_problem,
)
from posd.cli.device_survey import DevicesReport, Host, PortReport, real
from posd.cli.udev_local import LOCAL_RULES, RELOAD, hid_scanner_line, serial_line, usable_serial

__all__ = ["Advice", "UdevLine", "advise"]


@dataclass(frozen=True, slots=True)
class UdevLine:
    """The line pinning one device, or (line None) why there is none and how to get it."""

    device: str
    line: str | None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Advice:
    config: tuple[str, ...] = ()
    """TOML lines for the config, section headers included."""
    notes: tuple[str, ...] = ()
    udev: tuple[UdevLine, ...] = ()
    problems: tuple[Problem, ...] = ()


def advise(report: DevicesReport, host: Host) -> Advice:
    accounts = Accounts.read(host.etc)
    config: list[str] = []
    notes: list[str] = []
    udev: list[UdevLine] = []
    problems: list[Problem] = []
    reader = _reader_advice(report, host, config, notes, udev)
    scanner = _scanner_advice(report, host, config, notes, udev)
    uid = host.uid()
    for port in report.ports:
        if port.probe is not None and port.probe.status == "no_permission":
            problems.append(_your_port_problem(accounts, port.device, uid))
    nodes = []
    if reader is not None:
        nodes.append((reader.device, "card reader's port", _reader_name(reader)))
    if scanner is not None:
        nodes.append(
            (str(host.dev / scanner.node), "QR scanner's USB device", _scanner_name(scanner))
        )
    for path, what, name in nodes:
        node = node_access(path)
        problem = (
            None if node is None else posd_node_problem(accounts, node, what, _pin_fix(udev, name))
        )
        if problem is not None:
            problems.append(problem)
    if not report.usb.libusb:
        problems.append(Problem(LIBUSB_MISSING.split(";")[0], "apt-get install libusb-1.0-0"))
    problems += membership_problems(accounts, uid, host.groups())
    return Advice(tuple(config), tuple(notes), tuple(udev), tuple(problems))


def _your_port_problem(accounts: Accounts, device: str, uid: int) -> Problem:
    node = node_access(device)
    you = accounts.user_name(uid)
    if node is None:
        return Problem(f"you ({you}) may not open {device}", "sudo posd devices")
    group = accounts.group_name(node.gid)
    return Problem(
        f"you ({you}) may not open {device} ({node.describe(accounts)})",
        f"sudo posd devices; or, to PING without sudo, sudo usermod -aG {group} {you} and log "
        "in again",
    )


def _pin_fix(udev: list[UdevLine], name: str) -> str:
    if any(u.device == name and u.line is not None for u in udev):
        return f"add the udev line for it above to {LOCAL_RULES}, then {RELOAD}"
    return f"install systemd/99-posd.rules (systemd/install.sh), then {RELOAD}"


def _same_ids(report: DevicesReport, vendor: int, product: int, serial: str | None) -> int:
    """How many attached USB devices have these ids and this serial number."""
    return sum(
        1
        for d in report.usb.devices
        if (d.vendor_id, d.product_id, d.serial_number) == (vendor, product, serial)
    )


def _reader_name(port: PortReport) -> str:
    return f"card reader on {port.device}"


def _reader_advice(
    report: DevicesReport,
    host: Host,
    config: list[str],
    notes: list[str],
    udev: list[UdevLine],
) -> PortReport | None:
    readers = report.readers()
    if not readers:
        return None
    port = readers[0]
    stable = str(host.dev / "posd-reader")
    if len(readers) > 1:
        also = ", ".join(p.device for p in readers[1:])
        notes.append(f"readers also answer on {also}; the lines are for {port.device}")
    if stable in port.links:
        config += ["[card_reader]", 'port = "auto"']
        notes.append(f"udev names the reader {stable}, which auto takes")
        return port
    config += [
        "[card_reader]",
        f'port = "{port.facts.by_id[0] if port.facts.by_id else port.device}"',
    ]
    usb = port.entry.port
    if usb.vid is None or usb.pid is None:
        return port
    if not port.facts.by_id:
        notes.append(
            f"{port.device} has no /dev/serial/by-id name (is udev running?); its name may "
            'change when it is replugged: pin it with the udev line, then port = "auto"'
        )
    serial = usb.serial_number
    # The port's own device is among the attached ones; any other with its ids and serial
    # would be claimed by a serial-number line too.
    others = max(0, _same_ids(report, usb.vid, usb.pid, serial) - 1)
    if usable_serial(serial, others):
        line = serial_line("reader", usb.vid, usb.pid, serial=serial)
        udev.append(UdevLine(_reader_name(port), line, f"by its serial number {serial}"))
    elif port.facts.id_path is not None:
        line = serial_line("reader", usb.vid, usb.pid, id_path=port.facts.id_path)
        udev.append(
            UdevLine(
                _reader_name(port),
                line,
                "by the USB port it is plugged into (its chip has no serial number of its own): "
                "the line stops matching if the cable moves to another port",
            )
        )
    else:
        udev.append(
            UdevLine(
                _reader_name(port),
                None,
                "its chip has no serial number of its own, and udev's ID_PATH is not readable "
                f"here: `udevadm info -q property -n {port.device} | grep ID_PATH=` gives it, "
                f"for the ENV{{ID_PATH}} form in {LOCAL_RULES}",
            )
        )
    return port


def _scanner_name(d: UsbDevice) -> str:
    return f"QR scanner {d.ids}"


def _scanner_advice(
    report: DevicesReport,
    host: Host,
    config: list[str],
    notes: list[str],
    udev: list[UdevLine],
) -> UsbDevice | None:
    candidates = [d for d in report.usb.devices if d.scanner_interface is not None]
    known = [d for d in candidates if d.known_scanner is not None]
    unknown = [d for d in candidates if d.known_scanner is None]
    if known:
        pick = known[0]
    elif len(unknown) == 1:
        pick = unknown[0]
        notes.append(
            f"{pick.ids} is not in posd's known-scanner table; it types like a keyboard-mode "
            "scanner, but so does a keyboard: unplug the scanner and run posd devices again, "
            "the device that goes is the scanner"
        )
    else:
        if unknown:
            ids = ", ".join(d.ids for d in unknown)
            notes.append(
                f"{ids} each type like a keyboard-mode scanner (or are keyboards): unplug the "
                "scanner and run posd devices again, the device that goes is the scanner"
            )
        _serial_scanner_advice(host, config)
        return None
    if config:
        config.append("")
    config += [
        "[qr_scanner]",
        'kind = "usb-hid"',
        f'usb_vendor_id = "0x{pick.vendor_id:04x}"',
        f'usb_product_id = "0x{pick.product_id:04x}"',
    ]
    if pick.node in report.usb_links:
        return pick
    serial = None
    note = None
    if pick.vendor_id in GENERIC_CHIP_VENDORS:
        others = max(0, _same_ids(report, pick.vendor_id, pick.product_id, pick.serial_number) - 1)
        if usable_serial(pick.serial_number, others):
            serial = pick.serial_number
        else:
            note = (
                f"its ids are {GENERIC_CHIP_VENDORS[pick.vendor_id]}'s, a chip maker's, and it "
                "has no serial number of its own: the line also claims any other device with "
                "these ids (check that no keyboard or mouse has them: lsusb)"
            )
    udev.append(
        UdevLine(
            _scanner_name(pick), hid_scanner_line(pick.vendor_id, pick.product_id, serial), note
        )
    )
    return pick


def _serial_scanner_advice(host: Host, config: list[str]) -> None:
    """A serial scanner udev has named: the config lines for it."""
    link = host.dev / "posd-scanner"
    if not link.is_symlink() or "/bus/usb/" in real(link):
        return
    if config:
        config.append("")
    config += ["[qr_scanner]", 'kind = "serial"', f'port = "{link}"']
