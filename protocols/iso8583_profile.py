"""The 서로e음 ledger's ISO 8583:1987 profile: layout, field formats, encode and decode.

pyiso8583 does the byte layout (MTI, bitmaps, length prefixes); this module holds the
profile's spec dict and adds what pyiso8583 leaves to its caller: the character class
of each field, the refusal of fields outside the profile, canonical ASCII lengths, and
the MAC of profile 2. Errors never carry field contents, since fields 2, 35, 48 and 55
hold card data and QR tokens.

MAC placement (profile 2): the MAC is always the message's last field and covers every
byte before it, so fields 70 and 90 are authenticated too. It is field 64 in a message
with no field 65-127, field 128 in one with any (field 64 then absent). Profile 1 put it
in 64 with 70 or 90 after it; such a message, and every other misplaced MAC, is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import iso8583

from protocols.ledger_mac import MAC_LEN, compute_mac

FieldValue = str | bytes
CharClass = Literal["n", "an", "ans", "z", "b"]


class LedgerFormatError(ValueError):
    """A message that does not follow the profile; `field` names where ("t", "p", "2", ...).

    `mti` and `stan` are set when they could be read, so a server can still answer 30.
    """

    def __init__(
        self, field: str, problem: str, *, mti: str | None = None, stan: int | None = None
    ) -> None:
        super().__init__(f"field {field}: {problem}")
        self.field = field
        self.problem = problem
        self.mti = mti
        self.stan = stan


@dataclass(frozen=True)
class FieldFormat:
    char_class: CharClass
    length_digits: int  # 0 fixed, 2 LLVAR, 3 LLLVAR
    max_len: int  # the length for fixed fields; for b, in bytes


FIELDS: Final[Mapping[int, FieldFormat]] = {
    2: FieldFormat("n", 2, 19),
    3: FieldFormat("n", 0, 6),
    4: FieldFormat("n", 0, 12),
    7: FieldFormat("n", 0, 10),
    11: FieldFormat("n", 0, 6),
    12: FieldFormat("n", 0, 6),
    13: FieldFormat("n", 0, 4),
    14: FieldFormat("n", 0, 4),
    22: FieldFormat("n", 0, 3),
    25: FieldFormat("n", 0, 2),
    35: FieldFormat("z", 2, 37),
    37: FieldFormat("an", 0, 12),
    38: FieldFormat("an", 0, 6),
    39: FieldFormat("an", 0, 2),
    41: FieldFormat("ans", 0, 8),
    42: FieldFormat("ans", 0, 15),
    48: FieldFormat("ans", 3, 999),
    49: FieldFormat("n", 0, 3),
    55: FieldFormat("b", 3, 255),
    64: FieldFormat("b", 0, MAC_LEN),
    70: FieldFormat("n", 0, 3),
    90: FieldFormat("n", 0, 42),
    128: FieldFormat("b", 0, MAC_LEN),
}

PRIMARY_MAC: Final = 64
SECONDARY_MAC: Final = 128
MAC_FIELDS: Final = frozenset({PRIMARY_MAC, SECONDARY_MAC})


def mac_field_for(numbers: Iterable[int]) -> int:
    """Where the MAC of a message with fields `numbers` goes: 128 if any is 65-127, else 64."""
    return SECONDARY_MAC if any(64 < n < SECONDARY_MAC for n in numbers) else PRIMARY_MAC


_CLASS_PATTERNS: Final[Mapping[str, re.Pattern[str]]] = {
    "n": re.compile(r"[0-9]*"),
    "an": re.compile(r"[0-9A-Za-z]*"),
    "ans": re.compile(r"[\x20-\x7e]*"),
    "z": re.compile(r"[0-9D=]*"),
}
_CLASS_NAMES: Final[Mapping[str, str]] = {
    "n": "digits",
    "an": "letters and digits",
    "ans": "printable ASCII",
    "z": "digits with 'D' or '='",
}


def _field_spec(fmt: FieldFormat) -> dict[str, Any]:
    return {
        "data_enc": "b" if fmt.char_class == "b" else "ascii",
        "len_enc": "ascii",
        "len_type": fmt.length_digits,
        "max_len": fmt.max_len,
    }


# The pyiso8583 spec dict for exactly this profile: no header, ASCII MTI, binary bitmaps,
# ASCII length prefixes, binary field 55 (length counts bytes), 64 and 128.
SPEC: Final[Mapping[str, Mapping[str, Any]]] = {
    "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0},
    "t": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 4},
    "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8},
    "1": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8},
    **{str(n): _field_spec(fmt) for n, fmt in FIELDS.items()},
}


@dataclass(frozen=True, repr=False)
class IsoMessage:
    """A decoded message: MTI and field values (str, or bytes for 55, 64 and 128).

    `mac_input` is every byte before the MAC (empty when the message has no MAC).
    """

    mti: str
    fields: Mapping[int, FieldValue]
    mac_input: bytes = b""

    def __repr__(self) -> str:
        # Field values may be card data: show which fields are present, never what they hold.
        return f"IsoMessage(mti={self.mti!r}, fields={sorted(self.fields)})"

    @property
    def mac_field(self) -> int:
        """The field this message's MAC is (or would be) in."""
        return mac_field_for(self.fields)

    @property
    def mac(self) -> bytes | None:
        return self.binary(self.mac_field)

    def text(self, number: int) -> str | None:
        value = self.fields.get(number)
        if value is None:
            return None
        if isinstance(value, bytes):
            raise LedgerFormatError(str(number), "is binary, expected text")
        return value

    def binary(self, number: int) -> bytes | None:
        value = self.fields.get(number)
        if value is None:
            return None
        if isinstance(value, str):
            raise LedgerFormatError(str(number), "is text, expected binary")
        return value


