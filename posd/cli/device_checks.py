"""Whether the reader and scanner a config names are among what `device_survey` found: the
"Config" lines of `posd devices`, and `posd check`'s reader and scanner lines when no posd is
running to ask.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.card_reader import ProbeResult
from drivers.usb_devices import LIBUSB_MISSING, UsbDevice
from posd.config import Config

if TYPE_CHECKING:
    from posd.cli.device_survey import DevicesReport

__all__ = ["NO_SCANNER_INTERFACE", "DeviceCheck", "config_checks", "hex_or_auto"]

NO_SCANNER_INTERFACE = (
    "has no interface posd reads a scanner through (a HID boot keyboard, or a keyboard "
    "interface whose only endpoint is an interrupt IN): set the scanner to USB HID keyboard "
    "mode (its manual has a code to scan for it)"
)


@dataclass(frozen=True, slots=True)
class DeviceCheck:
    """Whether a device the config needs is there; `found` None: could not tell."""

    device: str
    setting: str
    found: bool | None
    detail: str


def _real(path: str | Path) -> str:
    return os.path.realpath(path)


def config_checks(report: DevicesReport, config: Config, dev: Path) -> list[DeviceCheck]:
    return [_reader_check(report, config, dev / "posd-reader"), *_scanner_checks(report, config)]


def _port_probe(report: DevicesReport, path: str) -> ProbeResult | None:
    resolved = _real(path)
    for port in report.ports:
        if _real(port.device) == resolved:
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


def hex_or_auto(value: int | None) -> str:
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
        f"qr_scanner.usb_vendor_id = {hex_or_auto(scanner.usb_vendor_id)}, "
        f"usb_product_id = {hex_or_auto(scanner.usb_product_id)}"
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
    usable = [d for d in matches if d.scanner_interface is not None]
    if usable:
        d = usable[0]
        name = " ".join(s for s in (d.manufacturer, d.product) if s) or "no name"
        checks.append(
            DeviceCheck(
                "QR scanner", setting, True, f"{d.ids} {name} on bus {d.bus} address {d.address}"
            )
        )
    elif matches:
        detail = f"{matches[0].ids} is there but {NO_SCANNER_INTERFACE}"
        checks.append(DeviceCheck("QR scanner", setting, False, detail))
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
