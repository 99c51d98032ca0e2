"""The USB listing of `posd devices`: through libusb (here a pyusb backend emulating a HID
scanner), else from sysfs, else nothing, saying why."""

from __future__ import annotations

from pathlib import Path

from drivers.usb_devices import LIBUSB_MISSING, list_usb
from posd.sim.usb_hid_backend import HidScannerBackend


def test_through_libusb_the_scanner_is_listed_with_its_strings(tmp_path: Path) -> None:
    backend = HidScannerBackend(serial="S/N:42")
    listing = list_usb(tmp_path / "no-sysfs", lambda: backend)
    assert (listing.source, listing.libusb, listing.note) == ("libusb", True, None)
    [scanner] = listing.devices
    assert (scanner.ids, scanner.product, scanner.serial_number) == (
        "05e0:1200",
        "Symbol Bar Code Scanner",
        "S/N:42",
    )
    assert scanner.boot_keyboard and scanner.known_scanner == "Zebra (Symbol)"


def test_without_libusb_or_sysfs_nothing_is_listed_and_the_note_says_why(tmp_path: Path) -> None:
    listing = list_usb(tmp_path / "no-sysfs", lambda: None)
    assert (listing.source, listing.devices, listing.libusb) == ("none", (), False)
    assert listing.note is not None and LIBUSB_MISSING in listing.note