def check_field(number: int, value: FieldValue) -> None:
    """Raise LedgerFormatError unless `value` is a valid field `number` of the profile."""
    fmt = FIELDS.get(number)
    if fmt is None:
        raise LedgerFormatError(str(number), "is not a field of this profile")
    if fmt.char_class == "b":
        if not isinstance(value, bytes):
            raise LedgerFormatError(str(number), "must be binary")
    elif not isinstance(value, str):
        raise LedgerFormatError(str(number), "must be text")
    elif not _CLASS_PATTERNS[fmt.char_class].fullmatch(value):
        raise LedgerFormatError(str(number), f"must be {_CLASS_NAMES[fmt.char_class]}")
    size = len(value)
    if fmt.length_digits == 0:
        if size != fmt.max_len:
            raise LedgerFormatError(str(number), f"must be {fmt.max_len} long, is {size}")
    elif not 0 < size <= fmt.max_len:
        raise LedgerFormatError(str(number), f"must be 1 to {fmt.max_len} long, is {size}")


def _check_mti(mti: str) -> None:
    if len(mti) != 4 or not mti.isascii() or not mti.isdigit():
        raise LedgerFormatError("t", "MTI must be 4 ASCII digits")


def encode_message(
    mti: str, fields: Mapping[int, FieldValue], mac_key: bytes | None = None
) -> bytes:
    """Encode a message; with `mac_key`, the MAC is added as its last field (64 or 128),
    computed over every byte before it."""
    _check_mti(mti)
    given = MAC_FIELDS & set(fields)
    if given:
        raise LedgerFormatError(str(min(given)), "is computed from mac_key, not given")
    for number, value in fields.items():
        check_field(number, value)
    doc: dict[str, str] = {"t": mti}
    for number, value in fields.items():
        doc[str(number)] = value.hex().upper() if isinstance(value, bytes) else value
    if mac_key is not None:
        doc[str(mac_field_for(fields))] = "00" * MAC_LEN
    try:
        raw, _ = iso8583.encode(doc, SPEC)
    except iso8583.EncodeError as exc:
        # exc.msg describes lengths only; the data stays out of the message.
        raise LedgerFormatError(str(exc.field), exc.msg) from None
    if mac_key is None:
        return bytes(raw)
    # The MAC field is the highest-numbered field present, so it ends the message.
    raw[-MAC_LEN:] = compute_mac(mac_key, bytes(raw[:-MAC_LEN]))
    return bytes(raw)


