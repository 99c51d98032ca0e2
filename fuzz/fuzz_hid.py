"""Fuzz target: HID boot keyboard reports, cut from the bytes 8 at a time (the tail short).

The decoder takes any report without raising and never returns a code over the cap.
"""

from __future__ import annotations

from protocols.hid_keyboard import REPORT_SIZE, HidKeyboardDecoder

# A small cap so the fuzzer reaches the overflow path with short inputs.
CAP = 16


def target(data: bytes) -> None:
    decoder = HidKeyboardDecoder(max_chars=CAP)
    for start in range(0, len(data), REPORT_SIZE):
        for code in decoder.feed(data[start : start + REPORT_SIZE]):
            assert 0 < len(code) <= CAP
    assert decoder.pending_chars <= CAP
