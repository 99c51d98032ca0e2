"""Field values of the ledger profile that no one message owns (ledger-iso8583.md).

Field 11: STANs (000001-999999, wrapping, never one still pending). Field 39: the profile's
response codes and what a cashier is told of a ledger decline. Field 38 of an offline
approval: posd's own `Y1` code.

Dates and times (7 MMDDhhmmss UTC, 12 hhmmss, 13 MMDD, 14 YYMM) are checked as calendar
values. Field 7 has no year, so reading it back as a moment takes a reference time: it is
placed in the year that puts it nearest, which is how the ledger's clock (the field 7 of
its 0810) is compared with posd's across a New Year. Field 48 is `key=value` pairs.
Errors name the field and never quote its content.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from protocols.iso8583_profile import LedgerFormatError, check_field

__all__ = [
    "AMOUNT_MAX",
    "DECLINE_REASONS",
    "FIELD7_FORMAT",
    "RESPONSE_CODES",
    "STAN_MAX",
    "STAN_MIN",
    "AdditionalData",
    "build_field48",
    "check_hhmmss",
    "check_mmdd",
    "check_mmddhhmmss",
    "check_yymm",
    "clock_skew_s",
    "decline_reason",
    "field7",
    "field7_moment",
    "local_fields",
    "next_stan",
    "offline_auth_code",
    "parse_field48",
]

AMOUNT_MAX: Final = 999_999_999_999
STAN_MIN: Final = 1
STAN_MAX: Final = 999_999

RESPONSE_CODES: Final[Mapping[str, str]] = {
    "00": "approved", "05": "do not honour", "12": "invalid transaction",
    "13": "invalid amount", "14": "invalid card or account", "30": "format error",
    "51": "insufficient funds", "54": "expired", "57": "not permitted to cardholder",
    "58": "not permitted to terminal", "61": "exceeds amount limit",
    "63": "security violation", "91": "ledger unavailable", "94": "duplicate transmission",
    "96": "system malfunction",
}  # fmt: skip
FIELD7_FORMAT: Final = "%m%d%H%M%S"
# The longest each month can be: MMDD carries no year, so 29 February is a date.
_MONTH_DAYS: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


# The reasons a cashier is shown for a ledger decline, by response code.
DECLINE_REASONS: Final[Mapping[str, str]] = {
    "05": "do_not_honour",
    "12": "ledger_error",
    "13": "invalid_amount",
    "14": "invalid_card",
    "30": "ledger_error",
    "51": "insufficient_funds",
    "54": "card_expired",
    "57": "not_permitted",
    "58": "not_permitted",
    "61": "exceeds_limit",
    "63": "ledger_security",
    "91": "ledger_unavailable",
    "94": "duplicate",
    "96": "ledger_unavailable",
}


def decline_reason(response_code: str) -> str | None:
    """None for 00; a code outside the table is a ledger_error (the ledger broke the profile)."""
    if response_code == "00":
        return None
    return DECLINE_REASONS.get(response_code, "ledger_error")


# ---- dates and times --------------------------------------------------------------------------


def _mmdd_ok(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= _MONTH_DAYS[month - 1]


def check_mmddhhmmss(value: str, name: str) -> None:
    month, day, hour, minute, second = (int(value[i : i + 2]) for i in range(0, 10, 2))
    if not (_mmdd_ok(month, day) and hour < 24 and minute < 60 and second < 60):
        raise LedgerFormatError(name, "is not a valid MMDDhhmmss")


def check_hhmmss(value: str, name: str) -> None:
    hour, minute, second = (int(value[i : i + 2]) for i in range(0, 6, 2))
    if not (hour < 24 and minute < 60 and second < 60):
        raise LedgerFormatError(name, "is not a valid hhmmss")


def check_mmdd(value: str, name: str) -> None:
    if not _mmdd_ok(int(value[:2]), int(value[2:])):
        raise LedgerFormatError(name, "is not a valid MMDD")


def check_yymm(value: str, name: str) -> None:
    if not 1 <= int(value[2:]) <= 12:
        raise LedgerFormatError(name, "is not a valid YYMM")


def field7_moment(field7: str, near: dt.datetime) -> dt.datetime:
    """Field 7 (MMDDhhmmss UTC) as an aware UTC datetime, in the year (of the one before,
    the same and the one after `near`'s) that puts it nearest `near`.

    Raises LedgerFormatError when the text is not a field 7, or names 29 February and no
    leap year is that near (a clock years wrong, whose distance cannot be told)."""
    if near.tzinfo is None or near.utcoffset() is None:
        raise ValueError("field 7 is read against an aware datetime")
    check_field(7, field7)
    check_mmddhhmmss(field7, "7")
    reference = near.astimezone(dt.UTC)
    candidates = []
    for year in (reference.year - 1, reference.year, reference.year + 1):
        try:
            parsed = dt.datetime.strptime(f"{year:04d}{field7}", "%Y" + FIELD7_FORMAT)
        except ValueError:
            continue  # 29 February of a common year
        candidates.append(parsed.replace(tzinfo=dt.UTC))
    if not candidates:
        raise LedgerFormatError("7", "names 29 February and no leap year is within a year")
    return min(candidates, key=lambda moment: abs(moment - reference))


def clock_skew_s(ledger_field7: str, host_now: dt.datetime) -> float:
    """How far the ledger's clock (its 0810's field 7) is ahead of `host_now`, in seconds
    (negative when it is behind). Field 7 has whole seconds, so the result is only good to
    about a second; see `field7_moment` for the year and for the errors."""
    return (field7_moment(ledger_field7, host_now) - host_now).total_seconds()


# ---- field 48 ---------------------------------------------------------------------------------

_BASE64_ALPHABET: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
)


@dataclass(frozen=True, repr=False)
class AdditionalData:
    """Field 48: `BP=<rate bps>;DA=<discount won>` for 혜택플러스, `QT=<QR text>` for QR."""

    benefit_rate_bps: int | None = None
    discount: int | None = None
    qr_token: str | None = None

    def __post_init__(self) -> None:
        if (self.benefit_rate_bps is None) != (self.discount is None):
            raise LedgerFormatError("48", "BP and DA go together")
        if self.benefit_rate_bps is not None and not 1 <= self.benefit_rate_bps <= 10_000:
            raise LedgerFormatError("48", "BP must be 1 to 10000 basis points")
        if self.discount is not None and not 0 < self.discount <= AMOUNT_MAX:
            raise LedgerFormatError("48", "DA must be a positive amount of won")
        if self.qr_token is not None:
            if not self.qr_token or not set(self.qr_token) <= _BASE64_ALPHABET:
                raise LedgerFormatError("48", "QT must be base64 text")
            try:
                base64.b64decode(self.qr_token, validate=True)
            except binascii.Error:
                raise LedgerFormatError("48", "QT must be base64 text") from None
        text = self.encode()
        if text is not None:
            check_field(48, text)

    def __repr__(self) -> str:
        token = None if self.qr_token is None else "<QR token>"
        return (
            f"AdditionalData(benefit_rate_bps={self.benefit_rate_bps!r}, "
            f"discount={self.discount!r}, qr_token={token})"
        )

    def encode(self) -> str | None:
        pairs: list[tuple[str, str]] = []
        if self.benefit_rate_bps is not None and self.discount is not None:
            pairs += [("BP", str(self.benefit_rate_bps)), ("DA", str(self.discount))]
        if self.qr_token is not None:
            pairs.append(("QT", self.qr_token))
        return build_field48(pairs) if pairs else None

    @classmethod
    def parse(cls, text: str | None) -> AdditionalData:
        if text is None:
            return cls()
        pairs = parse_field48(text)
        unknown = set(pairs) - {"BP", "DA", "QT"}
        if unknown:
            raise LedgerFormatError("48", f"unknown keys {sorted(unknown)}")

        def number(key: str) -> int | None:
            value = pairs.get(key)
            if value is None:
                return None
            if not value.isascii() or not value.isdigit() or len(value) > 12:
                raise LedgerFormatError("48", f"{key} must be digits")
            return int(value)

        return cls(number("BP"), number("DA"), pairs.get("QT"))


def build_field48(pairs: Iterable[tuple[str, str]]) -> str:
    """`key=value` pairs joined by `;` (keys are 2 capitals; values hold no `;`)."""
    parts = []
    for key, value in pairs:
        if len(key) != 2 or not key.isascii() or not key.isupper() or ";" in value:
            raise LedgerFormatError("48", "keys are 2 capital letters, values hold no ';'")
        parts.append(f"{key}={value}")
    return ";".join(parts)


def parse_field48(text: str) -> dict[str, str]:
    """The pairs of field 48 by key; a repeated key or a part without `=` is an error."""
    pairs: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 2 or not key.isascii() or not key.isupper():
            raise LedgerFormatError("48", "must be key=value pairs joined by ';'")
        if key in pairs:
            raise LedgerFormatError("48", f"key {key} repeated")
        pairs[key] = value
    return pairs


# ---- STAN, field 7, local time ------------------------------------------------------------


def next_stan(last: int | None, pending: Collection[int]) -> int:
    """The STAN after `last` (000001-999999, 1 after 999999), skipping those still pending."""
    if last is not None and not STAN_MIN <= last <= STAN_MAX:
        raise ValueError(f"STAN must be {STAN_MIN} to {STAN_MAX}")
    candidate = last
    for _ in range(STAN_MAX):
        candidate = STAN_MIN if candidate is None or candidate >= STAN_MAX else candidate + 1
        if candidate not in pending:
            return candidate
    raise ValueError("every STAN is pending")


def field7(at: dt.datetime) -> str:
    """Transmission date and time, MMDDhhmmss in UTC, from an aware datetime."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("field 7 needs an aware datetime")
    return at.astimezone(dt.UTC).strftime(FIELD7_FORMAT)


def local_fields(local: dt.datetime) -> tuple[str, str]:
    """Fields 12 (hhmmss) and 13 (MMDD) from the shop's local time."""
    return local.strftime("%H%M%S"), local.strftime("%m%d")


def offline_auth_code(serial: int) -> str:
    """posd's own approval code for an offline payment: `Y1` and 4 digits."""
    return f"Y1{serial % 10_000:04d}"
