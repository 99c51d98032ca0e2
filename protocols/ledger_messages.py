"""Typed ledger messages of ledger-iso8583.md: builders, encoders and parsers.

Requests posd sends: 0200 (purchase, refund), 0220/0221 (advice), 0400/0401 (reversal),
0800 (sign-on, echo, sign-off). Responses: 0210, 0230, 0410, 0810. Every instance is
checked when it is made, so a message that exists can be encoded. Time is passed in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, Final, Generic, Literal, TypeVar

from protocols.emv import mask_pan
from protocols.iso8583_profile import (
    MAC_FIELD,
    FieldValue,
    IsoMessage,
    LedgerFormatError,
    check_field,
    decode_message,
    encode_message,
)
from protocols.ledger_mac import MAC_LEN, verify_mac

__all__ = [
    "CURRENCY_KRW",
    "DECLINE_REASONS",
    "ECHO",
    "ENTRY_MODE_CODES",
    "PROCESSING_CODES",
    "RESPONSE_CODES",
    "SIGN_OFF",
    "SIGN_ON",
    "STAN_MAX",
    "STAN_MIN",
    "AdditionalData",
    "CardPayer",
    "Inbound",
    "LedgerFormatError",
    "LedgerRequest",
    "LedgerResponse",
    "NetworkRequest",
    "NetworkResponse",
    "OriginalData",
    "QrPayer",
    "build_advice",
    "build_field48",
    "build_purchase",
    "build_refund",
    "build_reversal",
    "decline_reason",
    "decode_request",
    "decode_response",
    "encode",
    "field7",
    "local_fields",
    "network_request",
    "next_stan",
    "offline_auth_code",
    "parse_field48",
    "repeat_of",
    "request_from_fields",
    "respond",
    "respond_network",
    "response_mti_for",
]

EntryMode = Literal["chip", "contactless", "magstripe", "qr"]
Kind = Literal["purchase", "refund"]
NetworkCode = Literal["001", "002", "301"]

ENTRY_MODE_CODES: Final[Mapping[str, str]] = {
    "chip": "051",
    "contactless": "071",
    "magstripe": "901",
    "qr": "031",
}
_ENTRY_MODE_NAMES: Final = {code: name for name, code in ENTRY_MODE_CODES.items()}
PROCESSING_CODES: Final[Mapping[str, str]] = {"purchase": "000000", "refund": "200000"}
_KINDS: Final = {code: kind for kind, code in PROCESSING_CODES.items()}
SIGN_ON: Final = "001"
SIGN_OFF: Final = "002"
ECHO: Final = "301"
NETWORK_CODES: Final = frozenset({SIGN_ON, SIGN_OFF, ECHO})
CURRENCY_KRW: Final = "410"
POS_CONDITION: Final = "00"
STAN_MIN: Final = 1
STAN_MAX: Final = 999_999
AMOUNT_MAX: Final = 999_999_999_999

RESPONSE_CODES: Final[Mapping[str, str]] = {
    "00": "approved",
    "05": "do not honour",
    "12": "invalid transaction",
    "13": "invalid amount",
    "14": "invalid card or account",
    "30": "format error",
    "51": "insufficient funds",
    "54": "expired",
    "57": "not permitted to cardholder",
    "58": "not permitted to terminal",
    "61": "exceeds amount limit",
    "63": "security violation",
    "91": "ledger unavailable",
    "94": "duplicate transmission",
    "96": "system malfunction",
}

# The reasons a cashier is shown for a ledger decline.
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
    return at.astimezone(dt.UTC).strftime("%m%d%H%M%S")


def local_fields(local: dt.datetime) -> tuple[str, str]:
    """Fields 12 (hhmmss) and 13 (MMDD) from the shop's local time."""
    return local.strftime("%H%M%S"), local.strftime("%m%d")


_OFFLINE_AUTH: Final = re.compile(r"Y1[0-9]{4}")


def offline_auth_code(serial: int) -> str:
    """posd's own approval code for an offline payment: `Y1` and 4 digits."""
    return f"Y1{serial % 10_000:04d}"


def _check_mmddhhmmss(value: str, name: str) -> None:
    month, day, hour, minute, second = (int(value[i : i + 2]) for i in range(0, 10, 2))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        raise LedgerFormatError(name, "is not a valid MMDDhhmmss")


