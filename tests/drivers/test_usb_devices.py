"""The USB listing of `posd devices`: through libusb (here a pyusb backend emulating a HID
scanner), else from sysfs, else nothing, saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.usb_devices import LIBUSB_MISSING, list_usb
from posd.sim.usb_hid_backend import HidScannerBackend
from tests.helpers.sysfs import FakeSysfs, Interface


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


@pytest.mark.parametrize(
    ("subclass", "endpoints", "expected"),
    [
        (0x01, ((0x81, 0x03),), "boot-keyboard"),
        (0x00, ((0x81, 0x03),), "keyboard"),
        (0x00, ((0x81, 0x03), (0x02, 0x03)), None),
        (0x00, ((0x81, 0x03), (0x82, 0x03)), None),
    ],
    ids=["boot keyboard", "keyboard, one interrupt IN", "with an OUT endpoint", "two IN"],
)
def test_scanner_interface_through_libusb(
    tmp_path: Path, subclass: int, endpoints: tuple[tuple[int, int], ...], expected: str | None
) -> None:
    backend = HidScannerBackend(
        vendor_id=0x1A86, product_id=0xE026, interface_subclass=subclass, endpoints=endpoints
    )
    [device] = list_usb(tmp_path / "no-sysfs", lambda: backend).devices
    [interface] = device.interfaces
    assert (interface.kind, interface.endpoints) == (f"03/{subclass:02x}/01", endpoints)
    assert device.scanner_interface == expected
    assert device.boot_keyboard is (expected == "boot-keyboard")
    assert device.known_scanner is None


def test_interfaces_and_drivers_from_sysfs(tmp_path: Path) -> None:
    sysfs = FakeSysfs(tmp_path / "sys")
    sysfs.usb_device(
        "1-1", 0x1A86, 0xE026, devnum=3, product="Barcode Scanner",
        interfaces=[Interface(0x03, 0x00, 0x01, driver="usbhid")],
    )  # fmt: skip
    sysfs.usb_device(
        "1-2", 0x1A86, 0xE027, devnum=4,
        interfaces=[Interface(0x03, 0x00, 0x01, ((0x81, 0x03), (0x01, 0x03)), driver="usbhid")],
    )  # fmt: skip
    listing = list_usb(sysfs.root, lambda: None)
    by_ids = {d.ids: d for d in listing.devices}
    scanner, other = by_ids["1a86:e026"], by_ids["1a86:e027"]
    assert scanner.scanner_interface == "keyboard" and scanner.node == "bus/usb/001/003"
    assert [(i.number, i.driver, i.endpoints) for i in scanner.interfaces] == [
        (0, "usbhid", ((0x81, 0x03),))
    ]
    assert other.scanner_interface is None
    assert other.interfaces[0].endpoints == ((0x01, 0x03), (0x81, 0x03))


def test_libusb_listing_takes_interface_drivers_from_sysfs(tmp_path: Path) -> None:
    sysfs = FakeSysfs(tmp_path / "sys")
    # The backend's scanner is on bus 1 at address 2.
    sysfs.usb_device(
        "1-1", 0x05E0, 0x1200, devnum=2, interfaces=[Interface(0x03, 0x01, 0x01, driver="usbhid")]
    )
    [device] = list_usb(sysfs.root, HidScannerBackend).devices
    assert [i.driver for i in device.interfaces] == ["usbhid"]
