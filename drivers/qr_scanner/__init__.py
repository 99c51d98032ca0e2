"""The QR scanner: a HID keyboard-mode USB scanner (pyusb) or a serial one, each a component
that hands every complete code to a callback and reports its state.

Modules:
- `base`: `ScannerBase`, the state, delivery and rescan loop both kinds share.
- `usb_hid`: `UsbQrScanner`, boot-keyboard reports read through pyusb (kernel driver detached).
- `serial_line`: `SerialQrScanner`, one code per line; `ScannerLines`, the line splitter.
- `known_vendors`: `KNOWN_SCANNERS`, the USB vendors `usb_vendor_id = "auto"` takes for
  scanners; `known_scanner`, the row a device matches.
"""

from drivers.qr_scanner.base import ScannerBase, ScannerState
from drivers.qr_scanner.known_vendors import KNOWN_SCANNERS, ScannerVendor, known_scanner
from drivers.qr_scanner.serial_line import ScannerLines, SerialQrScanner
from drivers.qr_scanner.usb_hid import UsbQrScanner

__all__ = [
    "KNOWN_SCANNERS",
    "ScannerBase",
    "ScannerLines",
    "ScannerState",
    "ScannerVendor",
    "SerialQrScanner",
    "UsbQrScanner",
    "known_scanner",
]