def _check_hhmmss(value: str, name: str) -> None:
    hour, minute, second = (int(value[i : i + 2]) for i in range(0, 6, 2))
    if not (hour < 24 and minute < 60 and second < 60):
        raise LedgerFormatError(name, "is not a valid hhmmss")


def _check_mmdd(value: str, name: str) -> None:
    month, day = int(value[:2]), int(value[2:])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise LedgerFormatError(name, "is not a valid MMDD")


def _check_yymm(value: str, name: str) -> None:
    if not 1 <= int(value[2:]) <= 12:
        raise LedgerFormatError(name, "is not a valid YYMM")


def _stan_text(stan: int) -> str:
    if isinstance(stan, bool) or not STAN_MIN <= stan <= STAN_MAX:
        raise LedgerFormatError("11", f"STAN must be {STAN_MIN} to {STAN_MAX}")
    return f"{stan:06d}"


def _amount_text(amount: int) -> str:
    if isinstance(amount, bool) or not 0 < amount <= AMOUNT_MAX:
        raise LedgerFormatError("4", "amount must be 1 to 999999999999 won")
    return f"{amount:012d}"


# ---- field 90, field 48 --------------------------------------------------------------------


@dataclass(frozen=True)
class OriginalData:
    """Field 90: the original message's MTI, STAN and field 7."""

    mti: str
    stan: int
    transmission: str

    def __post_init__(self) -> None:
        self.field90()

    def field90(self) -> str:
        if len(self.mti) != 4 or not self.mti.isdigit():
            raise LedgerFormatError("90", "original MTI must be 4 digits")
        text = f"{self.mti}{_stan_text(self.stan)}{self.transmission}{'0' * 22}"
        check_field(90, text)
        _check_mmddhhmmss(self.transmission, "90")
        return text

    @classmethod
    def parse(cls, text: str) -> OriginalData:
        check_field(90, text)
        if text[20:] != "0" * 22:
            raise LedgerFormatError("90", "positions 21-42 must be zeros")
        stan = int(text[4:10])
        if stan < STAN_MIN:
            raise LedgerFormatError("90", "original STAN must be 000001 to 999999")
        return cls(mti=text[:4], stan=stan, transmission=text[10:20])

    @classmethod
    def of(cls, request: LedgerRequest) -> OriginalData:
        return cls(mti=request.mti, stan=request.stan, transmission=request.transmission)


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


# ---- requests --------------------------------------------------------------------------------

_REQUEST_MTIS: Final = frozenset({"0200", "0220", "0221", "0400", "0401"})
_RESPONSE_MTIS: Final = frozenset({"0210", "0230", "0410"})
_COMMON_REQUIRED: Final = frozenset({3, 4, 7, 11, 12, 13, 25, 41, 42, 49, 64})


@dataclass(frozen=True)
class _Rule:
    required: frozenset[int]
    optional: frozenset[int]


# Which fields each request carries, beyond the common ones. A refund names its original by
# 37 and 90, so it needs no card data (the journal keeps none once the ledger has a payment).
_REQUEST_RULES: Final[Mapping[tuple[str, str], _Rule]] = {
    ("0200", "purchase"): _Rule(frozenset({2, 22}), frozenset({14, 35, 48, 55})),
    ("0200", "refund"): _Rule(frozenset({37, 90}), frozenset({2, 14, 22, 48})),
    ("0220", "purchase"): _Rule(frozenset({2, 22, 38}), frozenset({14, 35, 37, 48, 55})),
    ("0400", "purchase"): _Rule(frozenset({90}), frozenset({2, 14, 22, 37, 38})),
    ("0400", "refund"): _Rule(frozenset({90}), frozenset({2, 14, 22, 37, 38})),
}


def _rule_for(mti: str, kind: str) -> _Rule:
    base = {"0221": "0220", "0401": "0400"}.get(mti, mti)
    rule = _REQUEST_RULES.get((base, kind))
    if rule is None:
        raise LedgerFormatError("3", f"a {kind} is not carried by MTI {mti}")
    return rule


def response_mti_for(request_mti: str) -> str:
    """The MTI that answers `request_mti` (0221 is answered by 0230, like 0220)."""
    mapping = {
        "0200": "0210",
        "0220": "0230",
        "0221": "0230",
        "0400": "0410",
        "0401": "0410",
        "0800": "0810",
    }
    try:
        return mapping[request_mti]
    except KeyError:
        raise LedgerFormatError("t", "not a request MTI of this profile") from None


