"""`posd devices` printed: as a technician reads it (`render_text`) and as `--json` data
(`report_json`), both from one `DevicesReport` and its `Advice`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from drivers.usb_devices import UsbDevice, UsbInterface
from posd.cli.device_advice import Advice
from posd.cli.device_survey import DevicesReport, PortReport, usb_serial_port
from posd.cli.udev_local import LOCAL_RULES, RELOAD

__all__ = ["render_text", "report_json"]

_SCANNER_INTERFACE = {
    "boot-keyboard": "in HID keyboard mode",
    "keyboard": "in HID keyboard mode (a keyboard interface without boot protocol)",
}


def _endpoint_json(endpoint: tuple[int, int]) -> dict[str, Any]:
    address, attributes = endpoint
    kinds = ("control", "isochronous", "bulk", "interrupt")
    return {
        "address": f"0x{address:02x}",
        "direction": "in" if address & 0x80 else "out",
        "type": kinds[attributes & 0x03],
    }


def _interface_json(intf: UsbInterface) -> dict[str, Any]:
    return {
        "number": intf.number,
        "class": f"0x{intf.interface_class:02x}",
        "subclass": f"0x{intf.subclass:02x}",
        "protocol": f"0x{intf.protocol:02x}",
        "endpoints": [_endpoint_json(ep) for ep in intf.endpoints],
        "driver": intf.driver,
        "scanner": intf.scanner,
    }


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
        "scanner_interface": d.scanner_interface,
        "node": f"/dev/{d.node}",
        "links": list(report.usb_links.get(d.node, ())),
        "interfaces": [_interface_json(i) for i in d.interfaces],
        "serial_port": port.entry.port.device if port is not None else None,
    }


def _port_json(p: PortReport) -> dict[str, Any]:
    port = p.entry.port
    probe = p.probe
    return {
        "device": port.device,
        "description": port.description,
        "driver": p.facts.driver,
        "by_id": list(p.facts.by_id),
        "id_path": p.facts.id_path,
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


def report_json(report: DevicesReport, advice: Advice) -> dict[str, Any]:
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
        "suggested_config": {"lines": list(advice.config), "notes": list(advice.notes)},
        "udev": {
            "file": LOCAL_RULES,
            "lines": [{"device": u.device, "line": u.line, "note": u.note} for u in advice.udev],
            "then": RELOAD,
        },
        "problems": [{"what": p.what, "fix": p.fix} for p in advice.problems],
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
    if p.facts.driver is not None:
        yield f"      driver {p.facts.driver}"
    for link in (*p.facts.by_id, *p.links):
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
    drivers = sorted({i.driver for i in d.interfaces if i.driver})
    if drivers:
        yield f"      driver {', '.join(drivers)}"
    for link in report.usb_links.get(d.node, ()):
        yield f"      <- {link}"
    kind = d.scanner_interface
    if d.known_scanner is not None:
        mode = _SCANNER_INTERFACE[kind] if kind else "not in HID keyboard mode: posd cannot read it"
        yield f"      QR SCANNER: {d.known_scanner} (known-scanner table), {mode}"
    elif kind == "boot-keyboard":
        yield "      HID boot keyboard: a keyboard, or a scanner not in posd's table"
    elif kind == "keyboard":
        yield (
            "      HID keyboard interface, one interrupt IN endpoint, no boot protocol: likely a "
            "QR scanner not in posd's table"
        )
    port = usb_serial_port(report, d)
    if port is not None:
        reader = " (the CARD READER above)" if port.probe and port.probe.info else ""
        yield f"      serial port {port.entry.port.device}{reader}"


def _advice_lines(advice: Advice) -> Iterable[str]:
    if advice.config:
        yield ""
        yield "Suggested config (in the config file; `posd config check` after)"
        yield from (f"  {line}" if line else "" for line in advice.config)
        yield from (f"  note: {note}" for note in advice.notes)
    elif advice.notes:
        yield ""
        yield from (f"note: {note}" for note in advice.notes)
    if advice.udev:
        yield ""
        yield f"udev: pin each device with its line in {LOCAL_RULES}"
        for u in advice.udev:
            yield f"  {u.device}" + (f": {u.note}" if u.note else "")
            if u.line is not None:
                yield f"    {u.line}"
        yield f"  then: {RELOAD}"
    if advice.problems:
        yield ""
        yield "Problems"
        for problem in advice.problems:
            yield f"  {problem.what}"
            yield f"    fix: {problem.fix}"


def render_text(report: DevicesReport, advice: Advice | None = None) -> str:
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
    if advice is not None:
        out.extend(_advice_lines(advice))
    return "\n".join(out)
