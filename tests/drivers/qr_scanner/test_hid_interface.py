"""The rule for the USB interface a keyboard-mode QR scanner is read through."""

from __future__ import annotations

import pytest

from drivers.qr_scanner import scanner_interface

IN_INT, OUT_INT, IN_BULK = (0x81, 0x03), (0x02, 0x03), (0x82, 0x02)


@pytest.mark.parametrize(
    ("kind", "endpoints", "expected"),
    [
        ((0x03, 0x01, 0x01), [IN_INT], "boot-keyboard"),
        # A boot keyboard may have an OUT endpoint (its LEDs) or more: still a boot keyboard.
        ((0x03, 0x01, 0x01), [IN_INT, OUT_INT], "boot-keyboard"),
        ((0x03, 0x01, 0x01), [OUT_INT], None),
        # No boot protocol: the keyboard interface must be one interrupt IN and nothing else.
        ((0x03, 0x00, 0x01), [IN_INT], "keyboard"),
        ((0x03, 0x00, 0x01), [IN_INT, OUT_INT], None),
        ((0x03, 0x00, 0x01), [IN_INT, (0x83, 0x03)], None),
        ((0x03, 0x00, 0x01), [OUT_INT], None),
        ((0x03, 0x00, 0x01), [IN_BULK], None),
        ((0x03, 0x00, 0x01), [], None),
        ((0x03, 0x00, 0x00), [IN_INT], None),  # HID, not a keyboard (a HID POS scanner, say)
        ((0x03, 0x01, 0x02), [IN_INT], None),  # boot mouse
        ((0xFF, 0x00, 0x01), [IN_INT], None),  # vendor class
    ],
)
def test_scanner_interface(
    kind: tuple[int, int, int], endpoints: list[tuple[int, int]], expected: str | None
) -> None:
    assert scanner_interface(*kind, endpoints) == expected
