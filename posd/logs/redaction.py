"""Masking of card data and secrets in text that is about to leave the process (logs, status).

Everything here works on the final text, so it catches card data however it got there: a
message, a `%r` of a bytes object, an exception text, a traceback. What is masked:

- PANs: any 13-19 digit window of a digit run that passes Luhn or starts with a card prefix
  (the 서로e음 account prefix, and card_reader.accepted_prefixes: `set_card_prefixes`), digits
  optionally separated by single spaces or dashes (`9410 1234 5678 9012`). Windows inside
  longer digit runs are checked too, because a PAN in a hex dump or an ISO 8583 LLVAR (`16` +
  PAN) sits next to other digits.
  A masked PAN keeps its first 6 and last 4 digits at most, as protocols.emv.mask_pan does.
- The BCD form of a PAN is the same digits, so hex dumps are covered by the rule above; a Python
  bytes literal (`b'\\x94\\x10...'`) is decoded and its hex checked the same way.
- Track 2 (`PAN` + `=` or `D` + expiry, service code, discretionary data): everything after the
  separator is masked, as is the PAN.
- 서로e음 QR tokens, recognised by their fixed base64 (and hex) start.
- Registered secrets (keys, tokens, QR texts) in their raw, hex, base64 (any alignment) and
  bytes-literal forms.

The cost is paid only where digits or candidate characters are: a log line without 13 digits in a
row and without a registered secret goes through two precompiled regex scans.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocols.emv import mask_pan
from protocols.qr_token import SEOROEUM_ACCOUNT_PREFIX

MIN_PAN_DIGITS = 13
MAX_PAN_DIGITS = 19
MIN_SECRET_CHARS = 6
TRANSIENT_SECRETS_KEPT = 1024
LONGEST_DIGIT_RUN_CHECKED = 4096
SECRET_MASK = "[REDACTED]"
# Masked whatever the config says: 서로e음 numbers start so, and the test cards fail Luhn.
CARD_PREFIXES: tuple[str, ...] = (SEOROEUM_ACCOUNT_PREFIX,)
QR_MASK = "[QR-TOKEN]"

# A run of digits where single spaces or dashes may sit between any two digits.
_DIGIT_RUN = re.compile(r"\d(?:[ \-]?\d)*")
# Track 2: digits, separator, then at least expiry (4) and service code (3).
_TRACK2 = re.compile(r"(\d{12,19})([=Dd])(\d{7,}[Ff]?)")
_BYTES_LITERAL = re.compile(r"""b'(?:[^'\\\n]|\\.)*'|b"(?:[^"\\\n]|\\.)*\"""")
# A 서로e음 QR text is base64 of TLV starting 85 05 "CPV01" 61: "hQVDUFYwMWE" in base64.
# The hex form of the decoded payload starts 8505435056303161.
_QR_TOKEN = re.compile(r"hQVDUFYwMW[A-Za-z0-9+/]*={0,2}|(?i:8505435056303161[0-9a-f]*)")