def _check_present(present: Iterable[int], rule: _Rule, common: frozenset[int]) -> None:
    present = set(present)
    required = common | rule.required
    missing = required - present
    if missing:
        raise LedgerFormatError(str(min(missing)), "is required in this message")
    extra = present - required - rule.optional
    if extra:
        raise LedgerFormatError(str(min(extra)), "is not allowed in this message")


@dataclass(frozen=True, repr=False)
class LedgerRequest:
    """A financial request (0200, 0220, 0221, 0400, 0401). Its repr masks the PAN."""

    mti: str
    kind: Kind
    stan: int
    transmission: str  # field 7, MMDDhhmmss UTC
    local_time: str  # field 12, hhmmss
    local_date: str  # field 13, MMDD
    amount: int
    terminal_id: str
    merchant_id: str
    pan: str | None = None
    entry_mode: EntryMode | None = None
    expiry: str | None = None  # YYMM
    track2: str | None = None
    icc: bytes | None = None
    rrn: str | None = None
    auth_code: str | None = None
    additional: AdditionalData = field(default_factory=AdditionalData)
    original: OriginalData | None = None

    def __post_init__(self) -> None:
        self.fields()

    def __repr__(self) -> str:
        pan = None if self.pan is None else mask_pan(self.pan)
        return (
            f"LedgerRequest(mti={self.mti!r}, kind={self.kind!r}, stan={self.stan:06d}, "
            f"transmission={self.transmission!r}, amount={self.amount}, pan={pan!r}, "
            f"entry_mode={self.entry_mode!r}, rrn={self.rrn!r}, original={self.original!r})"
        )

    @property
    def response_mti(self) -> str:
        return response_mti_for(self.mti)

    @property
    def match_key(self) -> tuple[str, int]:
        """What its response is matched by: the answering MTI and the STAN."""
        return self.response_mti, self.stan

    @property
    def idempotency_key(self) -> tuple[str, int, str]:
        """Terminal, STAN and field 7: a repeat or resend with these gets the first answer."""
        return self.terminal_id, self.stan, self.transmission

    def fields(self) -> dict[int, FieldValue]:
        """The profile fields (without 64), checked against the message's rule."""
        if self.mti not in _REQUEST_MTIS:
            raise LedgerFormatError("t", "not a financial request MTI")
        if self.kind not in PROCESSING_CODES:
            raise LedgerFormatError("3", "processing code must be purchase or refund")
        values: dict[int, FieldValue | None] = {
            2: self.pan,
            3: PROCESSING_CODES[self.kind],
            4: _amount_text(self.amount),
            7: self.transmission,
            11: _stan_text(self.stan),
            12: self.local_time,
            13: self.local_date,
            14: self.expiry,
            22: None if self.entry_mode is None else _entry_code(self.entry_mode),
            25: POS_CONDITION,
            35: self.track2,
            37: self.rrn,
            38: self.auth_code,
            41: self.terminal_id,
            42: self.merchant_id,
            48: self.additional.encode(),
            49: CURRENCY_KRW,
            55: self.icc,
            90: None if self.original is None else self.original.field90(),
        }
        fields = {n: v for n, v in values.items() if v is not None}
        _check_present([*fields, MAC_FIELD], _rule_for(self.mti, self.kind), _COMMON_REQUIRED)
        for number, value in fields.items():
            check_field(number, value)
        _check_mmddhhmmss(self.transmission, "7")
        _check_hhmmss(self.local_time, "12")
        _check_mmdd(self.local_date, "13")
        if self.expiry is not None:
            _check_yymm(self.expiry, "14")
        if self.mti in ("0220", "0221") and not _OFFLINE_AUTH.fullmatch(self.auth_code or ""):
            raise LedgerFormatError("38", "an advice carries posd's own code, Y1 and 4 digits")
        if self.entry_mode == "qr" and (self.track2 or self.icc or self.expiry):
            raise LedgerFormatError("22", "a QR payment carries no card data")
        return fields


def _entry_code(mode: str) -> str:
    try:
        return ENTRY_MODE_CODES[mode]
    except KeyError:
        raise LedgerFormatError("22", "unknown entry mode") from None


