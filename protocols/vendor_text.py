"""Text a device sends for people to read (SRL/1 ERROR text, PONG model, firmware and serial):
untrusted input, which reader-link.md says may hold card data.

`display_text` makes it fit to log, to keep in a state object, to print: terminal escape
sequences and every control or format character removed (a firmware string must not recolour,
retitle or rewrite a technician's terminal), any run of 13 to 19 digits masked as a card number
(protocols.emv.mask_pan: vendor text has no business with numbers that long, Luhn or not), and
the length bounded.
"""

from __future__ import annotations

import re
import unicodedata

from protocols.emv import mask_pan

__all__ = ["MAX_DISPLAY_CHARS", "display_text"]

MAX_DISPLAY_CHARS = 80
_MIN_CARD_DIGITS = 13
_MAX_CARD_DIGITS = 19

# ECMA-48: CSI (ESC [ or 0x9B) params intermediates final; OSC, DCS, SOS, PM, APC strings up to
# BEL or ST; and the two-character escapes.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# 13 or more digits in a row, or groups of four as card numbers are printed (9410 1234 ...).
_CARD_LIKE = re.compile(
    r"(?<![0-9])(?:[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,4})?|[0-9]{13,})(?![0-9])"
)
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _mask_digits(match: re.Match[str]) -> str:
    run = match.group(0)
    digits = "".join(ch for ch in run if "0" <= ch <= "9")
    if len(digits) < _MIN_CARD_DIGITS:
        return run
    if len(digits) > _MAX_CARD_DIGITS:
        return "*" * len(digits)
    return mask_pan(digits)


def display_text(text: str, max_chars: int = MAX_DISPLAY_CHARS) -> str:
    """`text` as it may be shown: see the module doc. Whitespace runs become one space."""
    text = _ESCAPES.sub("", text)
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE
    )
    text = " ".join(text.split())
    text = _CARD_LIKE.sub(_mask_digits, text)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text
