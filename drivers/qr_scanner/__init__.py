"""The QR scanner: a HID keyboard-mode USB scanner (pyusb) or a serial one, each a component
that hands every complete code to a callback and reports its state.

Modules:
- `base`: `ScannerBase`, the state, delivery and rescan loop both kinds share.
- `usb_hid`: `UsbQrScanner`, keyboard reports read through pyusb (kernel driver detached);
  loaded on first use of the name, so that a box with a serial scanner does not load pyusb
  (0.3 MB of the daemon's RSS).
- `hid_interface`: `scanner_interface`, the rule for the USB interface a keyboard-mode scanner
  is read through, which `drivers.usb_devices` applies too.
- `serial_line`: `SerialQrScanner`, one code per line; `ScannerLines`, the line splitter.
- `known_vendors`: `KNOWN_SCANNERS`, the USB vendors `usb_vendor_id = "auto"` takes for
  scanners; `known_scanner`, the row a device matches; `GENERIC_CHIP_VENDORS`, the chip makers'
  ids that scanners share with keyboards.
"""

from typing import TYPE_CHECKING

from drivers.qr_scanner.base import ScannerBase, ScannerState
from drivers.qr_scanner.hid_interface import (
    Endpoint,
    ScannerInterface,
    interrupt_in,
    scanner_interface,
)
from drivers.qr_scanner.known_vendors import (
    GENERIC_CHIP_VENDORS,
    KNOWN_SCANNERS,
    ScannerVendor,
    known_scanner,
)
from drivers.qr_scanner.serial_line import ScannerLines, SerialQrScanner

if TYPE_CHECKING:
    from drivers.qr_scanner.usb_hid import UsbQrScanner

__all__ = [
    "GENERIC_CHIP_VENDORS",
    "KNOWN_SCANNERS",
    "Endpoint",
    "ScannerBase",
    "ScannerInterface",
    "ScannerLines",
    "ScannerState",
    "ScannerVendor",
    "SerialQrScanner",
    "UsbQrScanner",
    "interrupt_in",
    "known_scanner",
    "scanner_interface",
]


def __getattr__(name: str) -> object:
    if name == "UsbQrScanner":
        from drivers.qr_scanner.usb_hid import UsbQrScanner

        return UsbQrScanner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