@dataclass(frozen=True, repr=False)
class CardPayer:
    """The card data of a purchase, from the reader."""

    entry_mode: Literal["chip", "contactless", "magstripe"]
    pan: str
    expiry: str | None = None
    track2: str | None = None
    icc: bytes | None = None

    def __repr__(self) -> str:
        return f"CardPayer(entry_mode={self.entry_mode!r}, pan={mask_pan(self.pan)!r})"


@dataclass(frozen=True, repr=False)
class QrPayer:
    """A QR payment: the account number and the QR text (sent in field 48 QT)."""

    account: str
    token: str

    def __repr__(self) -> str:
        return f"QrPayer(account={mask_pan(self.account)!r})"


def build_purchase(
    *,
    stan: int,
    transmitted_at: dt.datetime,
    local_now: dt.datetime,
    amount: int,
    terminal_id: str,
    merchant_id: str,
    payer: CardPayer | QrPayer,
    benefit_rate_bps: int | None = None,
    discount: int | None = None,
) -> LedgerRequest:
    """A 0200 purchase for `amount` (what is charged, after any 혜택플러스 discount)."""
    local_time, local_date = local_fields(local_now)
    if not discount:
        benefit_rate_bps = discount = None
    if isinstance(payer, QrPayer):
        return LedgerRequest(
            "0200",
            "purchase",
            stan=stan,
            transmission=field7(transmitted_at),
            local_time=local_time,
            local_date=local_date,
            amount=amount,
            terminal_id=terminal_id,
            merchant_id=merchant_id,
            pan=payer.account,
            entry_mode="qr",
            additional=AdditionalData(benefit_rate_bps, discount, payer.token),
        )
    magstripe = payer.entry_mode == "magstripe"
    return LedgerRequest(
        "0200",
        "purchase",
        stan=stan,
        transmission=field7(transmitted_at),
        local_time=local_time,
        local_date=local_date,
        amount=amount,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        pan=payer.pan,
        entry_mode=payer.entry_mode,
        expiry=payer.expiry,
        # Chip and contactless send the ICC data; track 2 is for magstripe only.
        track2=payer.track2 if magstripe else None,
        icc=None if magstripe else payer.icc,
        additional=AdditionalData(benefit_rate_bps, discount, None),
    )


def build_refund(
    *,
    stan: int,
    transmitted_at: dt.datetime,
    local_now: dt.datetime,
    amount: int,
    terminal_id: str,
    merchant_id: str,
    original: OriginalData,
    rrn: str,
    pan: str | None = None,
) -> LedgerRequest:
    """A 0200 refund (3=200000) of the payment named by its RRN (37) and field 90."""
    local_time, local_date = local_fields(local_now)
    return LedgerRequest(
        mti="0200",
        kind="refund",
        stan=stan,
        transmission=field7(transmitted_at),
        local_time=local_time,
        local_date=local_date,
        amount=amount,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        pan=pan,
        rrn=rrn,
        original=original,
    )


def build_advice(purchase: LedgerRequest, auth_code: str) -> LedgerRequest:
    """The 0220 of a purchase posd approved offline: the unsent 0200 with its approval code.

    The 0200 never left (offline approval happens only then), so its STAN and field 7
    become the advice's.
    """
    if purchase.mti != "0200" or purchase.kind != "purchase":
        raise ValueError("only an unsent 0200 purchase becomes an advice")
    return replace(purchase, mti="0220", auth_code=auth_code)


def build_reversal(
    original: LedgerRequest,
    *,
    stan: int,
    transmitted_at: dt.datetime,
    local_now: dt.datetime,
    rrn: str | None = None,
    auth_code: str | None = None,
) -> LedgerRequest:
    """The 0400 reversing `original` (a 0200 or 0220): same amount, field 90 naming it.

    It names the account but carries no track 2 or ICC data: the ledger finds the payment
    by field 90 and needs no card data to undo it.
    """
    local_time, local_date = local_fields(local_now)
    return LedgerRequest(
        mti="0400",
        kind=original.kind,
        stan=stan,
        transmission=field7(transmitted_at),
        local_time=local_time,
        local_date=local_date,
        amount=original.amount,
        terminal_id=original.terminal_id,
        merchant_id=original.merchant_id,
        pan=original.pan,
        entry_mode=original.entry_mode,
        expiry=original.expiry,
        rrn=rrn if rrn is not None else original.rrn,
        auth_code=auth_code,
        original=OriginalData.of(original),
    )


