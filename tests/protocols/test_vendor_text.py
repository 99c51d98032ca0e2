"""Vendor text (PONG fields, ERROR text) as posd may log, keep and print it."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.vendor_text import MAX_DISPLAY_CHARS, display_text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("SR-200", "SR-200"),
        ("1.4.2\r\n", "1.4.2"),
        ("\x1b[2J\x1b[31mred\x1b[0m", "red"),
        ("title\x1b]0;owned by a reader\x07 text", "title text"),
        ("dcs\x1bPq#0;2;0;0;0\x1b\\ end", "dcs end"),
        ("c1 \x9b2J csi", "c1 csi"),
        ("bidi \u202egnp.exe", "bidi gnp.exe"),
        ("nul\x00 and bell\x07", "nul and bell"),
        ("card 9410123456789012 read", "card 941012******9012 read"),
        ("9410 1234 5678 9012", "941012******9012"),
        ("fails Luhn 9410000000000001", "fails Luhn 941000******0001"),
        ("24 digits 123456789012345678901234", "24 digits " + "*" * 24),
        ("build 20261125 v12", "build 20261125 v12"),
        ("serial 123456789012", "serial 123456789012"),
    ],
)
def test_display_text(raw: str, shown: str) -> None:
    assert display_text(raw) == shown


def test_long_text_is_cut_short() -> None:
    shown = display_text("A" * 500)
    assert len(shown) == MAX_DISPLAY_CHARS and shown.endswith("…")


@given(st.text(max_size=300))
def test_nothing_shown_can_drive_a_terminal_or_hold_a_card_number(raw: str) -> None:
    shown = display_text(raw)
    assert len(shown) <= MAX_DISPLAY_CHARS
    assert not [ch for ch in shown if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")]
    assert "\x1b" not in shown and "\x9b" not in shown
    assert not re.search(r"[0-9]{13}", shown)
    assert display_text(shown) == shown
