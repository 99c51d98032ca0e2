"""A /sys tree on disk laid out as Linux lays it out, for tests of what posd reads from sysfs:
devices under devices/, with bus/usb/devices/* and class/tty/* as symlinks into it, interfaces
with their endpoints (ep_XX), kernel drivers as `driver` symlinks into bus/*/drivers/.

    sys = FakeSysfs(tmp_path / "sys")
    scanner = sys.usb_device("1-1", 0x05E0, 0x1200, devnum=4, product="Symbol Bar Code Scanner",
                             interfaces=[Interface(0x03, 0x01, 0x01, driver="usbhid")])
    sys.usb_serial_tty("ttyUSB0", "1-3", driver="ftdi_sio", dev="188:0")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

INTERRUPT_IN = ((0x81, 0x03),)


@dataclass(frozen=True)
class Interface:
    interface_class: int
    subclass: int
    protocol: int
    endpoints: Sequence[tuple[int, int]] = INTERRUPT_IN
    driver: str | None = None


def _write(directory: Path, values: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in values.items():
        (directory / key).write_text(value + "\n")


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


class FakeSysfs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.usb_root = root / "devices" / "pci0000:00" / "0000:00:14.0"
        (root / "bus" / "usb" / "devices").mkdir(parents=True, exist_ok=True)
        (root / "class" / "tty").mkdir(parents=True, exist_ok=True)

    def driver(self, device_dir: Path, bus: str, name: str) -> None:
        driver_dir = self.root / "bus" / bus / "drivers" / name
        driver_dir.mkdir(parents=True, exist_ok=True)
        _link(device_dir / "driver", driver_dir)

    def usb_device(
        self,
        name: str,
        vendor: int | str,
        product_id: int,
        *,
        busnum: int = 1,
        devnum: int,
        manufacturer: str | None = None,
        product: str | None = None,
        serial: str | None = None,
        interfaces: Sequence[Interface] = (),
    ) -> Path:
        """A USB device `name` ("1-3") and its interfaces (name:1.N), as sysfs lists them."""
        bus_dir = self.usb_root / f"usb{busnum}"
        device = bus_dir / name if name != f"usb{busnum}" else bus_dir
        values = {
            "idVendor": vendor if isinstance(vendor, str) else f"{vendor:04x}",
            "idProduct": f"{product_id:04x}",
            "busnum": str(busnum),
            "devnum": str(devnum),
            "bNumInterfaces": f"{len(interfaces):2d}",
        }
        for key, value in (("manufacturer", manufacturer), ("product", product)):
            if value is not None:
                values[key] = value
        if serial is not None:
            values["serial"] = serial
        _write(device, values)
        base = self.root / "bus" / "usb" / "devices"
        _link(base / name, device)
        for number, intf in enumerate(interfaces):
            intf_name = f"{name}:1.{number}" if name != f"usb{busnum}" else f"{busnum}-0:1.0"
            intf_dir = device / intf_name
            _write(
                intf_dir,
                {
                    "bInterfaceNumber": f"{number:02x}",
                    "bInterfaceClass": f"{intf.interface_class:02x}",
                    "bInterfaceSubClass": f"{intf.subclass:02x}",
                    "bInterfaceProtocol": f"{intf.protocol:02x}",
                    "bNumEndpoints": f"{len(intf.endpoints):02x}",
                },
            )
            for address, attributes in intf.endpoints:
                _write(
                    intf_dir / f"ep_{address:02x}",
                    {"bEndpointAddress": f"{address:02x}", "bmAttributes": f"{attributes:02x}"},
                )
            if intf.driver is not None:
                self.driver(intf_dir, "usb", intf.driver)
            _link(base / intf_name, intf_dir)
        return device

    def _tty(self, name: str, device: Path, dev: str) -> None:
        tty = device / "tty" / name
        _write(tty, {"dev": dev})
        _link(tty / "device", device)
        _link(self.root / "class" / "tty" / name, tty)

    def usb_serial_tty(self, name: str, usb_device: str, *, driver: str, dev: str) -> None:
        """ttyUSB*: a usb-serial port device under the adapter's first interface."""
        interface = (self.root / "bus" / "usb" / "devices" / f"{usb_device}:1.0").resolve()
        port = interface / name
        port.mkdir(parents=True)
        self.driver(port, "usb-serial", driver)
        self._tty(name, port, dev)

    def cdc_acm_tty(self, name: str, usb_device: str, *, dev: str) -> None:
        """ttyACM*: the tty straight under the CDC interface, which cdc_acm drives."""
        interface = (self.root / "bus" / "usb" / "devices" / f"{usb_device}:1.0").resolve()
        if not (interface / "driver").exists():
            self.driver(interface, "usb", "cdc_acm")
        self._tty(name, interface, dev)

    def uart_tty(self, name: str, *, dev: str, driver: str = "serial") -> None:
        """ttyS* on Linux >= 6.5: under the serial core's port and controller devices."""
        controller = self.root / "devices" / "pnp0" / "00:00"
        ctrl = controller / "00:00:0"
        port = ctrl / "00:00:0.0"
        port.mkdir(parents=True)
        self.driver(controller, "pnp", driver)
        self.driver(ctrl, "serial-base", "ctrl")
        self.driver(port, "serial-base", "port")
        self._tty(name, port, dev)