def repeat_of(request: LedgerRequest) -> LedgerRequest:
    """The repeat of an advice or reversal: every field kept, only the MTI's last digit."""
    mti = {"0220": "0221", "0221": "0221", "0400": "0401", "0401": "0401"}.get(request.mti)
    if mti is None:
        raise ValueError("only advices and reversals are repeated; a 0200 is never resent")
    return replace(request, mti=mti)


# ---- responses --------------------------------------------------------------------------------

_RESPONSE_REQUIRED: Final = frozenset({7, 11, 39, 41, 64})
_RESPONSE_RULE: Final = _Rule(frozenset(), frozenset({3, 4, 12, 13, 37, 38, 42, 49}))


@dataclass(frozen=True)
class LedgerResponse:
    """A financial response (0210, 0230, 0410)."""

    mti: str
    stan: int
    transmission: str
    response_code: str
    terminal_id: str
    processing_code: str | None = None
    amount: int | None = None
    local_time: str | None = None
    local_date: str | None = None
    rrn: str | None = None
    auth_code: str | None = None
    merchant_id: str | None = None

    def __post_init__(self) -> None:
        self.fields()

    @property
    def approved(self) -> bool:
        return self.response_code == "00"

    @property
    def decline_reason(self) -> str | None:
        return decline_reason(self.response_code)

    @property
    def meaning(self) -> str:
        return RESPONSE_CODES.get(self.response_code, "unknown response code")

    @property
    def match_key(self) -> tuple[str, int]:
        return self.mti, self.stan

    def fields(self) -> dict[int, FieldValue]:
        if self.mti not in _RESPONSE_MTIS:
            raise LedgerFormatError("t", "not a financial response MTI")
        values: dict[int, FieldValue | None] = {
            3: self.processing_code,
            4: None if self.amount is None else _amount_text(self.amount),
            7: self.transmission,
            11: _stan_text(self.stan),
            12: self.local_time,
            13: self.local_date,
            37: self.rrn,
            38: self.auth_code,
            39: self.response_code,
            41: self.terminal_id,
            42: self.merchant_id,
            49: None if self.amount is None else CURRENCY_KRW,
        }
        fields = {n: v for n, v in values.items() if v is not None}
        _check_present([*fields, MAC_FIELD], _RESPONSE_RULE, _RESPONSE_REQUIRED)
        for number, value in fields.items():
            check_field(number, value)
        if self.processing_code is not None and self.processing_code not in _KINDS:
            raise LedgerFormatError("3", "processing code must be 000000 or 200000")
        _check_mmddhhmmss(self.transmission, "7")
        return fields


def respond(
    request: LedgerRequest,
    response_code: str,
    *,
    rrn: str | None = None,
    auth_code: str | None = None,
) -> LedgerResponse:
    """The ledger's answer to `request`, echoing its identifying fields."""
    return LedgerResponse(
        mti=request.response_mti,
        stan=request.stan,
        transmission=request.transmission,
        response_code=response_code,
        terminal_id=request.terminal_id,
        processing_code=PROCESSING_CODES[request.kind],
        amount=request.amount,
        local_time=request.local_time,
        local_date=request.local_date,
        rrn=rrn,
        auth_code=auth_code,
        merchant_id=request.merchant_id,
    )


# ---- network management ------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkRequest:
    """0800: sign-on (001), sign-off (002) or echo (301). Carries no MAC."""

    code: NetworkCode
    stan: int
    transmission: str
    terminal_id: str

    mti: ClassVar[str] = "0800"

    def __post_init__(self) -> None:
        self.fields()

    @property
    def match_key(self) -> tuple[str, int]:
        return "0810", self.stan

    def fields(self) -> dict[int, FieldValue]:
        if self.code not in NETWORK_CODES:
            raise LedgerFormatError("70", "must be 001, 002 or 301")
        fields: dict[int, FieldValue] = {
            7: self.transmission,
            11: _stan_text(self.stan),
            41: self.terminal_id,
            70: self.code,
        }
        for number, value in fields.items():
            check_field(number, value)
        _check_mmddhhmmss(self.transmission, "7")
        return fields


