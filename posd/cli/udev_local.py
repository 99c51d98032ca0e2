"""The lines a technician adds to /etc/udev/rules.d/98-posd-local.rules: their exact forms
(`LOCAL_LINE`, documented in systemd/98-posd-local.rules) and the lines themselves, as
`posd devices` prints them. The rules test (tests/systemd/udev_lint.py) checks the files and
the printed lines against this one definition.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "LOCAL_LINE",
    "LOCAL_RULES",
    "RELOAD",
    "hid_scanner_line",
    "serial_line",
    "usable_serial",
]

LOCAL_RULES = "/etc/udev/rules.d/98-posd-local.rules"
RELOAD = (
    "udevadm control --reload && udevadm trigger --action=add --subsystem-match=tty "
    "--subsystem-match=usb --subsystem-match=hidraw"
)
"""What makes udev apply a new local line to the devices already plugged in."""

_ID = r'"[0-9a-f]{4}"'
_SERIAL_CHARS = r"[A-Za-z0-9._:-]"
_SERIAL = rf'"{_SERIAL_CHARS}{{1,64}}"'
_PATH = rf'"{_SERIAL_CHARS}{{1,128}}"'
_ROLE = r'"(reader|scanner)"'
LOCAL_LINE = re.compile(
    rf"SUBSYSTEM==\"tty\", ATTRS{{idVendor}}=={_ID}, ATTRS{{idProduct}}=={_ID}, "
    rf"(ATTRS{{serial}}=={_SERIAL}|ENV{{ID_PATH}}=={_PATH}), ENV{{POSD_DEVICE}}={_ROLE}"
    rf"|SUBSYSTEM==\"usb\|hidraw\", ATTRS{{idVendor}}=={_ID}, ATTRS{{idProduct}}=={_ID}, "
    rf"(ATTRS{{serial}}=={_SERIAL}, )?ENV{{POSD_DEVICE}}=\"scanner\""
)
"""Every form a line of 98-posd-local.rules may take, and no other."""

_MIN_SERIAL_LEN = 6


def usable_serial(serial: str | None, others: int = 0) -> bool:
    """Whether a USB serial number can pin one device: udev matches it literally only if it
    holds none of udev's pattern characters, and it must be this unit's own. Factory defaults
    are not (many CP210x all say "0001"), nor one `others` attached devices of the same ids
    share: a serial under 6 characters, or of one repeated character, is taken for a default."""
    if serial is None or others:
        return False
    if not re.fullmatch(rf"{_SERIAL_CHARS}{{{_MIN_SERIAL_LEN},64}}", serial):
        return False
    return len(set(serial)) > 1


def serial_line(
    role: Literal["reader", "scanner"],
    vendor_id: int,
    product_id: int,
    *,
    serial: str | None = None,
    id_path: str | None = None,
) -> str | None:
    """The line for a reader (or serial scanner) on a USB serial port: by its serial number
    when `serial` is given, else by its USB port (`id_path`); None when neither fits a form."""
    ids = f'ATTRS{{idVendor}}=="{vendor_id:04x}", ATTRS{{idProduct}}=="{product_id:04x}"'
    if serial is not None:
        pin = f'ATTRS{{serial}}=="{serial}"'
    elif id_path is not None:
        pin = f'ENV{{ID_PATH}}=="{id_path}"'
    else:
        return None
    line = f'SUBSYSTEM=="tty", {ids}, {pin}, ENV{{POSD_DEVICE}}="{role}"'
    return line if LOCAL_LINE.fullmatch(line) else None


def hid_scanner_line(vendor_id: int, product_id: int, serial: str | None = None) -> str:
    """The line for a QR scanner in USB HID keyboard mode, with its serial when it needs one
    (a scanner on a generic chip maker's ids)."""
    ids = f'ATTRS{{idVendor}}=="{vendor_id:04x}", ATTRS{{idProduct}}=="{product_id:04x}"'
    pin = f'ATTRS{{serial}}=="{serial}", ' if serial is not None else ""
    line = f'SUBSYSTEM=="usb|hidraw", {ids}, {pin}ENV{{POSD_DEVICE}}="scanner"'
    if not LOCAL_LINE.fullmatch(line):
        raise ValueError(f"serial {serial!r} cannot be matched literally by udev")
    return line
