"""EMV data element helpers: PAN (5A), expiry (5F24), track 2 equivalent (57), PAN masking.

Every error message here is about the shape of the data and never quotes a digit of it,
so an exception can be logged as is.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EmvError", "Track2", "expiry_from_5f24", "mask_pan", "pan_from_5a"]

# ISO/IEC 7812-1:2017 allows 8 to 19 digits.
PAN_MIN_DIGITS = 8
PAN_MAX_DIGITS = 19
# ISO/IEC 7813 track 2 data, without sentinels and LRC: the ISO 8583 field 35 bound.
TRACK2_MAX_CHARS = 37


class EmvError(ValueError):
    """An EMV data element that does not have the form its tag requires."""


def mask_pan(pan: str) -> str:
    """First 6 and last 4 at most (PCI DSS); less of a short number, so most stays hidden."""
    n = len(pan)
    if n >= 13:
        return pan[:6] + "*" * (n - 10) + pan[-4:]
    if n >= 8:
        return "*" * (n - 4) + pan[-4:]
    return "*" * n


def _bcd(value: bytes) -> str:
    """The nibbles as characters 0-9 and A-F, with trailing F padding removed."""
    return value.hex().upper().rstrip("F")


def _check_pan(pan: str, where: str) -> None:
    if not PAN_MIN_DIGITS <= len(pan) <= PAN_MAX_DIGITS:
        raise EmvError(
            f"{where}: PAN has {len(pan)} digits, {PAN_MIN_DIGITS} to {PAN_MAX_DIGITS} expected"
        )
    if not pan.isdecimal():
        raise EmvError(f"{where}: PAN has a nibble that is not a decimal digit")


def pan_from_5a(value: bytes) -> str:
    """The PAN of tag 5A: compressed numeric, padded at the end with F."""
    pan = _bcd(value)
    _check_pan(pan, "5A")
    return pan


def _check_month(month: str, where: str) -> None:
    if not 1 <= int(month) <= 12:
        raise EmvError(f"{where}: month is not 01 to 12")


def expiry_from_5f24(value: bytes) -> str:
    """The application expiration date of tag 5F24 as YYMMDD."""
    if len(value) != 3:
        raise EmvError(f"5F24: {len(value)} bytes, 3 expected (YYMMDD)")
    text = value.hex()
    if not text.isdecimal():
        raise EmvError("5F24: not BCD digits")
    _check_month(text[2:4], "5F24")
    if not 1 <= int(text[4:6]) <= 31:
        raise EmvError("5F24: day is not 01 to 31")
    return text


@dataclass(frozen=True, slots=True)
class Track2:
    """Track 2 equivalent data (tag 57): PAN, separator D, YYMM, service code, discretionary."""

    pan: str
    expiry: str
    service_code: str
    discretionary: str

    @classmethod
    def parse(cls, value_57: bytes) -> Track2:
        nibbles = _bcd(value_57)
        if len(nibbles) > TRACK2_MAX_CHARS:
            raise EmvError(f"57: {len(nibbles)} characters, at most {TRACK2_MAX_CHARS}")
        pan, sep, rest = nibbles.partition("D")
        if not sep:
            raise EmvError("57: no field separator D")
        _check_pan(pan, "57")
        if len(rest) < 7:
            raise EmvError("57: expiry and service code missing after the separator")
        if not rest.isdecimal():
            raise EmvError("57: a nibble after the separator is not a decimal digit")
        _check_month(rest[2:4], "57")
        return cls(pan=pan, expiry=rest[:4], service_code=rest[4:7], discretionary=rest[7:])

    def iso8583_field35(self) -> str:
        """The ISO 8583 field 35 (z) form, '=' as the separator as in ISO/IEC 7813."""
        return f"{self.pan}={self.expiry}{self.service_code}{self.discretionary}"

    def __repr__(self) -> str:
        return f"Track2(pan={mask_pan(self.pan)!r}, <expiry, service code, discretionary hidden>)"

    __str__ = __repr__