@dataclass(frozen=True)
class NetworkResponse:
    """0810: the answer to an 0800."""

    code: NetworkCode
    stan: int
    transmission: str
    terminal_id: str
    response_code: str

    mti: ClassVar[str] = "0810"

    def __post_init__(self) -> None:
        self.fields()

    @property
    def approved(self) -> bool:
        return self.response_code == "00"

    @property
    def match_key(self) -> tuple[str, int]:
        return "0810", self.stan

    def fields(self) -> dict[int, FieldValue]:
        fields = NetworkRequest(self.code, self.stan, self.transmission, self.terminal_id).fields()
        check_field(39, self.response_code)
        fields[39] = self.response_code
        return dict(sorted(fields.items()))


def network_request(
    code: NetworkCode, *, stan: int, transmitted_at: dt.datetime, terminal_id: str
) -> NetworkRequest:
    return NetworkRequest(code, stan, field7(transmitted_at), terminal_id)


def respond_network(request: NetworkRequest, response_code: str = "00") -> NetworkResponse:
    return NetworkResponse(
        request.code, request.stan, request.transmission, request.terminal_id, response_code
    )


# ---- encode and decode -------------------------------------------------------------------------

Message = LedgerRequest | LedgerResponse | NetworkRequest | NetworkResponse
M = TypeVar("M")


@dataclass(frozen=True)
class Inbound(Generic[M]):
    """A decoded message and whether its MAC was right (True for 0800/0810, which have none)."""

    message: M
    mac_valid: bool


def encode(message: Message, mac_key: bytes) -> bytes:
    """The message's bytes (without length prefix); financial messages get their MAC."""
    financial = isinstance(message, LedgerRequest | LedgerResponse)
    return encode_message(message.mti, message.fields(), mac_key if financial else None)


def _mac_valid(iso: IsoMessage, mac_key: bytes) -> bool:
    mac = iso.binary(MAC_FIELD)
    if mac is None or len(mac) != MAC_LEN:
        raise LedgerFormatError("64", "a MAC is required in this message", mti=iso.mti)
    return verify_mac(mac_key, iso.mac_input, mac)


def _opt_int(iso: IsoMessage, number: int) -> int | None:
    text = iso.text(number)
    return None if text is None else int(text)


def _reraise_with_ids(exc: LedgerFormatError, iso: IsoMessage) -> LedgerFormatError:
    stan_text = iso.fields.get(11)
    stan = int(stan_text) if isinstance(stan_text, str) and stan_text.isdigit() else None
    return LedgerFormatError(exc.field, exc.problem, mti=iso.mti, stan=stan)


N = TypeVar("N")
F = TypeVar("F")


def _decode_inbound(
    data: bytes,
    mac_key: bytes,
    network_mti: str,
    parse_network: Callable[[IsoMessage], N],
    financial_mtis: Collection[str],
    parse_financial: Callable[[IsoMessage], F],
    side: str,
) -> Inbound[N | F]:
    """Decode one side's message: the network MTI has no MAC, a financial one must carry one."""
    iso = decode_message(data)
    try:
        if iso.mti == network_mti:
            return Inbound(parse_network(iso), True)
        if iso.mti not in financial_mtis:
            raise LedgerFormatError("t", f"not a {side} MTI of this profile")
        mac_valid = _mac_valid(iso, mac_key)
        return Inbound(parse_financial(iso), mac_valid)
    except LedgerFormatError as exc:
        raise _reraise_with_ids(exc, iso) from None


def decode_request(data: bytes, mac_key: bytes) -> Inbound[LedgerRequest | NetworkRequest]:
    """Parse a request (the ledger's side); raises LedgerFormatError naming the field."""
    return _decode_inbound(
        data, mac_key, "0800", _parse_network_request, _REQUEST_MTIS, _parse_request, "request"
    )


def request_from_fields(mti: str, fields: Mapping[int, FieldValue]) -> LedgerRequest:
    """A financial request from its field values (as `LedgerRequest.fields()` gave them, e.g.
    kept in the store-and-forward queue), checked as a received one would be; 64 is ignored."""
    iso = IsoMessage(mti, {n: v for n, v in fields.items() if n != MAC_FIELD})
    try:
        if mti not in _REQUEST_MTIS:
            raise LedgerFormatError("t", "not a financial request MTI")
        for number, value in iso.fields.items():
            check_field(number, value)
        return _parse_request(iso)
    except LedgerFormatError as exc:
        raise _reraise_with_ids(exc, iso) from None