def _layout(data: bytes) -> tuple[str, list[int], int]:
    """The MTI, the field numbers the bitmaps name, and where field data starts."""
    if len(data) < 4:
        raise LedgerFormatError("t", "message shorter than its MTI")
    mti_bytes = data[:4]
    if not mti_bytes.isdigit():
        raise LedgerFormatError("t", "MTI must be 4 ASCII digits")
    mti = mti_bytes.decode("ascii")
    primary = data[4:12]
    if len(primary) != 8:
        raise LedgerFormatError("p", "primary bitmap truncated", mti=mti)
    numbers = [n for n in range(1, 65) if primary[(n - 1) // 8] & (0x80 >> ((n - 1) % 8))]
    if not numbers or numbers[0] != 1:
        return mti, numbers, 12
    secondary = data[12:20]
    if len(secondary) != 8:
        raise LedgerFormatError("1", "secondary bitmap truncated", mti=mti)
    extra = [64 + n for n in range(1, 65) if secondary[(n - 1) // 8] & (0x80 >> ((n - 1) % 8))]
    if not extra:
        raise LedgerFormatError("1", "secondary bitmap present but empty", mti=mti)
    return mti, numbers[1:] + extra, 20


def _positional_stan(data: bytes, numbers: list[int], offset: int) -> int | None:
    """Field 11 read where it must sit, before anything else is decoded.

    The fields that may precede it (2 LLVAR, 3, 4 and 7 fixed) need no decoder to be
    skipped, so a message broken anywhere after them (truncated, a bad later field, bytes
    after the last field) still names its STAN and a client can fail the waiting request
    at once instead of letting it run into its timeout."""
    for number in numbers:
        fmt = FIELDS.get(number)
        if number > 11 or fmt is None:
            return None
        if number == 11:
            text = data[offset : offset + fmt.max_len]
            return int(text) if len(text) == fmt.max_len and text.isdigit() else None
        length = fmt.max_len
        if fmt.length_digits:
            prefix = data[offset : offset + fmt.length_digits]
            if len(prefix) != fmt.length_digits or not prefix.isdigit():
                return None
            length = int(prefix)
            offset += fmt.length_digits
        offset += length
    return None


def decode_message(data: bytes) -> IsoMessage:
    """Decode one message (without its length prefix); every deviation is a LedgerFormatError,
    carrying the MTI and STAN whenever the bytes let them be read."""
    mti, numbers, start = _layout(data)
    stan = _positional_stan(data, numbers, start)
    for number in numbers:
        if number not in FIELDS:
            raise LedgerFormatError(
                str(number), "is not a field of this profile", mti=mti, stan=stan
            )
    mac_field = mac_field_for(numbers)
    misplaced = MAC_FIELDS & set(numbers) - {mac_field}
    if misplaced:
        where = "has fields 65-127" if mac_field == SECONDARY_MAC else "has no field 65-127"
        raise LedgerFormatError(
            str(min(misplaced)),
            f"is not the MAC of a message that {where} (profile 2: the MAC is {mac_field})",
            mti=mti,
            stan=stan,
        )
    try:
        decoded, encoded = iso8583.decode(data, SPEC)
    except iso8583.DecodeError as exc:
        raise LedgerFormatError(str(exc.field), exc.msg, mti=mti, stan=stan) from None
    fields: dict[int, FieldValue] = {}
    for number in numbers:
        key = str(number)
        length_prefix = encoded[key]["len"]
        if length_prefix and not length_prefix.isdigit():
            raise LedgerFormatError(key, "length is not ASCII digits", mti=mti, stan=stan)
        value: FieldValue = (
            encoded[key]["data"] if FIELDS[number].char_class == "b" else decoded[key]
        )
        try:
            check_field(number, value)
        except LedgerFormatError as exc:
            raise LedgerFormatError(key, exc.problem, mti=mti, stan=stan) from None
        fields[number] = value
    # pyiso8583 refuses bytes after the last field, and the MAC field is the last one.
    mac_input = data[:-MAC_LEN] if mac_field in fields else b""
    return IsoMessage(mti=mti, fields=fields, mac_input=mac_input)
