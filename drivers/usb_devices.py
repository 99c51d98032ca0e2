"""The machine's USB devices, as libusb lists them (what posd's USB scanner driver sees), else
as sysfs does (world-readable, opens no device): ids, strings, interfaces with their endpoints
and kernel drivers, and whether a device has an interface a QR scanner is read through
(drivers.qr_scanner.hid_interface: a HID boot keyboard, or a keyboard interface whose only
endpoint is an interrupt IN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import usb.backend.libusb1
import usb.core
import usb.util

from drivers.qr_scanner import Endpoint, ScannerInterface, known_scanner, scanner_interface

__all__ = [
    "LIBUSB_MISSING",
    "SYSFS",
    "UsbDevice",
    "UsbInterface",
    "UsbListing",
    "libusb_backend",
    "list_usb",
    "usb_from_pyusb",
    "usb_from_sysfs",
]

SYSFS = Path("/sys")
LIBUSB_MISSING = (
    "libusb-1.0-0 is not installed; posd's USB scanner driver needs it (apt install libusb-1.0-0)"
)


@dataclass(frozen=True, slots=True)
class UsbInterface:
    """One interface (alternate setting 0) of a device's configuration."""

    number: int
    interface_class: int
    subclass: int
    protocol: int
    endpoints: tuple[Endpoint, ...]
    driver: str | None = None
    """The kernel driver bound to it (usbhid, cdc_acm, ftdi_sio ...); sysfs says, libusb not."""

    @property
    def kind(self) -> str:
        return f"{self.interface_class:02x}/{self.subclass:02x}/{self.protocol:02x}"

    @property
    def scanner(self) -> ScannerInterface | None:
        return scanner_interface(self.interface_class, self.subclass, self.protocol, self.endpoints)


@dataclass(frozen=True, slots=True)
class UsbDevice:
    bus: int
    address: int
    vendor_id: int
    product_id: int
    manufacturer: str | None
    product: str | None
    serial_number: str | None
    interfaces: tuple[UsbInterface, ...] = ()

    @property
    def ids(self) -> str:
        return f"{self.vendor_id:04x}:{self.product_id:04x}"

    @property
    def scanner_interface(self) -> ScannerInterface | None:
        """The interface kind posd's USB scanner driver would read, the boot keyboard first."""
        kinds = {intf.scanner for intf in self.interfaces}
        if "boot-keyboard" in kinds:
            return "boot-keyboard"
        return "keyboard" if "keyboard" in kinds else None

    @property
    def boot_keyboard(self) -> bool:
        """Has a HID boot-keyboard interface."""
        return self.scanner_interface == "boot-keyboard"

    @property
    def node(self) -> str:
        """Its device node under /dev, which libusb opens."""
        return f"bus/usb/{self.bus:03d}/{self.address:03d}"

    @property
    def known_scanner(self) -> str | None:
        row = known_scanner(self.vendor_id, self.product_id)
        return row.name if row is not None else None


@dataclass(frozen=True, slots=True)
class UsbListing:
    source: Literal["libusb", "sysfs", "none"]
    devices: tuple[UsbDevice, ...]
    libusb: bool
    """Whether pyusb found libusb, which posd's USB scanner driver needs."""
    note: str | None = None


def libusb_backend() -> Any:
    """pyusb's libusb 1.0 backend, or None where libusb-1.0-0 is not installed."""
    return usb.backend.libusb1.get_backend()