def _network_code(iso: IsoMessage, required: frozenset[int]) -> str:
    """Field 70 of an 0800/0810 whose required fields are all present."""
    _check_present(iso.fields, _Rule(frozenset(), frozenset()), required)
    code = iso.text(70)
    if code not in NETWORK_CODES:
        raise LedgerFormatError("70", "must be 001, 002 or 301")
    return code


def _parse_network_request(iso: IsoMessage) -> NetworkRequest:
    code = _network_code(iso, frozenset({7, 11, 41, 70}))
    return NetworkRequest(
        code,  # type: ignore[arg-type]
        int(iso.text(11) or "0"),
        iso.text(7) or "",
        iso.text(41) or "",
    )


def _parse_request(iso: IsoMessage) -> LedgerRequest:
    kind = _KINDS.get(iso.text(3) or "")
    if kind is None:
        raise LedgerFormatError("3", "processing code must be 000000 or 200000")
    # The MAC's presence is the decoder's concern; fields stored without it parse here too.
    _check_present({*iso.fields, MAC_FIELD}, _rule_for(iso.mti, kind), _COMMON_REQUIRED)
    if iso.text(25) != POS_CONDITION:
        raise LedgerFormatError("25", "POS condition code must be 00")
    if iso.text(49) != CURRENCY_KRW:
        raise LedgerFormatError("49", "currency must be 410 (KRW)")
    entry_code = iso.text(22)
    entry_mode = None
    if entry_code is not None:
        entry_mode = _ENTRY_MODE_NAMES.get(entry_code)
        if entry_mode is None:
            raise LedgerFormatError("22", "unknown POS entry mode")
    original_text = iso.text(90)
    return LedgerRequest(
        mti=iso.mti,
        kind=kind,  # type: ignore[arg-type]
        stan=int(iso.text(11) or "0"),
        transmission=iso.text(7) or "",
        local_time=iso.text(12) or "",
        local_date=iso.text(13) or "",
        amount=int(iso.text(4) or "0"),
        terminal_id=iso.text(41) or "",
        merchant_id=iso.text(42) or "",
        pan=iso.text(2),
        entry_mode=entry_mode,  # type: ignore[arg-type]
        expiry=iso.text(14),
        track2=iso.text(35),
        icc=iso.binary(55),
        rrn=iso.text(37),
        auth_code=iso.text(38),
        additional=AdditionalData.parse(iso.text(48)),
        original=None if original_text is None else OriginalData.parse(original_text),
    )


def decode_response(data: bytes, mac_key: bytes) -> Inbound[LedgerResponse | NetworkResponse]:
    """Parse a response (posd's side); raises LedgerFormatError naming the field."""
    return _decode_inbound(
        data, mac_key, "0810", _parse_network_response, _RESPONSE_MTIS, _parse_response, "response"
    )


def _parse_network_response(iso: IsoMessage) -> NetworkResponse:
    code = _network_code(iso, frozenset({7, 11, 39, 41, 70}))
    return NetworkResponse(
        code,  # type: ignore[arg-type]
        int(iso.text(11) or "0"),
        iso.text(7) or "",
        iso.text(41) or "",
        iso.text(39) or "",
    )


def _parse_response(iso: IsoMessage) -> LedgerResponse:
    _check_present(iso.fields, _RESPONSE_RULE, _RESPONSE_REQUIRED)
    if iso.text(49) not in (None, CURRENCY_KRW):
        raise LedgerFormatError("49", "currency must be 410 (KRW)")
    if (4 in iso.fields) != (49 in iso.fields):
        raise LedgerFormatError("49", "an amount comes with its currency")
    return LedgerResponse(
        mti=iso.mti,
        stan=int(iso.text(11) or "0"),
        transmission=iso.text(7) or "",
        response_code=iso.text(39) or "",
        terminal_id=iso.text(41) or "",
        processing_code=iso.text(3),
        amount=_opt_int(iso, 4),
        local_time=iso.text(12),
        local_date=iso.text(13),
        rrn=iso.text(37),
        auth_code=iso.text(38),
        merchant_id=iso.text(42),
    )
