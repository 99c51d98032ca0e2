"""USB HID boot-protocol keyboard reports ⇄ text, US layout, as barcode scanners type.

A boot report is 8 bytes: modifier bits, a reserved byte, then up to six usage IDs of
the keys held down. A key is typed when its usage appears in a report and was not in
the previous one, so a key still held across reports (roll-over) types once, and the
same key twice in a row needs a release report between.

Decisions where the spec is silent:
- Enter (0x28) and keypad Enter (0x58) end a code; an Enter with nothing before it
  yields nothing.
- Keypad digits and operators type their character whatever NumLock says: scanners in
  "keypad" mode send them and have no NumLock state to share.
- A key pressed with Ctrl, Alt or GUI held, or a usage with no character in the US
  layout, is dropped and counted in `unknown_keys`; the rest of the code is kept.
- A report of the wrong length is dropped and counted in `malformed`; a report with
  ErrorRollOver (0x01) in any slot (the keyboard's "too many keys" state) is dropped
  and counted in `rollover_errors`, leaving the held keys as they were.
"""

from __future__ import annotations

__all__ = [
    "ENTER",
    "MAX_CODE_CHARS",
    "REPORT_SIZE",
    "HidKeyboardDecoder",
    "reports_for_text",
]

REPORT_SIZE = 8
MAX_CODE_CHARS = 2048
ENTER = 0x28
KEYPAD_ENTER = 0x58
ERROR_ROLL_OVER = 0x01
LEFT_SHIFT = 0x02
RIGHT_SHIFT = 0x20
_SHIFT = LEFT_SHIFT | RIGHT_SHIFT
_CTRL_ALT_GUI = 0xFF & ~_SHIFT


def _build_layout() -> tuple[dict[int, str], dict[int, str]]:
    plain: dict[int, str] = {}
    shifted: dict[int, str] = {}
    for i, c in enumerate("abcdefghijklmnopqrstuvwxyz"):
        plain[0x04 + i] = c
        shifted[0x04 + i] = c.upper()
    for i, (c, s) in enumerate(zip("1234567890", "!@#$%^&*()", strict=True)):
        plain[0x1E + i] = c
        shifted[0x1E + i] = s
    for usage, c, s in (
        (0x2C, " ", " "),
        (0x2D, "-", "_"),
        (0x2E, "=", "+"),
        (0x2F, "[", "{"),
        (0x30, "]", "}"),
        (0x31, "\\", "|"),
        (0x33, ";", ":"),
        (0x34, "'", '"'),
        (0x35, "`", "~"),
        (0x36, ",", "<"),
        (0x37, ".", ">"),
        (0x38, "/", "?"),
    ):
        plain[usage] = c
        shifted[usage] = s
    for usage, c in zip(range(0x54, 0x58), "/*-+", strict=True):
        plain[usage] = shifted[usage] = c
    for usage, c in zip(range(0x59, 0x64), "1234567890.", strict=True):
        plain[usage] = shifted[usage] = c
    return plain, shifted


_PLAIN, _SHIFTED = _build_layout()
# For typing text: (usage, shifted) of the main-block key for each character; the keypad
# keys are only ever read.
_KEY_FOR_CHAR: dict[str, tuple[int, bool]] = {
    **{c: (u, True) for u, c in _SHIFTED.items() if u < 0x54 and c != _PLAIN[u]},
    **{c: (u, False) for u, c in _PLAIN.items() if u < 0x54},
}


class HidKeyboardDecoder:
    """Feed boot reports one at a time; get back each code completed by Enter."""

    def __init__(self, max_chars: int = MAX_CODE_CHARS) -> None:
        self.max_chars = max_chars
        self.malformed = 0
        self.rollover_errors = 0
        self.unknown_keys = 0
        self.overflows = 0
        self._held: frozenset[int] = frozenset()
        self._buffer: list[str] = []
        self._discarding = False

    @property
    def pending_chars(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        """Forget held keys and a partial code, e.g. after the device went away."""
        self._held = frozenset()
        self._buffer.clear()
        self._discarding = False

    def feed(self, report: bytes) -> list[str]:
        if len(report) != REPORT_SIZE:
            self.malformed += 1
            return []
        usages = report[2:]
        if ERROR_ROLL_OVER in usages:
            self.rollover_errors += 1
            return []
        modifiers = report[0]
        held = frozenset(u for u in usages if u > ERROR_ROLL_OVER)
        pressed = [u for u in dict.fromkeys(usages) if u > ERROR_ROLL_OVER and u not in self._held]
        self._held = held
        codes: list[str] = []
        for usage in pressed:
            if usage in (ENTER, KEYPAD_ENTER):
                if self._buffer and not self._discarding:
                    codes.append("".join(self._buffer))
                self._buffer.clear()
                self._discarding = False
                continue
            layout = _SHIFTED if modifiers & _SHIFT else _PLAIN
            char = layout.get(usage)
            if char is None or modifiers & _CTRL_ALT_GUI:
                self.unknown_keys += 1
                continue
            if self._discarding:
                continue
            if len(self._buffer) >= self.max_chars:
                self.overflows += 1
                self._buffer.clear()
                self._discarding = True
                continue
            self._buffer.append(char)
        return codes


def _report(modifiers: int, usages: list[int]) -> bytes:
    return bytes([modifiers, 0, *usages, *([0] * (6 - len(usages)))])


def reports_for_text(
    text: str, *, enter: bool = True, rollover: bool = False, right_shift: bool = False
) -> list[bytes]:
    """The reports a scanner sends to type `text` (and Enter); ValueError on untypable chars.

    Plain typing presses and releases each key. With `rollover`, each key goes down
    before the previous one comes up, as fast scanners do; a repeated key still gets
    its release in between.
    """
    keys: list[tuple[int, bool]] = []
    for ch in text:
        key = _KEY_FOR_CHAR.get(ch)
        if key is None:
            raise ValueError(f"character U+{ord(ch):04X} has no key in the US layout")
        keys.append(key)
    if enter:
        keys.append((ENTER, False))
    shift = RIGHT_SHIFT if right_shift else LEFT_SHIFT
    reports: list[bytes] = []
    held: list[int] = []
    for usage, shifted in keys:
        if held and (not rollover or usage in held):
            reports.append(_report(0, []))
            held = []
        held = [held[-1], usage] if held else [usage]
        reports.append(_report(shift if shifted else 0, held))
    if held:
        reports.append(_report(0, []))
    return reports
