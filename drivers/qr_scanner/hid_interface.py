"""The USB interface a QR scanner in keyboard mode is read through: the one rule the driver
(`usb_hid`) and the listing of `posd devices` (`drivers.usb_devices`) share.

- "boot-keyboard": a HID interface of the boot subclass with the keyboard protocol (class 3,
  subclass 1, protocol 1) and an interrupt IN endpoint, as most scanners in "USB keyboard"
  mode present themselves.
- "keyboard": a HID interface with the keyboard protocol that does not claim boot support
  (subclass 0), shaped as a device that only types: exactly one endpoint, an interrupt IN.
  Some scanners' firmware leaves the boot subclass out. An interface with an OUT endpoint or
  more than one endpoint is something else (a HID POS scanner, a vendor channel, a composite
  keyboard) and is not taken.

Both deliver keyboard reports; posd decodes the 8-byte keyboard report
(protocols.hid_keyboard), which is what a keyboard interface without report IDs sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

__all__ = ["Endpoint", "ScannerInterface", "interrupt_in", "scanner_interface"]

HID, BOOT, NO_SUBCLASS, KEYBOARD = 0x03, 0x01, 0x00, 0x01
_DIRECTION_IN = 0x80
_TRANSFER_TYPE, _INTERRUPT = 0x03, 0x03

ScannerInterface = Literal["boot-keyboard", "keyboard"]
Endpoint = tuple[int, int]
"""(bEndpointAddress, bmAttributes) of one endpoint descriptor."""


def interrupt_in(endpoint: Endpoint) -> bool:
    address, attributes = endpoint
    return bool(address & _DIRECTION_IN) and attributes & _TRANSFER_TYPE == _INTERRUPT


def scanner_interface(
    interface_class: int, subclass: int, protocol: int, endpoints: Iterable[Endpoint]
) -> ScannerInterface | None:
    """What posd can read a scanner through on this interface (module doc), or None."""
    if interface_class != HID or protocol != KEYBOARD:
        return None
    endpoints = tuple(endpoints)
    if subclass == BOOT:
        return "boot-keyboard" if any(interrupt_in(ep) for ep in endpoints) else None
    if subclass == NO_SUBCLASS and len(endpoints) == 1 and interrupt_in(endpoints[0]):
        return "keyboard"
    return None