def _read_text(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return text or None


def _read_hex(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def _read_int(path: Path) -> int:
    text = _read_text(path)
    return int(text) if text is not None and text.isdecimal() else 0


def _sysfs_interfaces(device_dir: Path) -> tuple[UsbInterface, ...]:
    interfaces = []
    for intf in sorted(device_dir.glob(f"{device_dir.name}:*")):
        kind = [
            _read_hex(intf / n)
            for n in (
                "bInterfaceNumber",
                "bInterfaceClass",
                "bInterfaceSubClass",
                "bInterfaceProtocol",
            )
        ]
        if any(v is None for v in kind):
            continue
        endpoints = []
        for ep in sorted(intf.glob("ep_*")):
            address, attributes = _read_hex(ep / "bEndpointAddress"), _read_hex(ep / "bmAttributes")
            if address is not None and attributes is not None:
                endpoints.append((address, attributes))
        number, cls, subclass, protocol = (v or 0 for v in kind)
        driver = intf / "driver"
        interfaces.append(
            UsbInterface(
                number,
                cls,
                subclass,
                protocol,
                tuple(endpoints),
                driver.resolve().name if driver.is_symlink() else None,
            )
        )
    return tuple(interfaces)


def usb_from_sysfs(sysfs: Path) -> list[UsbDevice] | None:
    """Every USB device the kernel knows, from sysfs (world-readable, opens no device);
    None when there is no USB sysfs at all."""
    base = sysfs / "bus" / "usb" / "devices"
    if not base.is_dir():
        return None
    devices = []
    for entry in sorted(base.iterdir()):
        if ":" in entry.name:
            continue  # an interface, listed under its device
        vendor, product = _read_hex(entry / "idVendor"), _read_hex(entry / "idProduct")
        if vendor is None or product is None:
            continue
        devices.append(
            UsbDevice(
                bus=_read_int(entry / "busnum"),
                address=_read_int(entry / "devnum"),
                vendor_id=vendor,
                product_id=product,
                manufacturer=_read_text(entry / "manufacturer"),
                product=_read_text(entry / "product"),
                serial_number=_read_text(entry / "serial"),
                interfaces=_sysfs_interfaces(entry),
            )
        )
    return sorted(devices, key=lambda d: (d.bus, d.address))


def _usb_string(dev: Any, index: int) -> str | None:
    if not index:
        return None
    try:
        text = usb.util.get_string(dev, index)
    except (usb.core.USBError, ValueError, NotImplementedError):
        # Reading strings opens the device: without permission, sysfs may still have them.
        return None
    return str(text) if text else None


def _pyusb_interfaces(dev: Any, known: UsbDevice | None) -> tuple[UsbInterface, ...]:
    """The first configuration's interfaces (alternate setting 0), with the kernel drivers
    sysfs names for them."""
    drivers = {i.number: i.driver for i in known.interfaces} if known is not None else {}
    interfaces = []
    for cfg in dev:
        for intf in cfg:
            if intf.bAlternateSetting != 0:
                continue
            interfaces.append(
                UsbInterface(
                    intf.bInterfaceNumber,
                    intf.bInterfaceClass,
                    intf.bInterfaceSubClass,
                    intf.bInterfaceProtocol,
                    tuple((ep.bEndpointAddress, ep.bmAttributes) for ep in intf),
                    drivers.get(intf.bInterfaceNumber),
                )
            )
        break
    return tuple(interfaces)


def usb_from_pyusb(backend: Any, sysfs: Sequence[UsbDevice] = ()) -> list[UsbDevice]:
    """Every USB device pyusb sees; strings it cannot read are taken from `sysfs`."""
    by_address = {(d.bus, d.address): d for d in sysfs}
    devices = []
    for dev in usb.core.find(find_all=True, backend=backend):
        try:
            known = by_address.get((dev.bus, dev.address))
            manufacturer = _usb_string(dev, dev.iManufacturer)
            product = _usb_string(dev, dev.iProduct)
            serial_number = _usb_string(dev, dev.iSerialNumber)
            devices.append(
                UsbDevice(
                    bus=dev.bus,
                    address=dev.address,
                    vendor_id=dev.idVendor,
                    product_id=dev.idProduct,
                    manufacturer=manufacturer or (known.manufacturer if known else None),
                    product=product or (known.product if known else None),
                    serial_number=serial_number or (known.serial_number if known else None),
                    interfaces=_pyusb_interfaces(dev, known),
                )
            )
        finally:
            usb.util.dispose_resources(dev)
    return sorted(devices, key=lambda d: (d.bus, d.address))


def list_usb(sysfs: Path = SYSFS, find_backend: Callable[[], Any] = libusb_backend) -> UsbListing:
    """The USB devices through libusb, as posd's scanner driver sees them, else from sysfs;
    `find_backend` gives the pyusb backend to list with, None meaning there is no libusb."""
    from_sysfs = usb_from_sysfs(sysfs)
    backend = find_backend()
    if backend is None:
        if from_sysfs is None:
            note = f"{sysfs}/bus/usb is not there either and {LIBUSB_MISSING}"
            return UsbListing("none", (), False, note)
        return UsbListing("sysfs", tuple(from_sysfs), False, LIBUSB_MISSING)
    try:
        devices = usb_from_pyusb(backend, from_sysfs or ())
    except usb.core.USBError as exc:
        note = f"libusb could not list USB devices ({exc.strerror or exc})"
        if from_sysfs is None:
            return UsbListing("none", (), True, note)
        return UsbListing("sysfs", tuple(from_sysfs), True, note)
    return UsbListing("libusb", tuple(devices), True)
