"""USB vendors whose HID keyboard-mode devices `usb_vendor_id = "auto"` takes for QR scanners.

Only vendors that make scanners and little else are listed, so "auto" never grabs the
shop's keyboard: the driver detaches the kernel driver of what it claims. Budget scanners
built on generic chips (QinHeng 0x1a86, Holtek 0x04d9, STMicroelectronics 0x0483 ...)
share their vendor id with keyboards and mice, so they are not matched by vendor; list
them by product id, or set `usb_vendor_id` and `usb_product_id` in the config.

To add a scanner: run `lsusb` (or `posd devices`) with it plugged in, read `ID vvvv:pppp`,
and add a row: `ScannerVendor(0xvvvv, "Maker")` when every product of that vendor is a
scanner, or `ScannerVendor(0xvvvv, "Maker model", products=frozenset({0xpppp}))` when the
vendor id is shared with other kinds of device.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GENERIC_CHIP_VENDORS", "KNOWN_SCANNERS", "ScannerVendor", "known_scanner"]


@dataclass(frozen=True, slots=True)
class ScannerVendor:
    vendor_id: int
    name: str
    # None: every product of the vendor; else only these product ids.
    products: frozenset[int] | None = None

    def matches(self, vendor_id: int, product_id: int) -> bool:
        return vendor_id == self.vendor_id and (
            self.products is None or product_id in self.products
        )


KNOWN_SCANNERS: tuple[ScannerVendor, ...] = (
    ScannerVendor(0x0C2E, "Honeywell (Metrologic)"),
    ScannerVendor(0x0536, "Honeywell (Hand Held Products)"),
    ScannerVendor(0x05E0, "Zebra (Symbol)"),
    ScannerVendor(0x05F9, "Datalogic (PSC)"),
    ScannerVendor(0x1EAB, "Newland"),
    ScannerVendor(0x065A, "Opticon"),
)


GENERIC_CHIP_VENDORS: dict[int, str] = {
    0x1A86: "QinHeng (WCH)",
    0x04D9: "Holtek",
    0x0483: "STMicroelectronics",
}
"""Chip makers whose vendor id budget scanners, keyboards and mice share: a device under one is
told apart by its product id and, where it has one, its serial number."""


def known_scanner(vendor_id: int, product_id: int) -> ScannerVendor | None:
    """The table row a device matches, or None."""
    for row in KNOWN_SCANNERS:
        if row.matches(vendor_id, product_id):
            return row
    return None