_HEX_TEXT = re.compile(r"(?:[0-9a-fA-F]{2})+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# Luhn contribution of a digit when it is doubled.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(digits: str) -> bool:
    """True when the ASCII digit string passes the Luhn check (the PAN check digit)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _DOUBLED[d] if i % 2 else d
    return total % 10 == 0


def _masked_windows(
    values: list[int], groups: list[tuple[int, int]], prefixes: Sequence[str] = ()
) -> set[int]:
    """Indexes (into `values`) of digits to hide: the middle of every 13-19 window that passes
    Luhn or starts with one of `prefixes` (서로e음 numbers need not pass Luhn).

    `groups` are the [start, end) spans of digits written without separators. Any window inside
    one group is checked (a PAN next to other digits, as in a hex dump). A window across
    separators must be laid out as PANs are for humans: a first group of 4 then groups of 3-6
    (`9410 1234 5678 9012`, `3714 496353 98431`), or BCD bytes (`94 10 12 ...`), starting and
    ending on group boundaries, so that a list of numbers separated by spaces is not one.
    """
    n = len(values)
    # prefix[p][k]: sum over positions < k of each digit's Luhn contribution when the doubled
    # digits are those whose position parity differs from p. A window ending at e doubles the
    # positions with parity != (e - 1) % 2, so its Luhn sum is a difference of two prefix sums.
    prefix = ([0] * (n + 1), [0] * (n + 1))
    for k, d in enumerate(values):
        for p in (0, 1):
            prefix[p][k + 1] = prefix[p][k] + (_DOUBLED[d] if k % 2 != p else d)

    hide: set[int] = set()
    digits = "".join(map(str, values)) if prefixes else ""
    card_starts = {
        start for start in range(n) if any(digits.startswith(p, start) for p in prefixes)
    }

    def check(start: int, end: int) -> None:
        p = (end - 1) % 2
        if start in card_starts or (prefix[p][end] - prefix[p][start]) % 10 == 0:
            # What protocols.emv.mask_pan keeps: the first 6 and the last 4.
            hide.update(range(start + 6, end - 4))

    for g_start, g_end in groups:
        for start in range(g_start, g_end - MIN_PAN_DIGITS + 1):
            for end in range(start + MIN_PAN_DIGITS, min(start + MAX_PAN_DIGITS, g_end) + 1):
                check(start, end)
    sizes = [end - start for start, end in groups]
    for i, (first_start, _) in enumerate(groups):
        byte_pairs = sizes[i] == 2
        if sizes[i] != 4 and not byte_pairs:
            continue
        for j in range(i + 1, len(groups)):
            # A short group can only end a PAN: `4222 2222 2222 2`, or the lone digit before
            # the F pad of odd-length BCD.
            full = 2 if byte_pairs else 3
            length = groups[j][1] - first_start
            if not 1 <= sizes[j] <= (2 if byte_pairs else 6) or length > MAX_PAN_DIGITS:
                break
            if length >= MIN_PAN_DIGITS:
                check(first_start, groups[j][1])
            if sizes[j] < full:
                break
    return hide


def _mask_digit_run(run: str, keep_length: bool = False, prefixes: Sequence[str] = ()) -> str:
    positions: list[int] = []
    groups: list[tuple[int, int]] = []
    for i, ch in enumerate(run):
        if ch in " -":
            groups.append((groups[-1][1] if groups else 0, len(positions)))
            continue
        positions.append(i)
    groups.append((groups[-1][1] if groups else 0, len(positions)))
    if len(positions) < MIN_PAN_DIGITS:
        return run
    if len(positions) > LONGEST_DIGIT_RUN_CHECKED:
        # Nothing legitimate logs thousands of digits in a row; checking every window of it
        # would stall the logging thread, so it is hidden whole.
        if keep_length:
            return "".join(ch if ch in " -" else "*" for ch in run)
        return f"<{len(positions)} digits masked>"
    hide = _masked_windows([int(run[i]) for i in positions], groups, prefixes)
    if not hide:
        return run
    chars = list(run)
    for idx in hide:
        chars[positions[idx]] = "*"
    return "".join(chars)


def _mask_track2(match: re.Match[str]) -> str:
    return mask_pan(match.group(1)) + match.group(2) + "*" * len(match.group(3))


def _mask_digits_in_place(text: str, prefixes: Sequence[str] = ()) -> str:
    """Track 2 and PAN masking that keeps every character where it was."""
    text = _TRACK2.sub(_mask_track2, text)
    return _DIGIT_RUN.sub(
        lambda m: _mask_digit_run(m.group(0), keep_length=True, prefixes=prefixes), text
    )


def redact_card_data(text: str, prefixes: Sequence[str] = CARD_PREFIXES) -> str:
    """Mask track 2, PANs (plain, separated, BCD hex; Luhn-valid or starting with one of
    `prefixes`) and QR tokens in `text`."""
    text = _QR_TOKEN.sub(QR_MASK, text)
    text = _TRACK2.sub(_mask_track2, text)
    return _DIGIT_RUN.sub(lambda m: _mask_digit_run(m.group(0), prefixes=prefixes), text)


def _raw_forms(raw: bytes) -> tuple[list[str], list[str]]:
    exact: list[str] = [repr(raw)[2:-1]]
    anycase = [raw.hex(), raw.hex(" "), raw.hex(":")]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        padded = encode(raw).decode("ascii")
        exact += [padded, padded.rstrip("=")]
        for offset in range(3):
            # Inside a longer blob the secret may start at any byte offset; the characters that
            # depend on the secret's bytes alone are the middle of the encoding of pad + secret.
            encoded = encode(b"\0" * offset + raw).decode("ascii").rstrip("=")
            skip = (0, 2, 3)[offset]
            cut = len(encoded) - (1 if (offset + len(raw)) % 3 else 0)
            exact.append(encoded[skip:cut])
    return exact, anycase


@dataclass(frozen=True, slots=True)
class _Forms:
    """A secret's byte values and the textual forms it can take in a log line."""

    raws: tuple[bytes, ...]
    exact: frozenset[str]
    anycase: frozenset[str]  # ASCII-lowercased


def _secret_forms(value: str | bytes) -> _Forms:
    exact: list[str] = []
    anycase: list[str] = []
    raws: list[bytes] = []
    if isinstance(value, str):
        exact.append(value)
        raws.append(value.encode("utf-8"))
        if _HEX_TEXT.fullmatch(value):
            # A hex key file's text: the key itself may be printed as base64 or repr too.
            anycase.append(value)
            raws.append(bytes.fromhex(value))
    else:
        raws.append(value)
        with contextlib.suppress(UnicodeDecodeError):
            exact.append(value.decode("utf-8"))
    for raw in raws:
        more_exact, more_anycase = _raw_forms(raw)
        exact += more_exact
        anycase += more_anycase
    return _Forms(
        tuple(raws),
        frozenset(f for f in exact if len(f) >= MIN_SECRET_CHARS),
        frozenset(f.translate(_ASCII_LOWER) for f in anycase if len(f) >= MIN_SECRET_CHARS),
    )


class _PrefixIndex:
    """Forms by their first MIN_SECRET_CHARS characters, with a count per form.

    Scanning a line is one dict lookup per position, however many secrets there are, and adding
    or dropping a secret touches only its own forms: no regex to recompile per QR scan.
    """

    def __init__(self) -> None:
        self.by_prefix: dict[str, tuple[str, ...]] = {}
        self._counts: dict[str, int] = {}

    def add(self, forms: Iterable[str]) -> None:
        for form in forms:
            count = self._counts.get(form, 0)
            self._counts[form] = count + 1
            if count == 0:
                key = form[:MIN_SECRET_CHARS]
                known = self.by_prefix.get(key, ())
                self.by_prefix[key] = tuple(sorted((*known, form), key=len, reverse=True))

    def remove(self, forms: Iterable[str]) -> None:
        for form in forms:
            count = self._counts.pop(form, 0) - 1
            if count > 0:
                self._counts[form] = count
                continue
            key = form[:MIN_SECRET_CHARS]
            rest = tuple(f for f in self.by_prefix.get(key, ()) if f != form)
            if rest:
                self.by_prefix[key] = rest
            else:
                self.by_prefix.pop(key, None)

    def spans(self, text: str, found: list[tuple[int, int]]) -> None:
        index = self.by_prefix
        if not index:
            return
        width = MIN_SECRET_CHARS
        for i in range(len(text) - width + 1):
            forms = index.get(text[i : i + width])
            if forms is None:
                continue
            for form in forms:
                if text.startswith(form, i):
                    found.append((i, i + len(form)))
                    break


def _compile_forms(entries: Iterable[_Forms]) -> re.Pattern[str] | None:
    exact = {f for e in entries for f in e.exact}
    anycase = {f for e in entries for f in e.anycase}
    alternatives = [re.escape(f) for f in sorted(exact, key=len, reverse=True)]
    alternatives += [f"(?i:{re.escape(f)})" for f in sorted(anycase, key=len, reverse=True)]
    return re.compile("|".join(alternatives)) if alternatives else None


class Redactor:
    """Card-data masking plus a set of secrets registered at run time. Thread-safe.

    Secrets are kept until the process ends, except transient ones (per-payment values such as
    QR texts), of which the most recent TRANSIENT_SECRETS_KEPT are kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._permanent: dict[str | bytes, _Forms] = {}
        self._transient: OrderedDict[str | bytes, _Forms] = OrderedDict()
        # Permanent secrets are few (keys, tokens) and set at start: one compiled regex, C speed.
        # Transient ones come and go with every payment: a prefix index, nothing to recompile.
        self._pattern: re.Pattern[str] | None = None
        self._exact = _PrefixIndex()
        self._anycase = _PrefixIndex()
        self._raws: tuple[bytes, ...] = ()
        self._prefixes: tuple[str, ...] = CARD_PREFIXES

    def set_card_prefixes(self, prefixes: Iterable[str]) -> None:
        """Digit runs starting with one of these (the config's accepted card prefixes) are
        masked too, Luhn or not; the 서로e음 account prefix always is."""
        wanted = {p for p in prefixes if p.isascii() and p.isdigit()} | set(CARD_PREFIXES)
        self._prefixes = tuple(sorted(wanted))

    def register(self, value: str | bytes, *, transient: bool = False) -> None:
        """Mask `value` from now on, in every form listed in the module doc.

        Raises ValueError for a secret shorter than MIN_SECRET_CHARS: masking it would blank
        ordinary text, and a secret that short is not one.
        """
        if not isinstance(value, str | bytes):
            raise TypeError(f"a secret is str or bytes, not {type(value).__name__}")
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"secret too short to redact safely (< {MIN_SECRET_CHARS} characters)")
        forms = _secret_forms(value)
        with self._lock:
            if value in self._permanent:
                return
            if value in self._transient:
                self._transient.move_to_end(value)
                if transient:
                    return
                self._drop(self._transient.pop(value))
            if transient:
                self._transient[value] = forms
                self._exact.add(forms.exact)
                self._anycase.add(forms.anycase)
                while len(self._transient) > TRANSIENT_SECRETS_KEPT:
                    self._drop(self._transient.popitem(last=False)[1])
            else:
                self._permanent[value] = forms
                self._pattern = _compile_forms(self._permanent.values())
            self._raws = tuple(
                raw
                for f in (*self._permanent.values(), *self._transient.values())
                for raw in f.raws
            )

    def _drop(self, forms: _Forms) -> None:
        self._exact.remove(forms.exact)
        self._anycase.remove(forms.anycase)

    def _mask_secrets(self, text: str) -> str:
        found: list[tuple[int, int]] = []
        pattern = self._pattern
        if pattern is not None:
            found += (m.span() for m in pattern.finditer(text))
        self._exact.spans(text, found)
        if self._anycase.by_prefix:
            self._anycase.spans(text.translate(_ASCII_LOWER), found)
        if not found:
            return text
        found.sort()
        out: list[str] = []
        pos = 0
        for start, end in found:
            if end <= pos:
                continue
            if start >= pos:
                out.append(text[pos:start])
                out.append(SECRET_MASK)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _mask_bytes_literal(self, match: re.Match[str]) -> str:
        literal = match.group(0)
        try:
            data = ast.literal_eval(literal)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return literal
        if not isinstance(data, bytes):
            return literal
        if any(secret in data for secret in self._raws):
            return f"<{len(data)} bytes {SECRET_MASK}>"
        as_text = data.decode("latin-1")
        if _QR_TOKEN.search(as_text):
            return f"<{len(data)} bytes {QR_MASK}>"
        hexed = data.hex()
        if redact_card_data(hexed, self._prefixes) == hexed:
            # No BCD card data; digits written as ASCII are masked by the pass over the text.
            return literal
        # Shown as hex, ASCII digits would be spelled 3x3x...: mask them before hexing.
        ascii_masked = _mask_digits_in_place(as_text, self._prefixes).encode("latin-1")
        return f"<{len(data)} bytes hex {redact_card_data(ascii_masked.hex(), self._prefixes)}>"

    def redact(self, text: str) -> str:
        """`text` with card data and every registered secret masked."""
        text = self._mask_secrets(text)
        if "b'" in text or 'b"' in text:
            text = _BYTES_LITERAL.sub(self._mask_bytes_literal, text)
        return redact_card_data(text, self._prefixes)
