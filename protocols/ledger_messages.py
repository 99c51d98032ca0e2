"""Typed ledger messages of ledger-iso8583.md (profile 2): builders, encoders and parsers.

Requests posd sends: 0200 (purchase, refund), 0220/0221 (advice), 0400/0401 (reversal),
0800 (sign-on, echo, sign-off). Responses: 0210, 0230, 0410, 0810. Every instance is
checked when it is made, so a message that exists can be encoded. Time is passed in.
A request carries exactly the fields of its rule; an answer echoes its request and may
carry any field of the profile (`protocols.ledger_layout`; `ledger_answers.check_answer`
tells one that contradicts its request).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final, Literal

from protocols import ledger_fields, ledger_icc
from protocols import ledger_layout as layout
from protocols.emv import mask_pan
from protocols.iso8583_profile import (
    MAC_FIELDS,
    FieldValue,
    IsoMessage,
    LedgerFormatError,
    check_field,
    encode_message,
)
from protocols.ledger_codec import Inbound, decode_inbound, with_ids
from protocols.ledger_fields import (
    AMOUNT_MAX,
    STAN_MAX,
    STAN_MIN,
    AdditionalData,
    check_mmddhhmmss,
    decline_reason,
    field7,
    local_fields,
)
from protocols.ledger_layout import Echoed

__all__ = [
    "ECHO",
    "ENTRY_MODE_CODES",
    "SIGN_OFF",
    "SIGN_ON",
    "CardPayer",
    "LedgerFormatError",
    "LedgerRequest",
    "LedgerResponse",
    "NetworkCode",
    "NetworkRequest",
    "NetworkResponse",
    "OriginalData",
    "QrPayer",
    "ReversalTarget",
    "build_advice",
    "build_purchase",
    "build_refund",
    "build_reversal",
    "decode_request",
    "decode_response",
    "encode",
    "network_request",
    "repeat_of",
    "request_from_fields",
    "respond",
    "respond_network",
]

EntryMode = Literal["chip", "contactless", "magstripe", "qr"]
Kind = Literal["purchase", "refund"]
NetworkCode = Literal["001", "002", "301"]

ENTRY_MODE_CODES: Final[Mapping[str, str]] = {
    "chip": "051", "contactless": "071", "magstripe": "901", "qr": "031",
}  # fmt: skip
_ENTRY_MODE_NAMES: Final = {code: name for name, code in ENTRY_MODE_CODES.items()}
SIGN_ON: Final = "001"
SIGN_OFF: Final = "002"
ECHO: Final = "301"
NETWORK_CODES: Final = frozenset({SIGN_ON, SIGN_OFF, ECHO})


def _sent(stan: int, transmitted_at: dt.datetime, local_now: dt.datetime) -> dict[str, Any]:
    """The STAN and times of a request sent now: 11, 7 (UTC), 12 and 13 (the shop's)."""
    local_time, local_date = local_fields(local_now)
    transmission = field7(transmitted_at)
    return dict(stan=stan, transmission=transmission, local_time=local_time, local_date=local_date)


def _stan_text(stan: int) -> str:
    if isinstance(stan, bool) or not STAN_MIN <= stan <= STAN_MAX:
        raise LedgerFormatError("11", f"STAN must be {STAN_MIN} to {STAN_MAX}")
    return f"{stan:06d}"


def _amount_text(amount: int) -> str:
    if isinstance(amount, bool) or not 0 < amount <= AMOUNT_MAX:
        raise LedgerFormatError("4", "amount must be 1 to 999999999999 won")
    return f"{amount:012d}"


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
        check_mmddhhmmss(self.transmission, "90")
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


# ---- requests --------------------------------------------------------------------------------


# The fields a request holds as they are, by the attribute that holds each.
_REQUEST_AS_IS: Final[Mapping[int, str]] = {
    2: "pan", 7: "transmission", 12: "local_time", 13: "local_date", 14: "expiry",
    35: "track2", 37: "rrn", 38: "auth_code", 41: "terminal_id", 42: "merchant_id", 55: "icc",
}  # fmt: skip


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
        return layout.response_mti_for(self.mti)

    @property
    def match_key(self) -> tuple[str, int]:
        """What its response is matched by: the answering MTI and the STAN."""
        return self.response_mti, self.stan

    @property
    def idempotency_key(self) -> tuple[str, int, str]:
        """Terminal, STAN and field 7: a repeat or resend with these gets the first answer."""
        return self.terminal_id, self.stan, self.transmission

    def fields(self) -> dict[int, FieldValue]:
        """The profile fields (without the MAC), checked against the message's rule."""
        if self.kind not in layout.PROCESSING_CODES:
            raise LedgerFormatError("3", "processing code must be purchase or refund")
        values: dict[int, FieldValue | None] = {
            n: getattr(self, name) for n, name in _REQUEST_AS_IS.items()
        }
        values |= {
            3: layout.PROCESSING_CODES[self.kind],
            4: _amount_text(self.amount),
            11: _stan_text(self.stan),
            22: None if self.entry_mode is None else _entry_code(self.entry_mode),
            25: layout.POS_CONDITION,
            48: self.additional.encode(),
            49: layout.CURRENCY_KRW,
            90: None if self.original is None else self.original.field90(),
        }
        fields = {n: v for n, v in values.items() if v is not None}
        layout.check_request_fields(self.mti, self.kind, fields)
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
    if not discount:
        benefit_rate_bps = discount = None
    mode: EntryMode
    track2 = icc = token = expiry = None
    if isinstance(payer, QrPayer):
        pan, mode, token = payer.account, "qr", payer.token
    else:
        pan, mode, expiry = payer.pan, payer.entry_mode, payer.expiry
        # Chip and contactless send the ICC data; track 2 is for magstripe only.
        if mode == "magstripe":
            track2 = payer.track2
        else:
            icc = payer.icc
    return LedgerRequest(
        "0200",
        "purchase",
        amount=amount,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        pan=pan,
        entry_mode=mode,
        expiry=expiry,
        track2=track2,
        icc=icc,
        additional=AdditionalData(benefit_rate_bps, discount, token),
        **_sent(stan, transmitted_at, local_now),
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
    return LedgerRequest(
        mti="0200",
        kind="refund",
        amount=amount,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        pan=pan,
        rrn=rrn,
        original=original,
        **_sent(stan, transmitted_at, local_now),
    )


def build_advice(
    purchase: LedgerRequest, auth_code: str, *, tc: bytes | None = None
) -> LedgerRequest:
    """The 0220 of a purchase posd approved offline: the unsent 0200 with its approval code.

    The 0200 never left (offline approval happens only then), so its STAN and field 7
    become the advice's. `tc` is a chip card's COMPLETE_RESULT (BER-TLV): its TC, 9F27, 95
    and 9B then stand in 55 where the ARQC's were (`protocols.ledger_icc.with_tc`).
    """
    if purchase.mti != "0200" or purchase.kind != "purchase":
        raise ValueError("only an unsent 0200 purchase becomes an advice")
    icc = purchase.icc
    if tc is not None:
        if purchase.entry_mode != "chip" or icc is None:
            raise ValueError("only a chip payment's advice carries the card's TC")
        icc = ledger_icc.with_tc(icc, tc)
    return replace(purchase, mti="0220", auth_code=auth_code, icc=icc)


@dataclass(frozen=True)
class ReversalTarget:
    """What a 0400 says of the request it undoes: field 90's reference to it and the facts the
    ledger checks the reversal against (amount, terminal, merchant, entry mode, its RRN). A
    terminal that kept only these (no card data) can still reverse."""

    original: OriginalData
    kind: Kind
    amount: int
    terminal_id: str
    merchant_id: str
    entry_mode: EntryMode | None = None
    rrn: str | None = None
    pan: str | None = None
    expiry: str | None = None

    @classmethod
    def of(cls, request: LedgerRequest) -> ReversalTarget:
        return cls(
            original=OriginalData.of(request),
            kind=request.kind,
            amount=request.amount,
            terminal_id=request.terminal_id,
            merchant_id=request.merchant_id,
            entry_mode=request.entry_mode,
            rrn=request.rrn,
            pan=request.pan,
            expiry=request.expiry,
        )


def build_reversal(
    original: LedgerRequest | ReversalTarget,
    *,
    stan: int,
    transmitted_at: dt.datetime,
    local_now: dt.datetime,
    rrn: str | None = None,
    auth_code: str | None = None,
) -> LedgerRequest:
    """The 0400 reversing `original` (a 0200 or 0220, or what a terminal kept of one): same
    amount, field 90 naming it.

    It carries no track 2 or ICC data: the ledger finds the payment by field 90 and needs no
    card data to undo it.
    """
    target = ReversalTarget.of(original) if isinstance(original, LedgerRequest) else original
    return LedgerRequest(
        mti="0400",
        kind=target.kind,
        amount=target.amount,
        terminal_id=target.terminal_id,
        merchant_id=target.merchant_id,
        pan=target.pan,
        entry_mode=target.entry_mode,
        expiry=target.expiry,
        rrn=rrn if rrn is not None else target.rrn,
        auth_code=auth_code,
        original=target.original,
        **_sent(stan, transmitted_at, local_now),
    )


def repeat_of(request: LedgerRequest) -> LedgerRequest:
    """The repeat of an advice or reversal: every field kept, only the MTI's last digit."""
    mti = {"0220": "0221", "0221": "0221", "0400": "0401", "0401": "0401"}.get(request.mti)
    if mti is None:
        raise ValueError("only advices and reversals are repeated; a 0200 is never resent")
    return replace(request, mti=mti)


# ---- responses --------------------------------------------------------------------------------

# The fields of an answer posd reads, held as they are, by attribute; 4 and 11 are numbers.
# Every other field of the profile an answer carries is an echo.
_RESPONSE_AS_IS: Final[Mapping[int, str]] = {
    37: "rrn", 38: "auth_code", 39: "response_code", 41: "terminal_id", 55: "icc",
}  # fmt: skip
_RESPONSE_TYPED: Final = frozenset({4, 11, *_RESPONSE_AS_IS})


@dataclass(frozen=True, repr=False, kw_only=True)
class LedgerResponse:
    """A financial response (0210, 0230, 0410). The fields posd reads are typed; `echoed`
    keeps every other one the answer carried, as received (2, 14 and 35 are card data): the
    repr shows none of their values, nor the ICC data of 55."""

    mti: str
    stan: int
    response_code: str
    terminal_id: str
    amount: int | None = None
    rrn: str | None = None
    auth_code: str | None = None
    icc: bytes | None = None
    echoed: Echoed = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "echoed", layout.check_echoes(self.echoed, _RESPONSE_TYPED))
        self.fields()

    def __repr__(self) -> str:
        icc = None if self.icc is None else f"<{len(self.icc)} bytes>"
        return (
            f"LedgerResponse(mti={self.mti!r}, stan={self.stan!r}, "
            f"response_code={self.response_code!r}, terminal_id={self.terminal_id!r}, "
            f"amount={self.amount!r}, rrn={self.rrn!r}, auth_code={self.auth_code!r}, "
            f"icc={icc}, echoed={[n for n, _ in self.echoed]})"
        )

    @property
    def approved(self) -> bool:
        return self.response_code == "00"

    @property
    def decline_reason(self) -> str | None:
        return decline_reason(self.response_code)

    @property
    def match_key(self) -> tuple[str, int]:
        return self.mti, self.stan

    @property
    def issuer_data(self) -> bytes:
        """The issuer's 91, 71 and 72 from 55 of a 0210, for the reader's COMPLETE (b"" if
        none). Field 55 of a 0230 or 0410 can only be an echo of the card's data."""
        if self.mti != "0210" or self.icc is None:
            return b""
        return ledger_icc.issuer_data(self.icc)

    def fields(self) -> dict[int, FieldValue]:
        typed: dict[int, FieldValue | None] = {
            n: getattr(self, name) for n, name in _RESPONSE_AS_IS.items()
        }
        typed[4] = None if self.amount is None else _amount_text(self.amount)
        typed[11] = _stan_text(self.stan)
        fields = {n: v for n, v in typed.items() if v is not None}
        fields.update(self.echoed)
        layout.check_answer_fields(self.mti, fields)
        return fields


def respond(
    request: LedgerRequest,
    response_code: str,
    *,
    rrn: str | None = None,
    auth_code: str | None = None,
    icc: bytes | None = None,
    echo: Collection[int] | None = None,
) -> LedgerResponse:
    """The ledger's answer to `request`: its 11 and 41, the request's fields numbered in
    `echo` (None: every one it carried; () none more), 39, and 37, 38 and 55 when given."""
    own: dict[int, FieldValue | None] = {37: rrn, 38: auth_code, 39: response_code, 55: icc}
    fields = layout.answer_fields(request.fields(), echo, own)
    return _parse_response(IsoMessage(request.response_mti, fields))


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
        fields: dict[int, FieldValue] = {
            7: self.transmission,
            11: _stan_text(self.stan),
            41: self.terminal_id,
            70: self.code,
        }
        layout.check_network_fields(fields, NETWORK_CODES, answer=False)
        return fields


@dataclass(frozen=True)
class NetworkResponse:
    """0810: the answer to an 0800. Its field 7 (`transmission`) is the ledger's own clock,
    MMDDhhmmss UTC. Any other field of the profile it carries is accepted and ignored."""

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

    def ledger_time(self, near: dt.datetime) -> dt.datetime:
        """The ledger's clock as an aware UTC datetime, in the year nearest `near`."""
        return ledger_fields.field7_moment(self.transmission, near)

    def clock_skew_s(self, host_now: dt.datetime) -> float:
        """Seconds the ledger's clock is ahead of `host_now` (negative: behind)."""
        return ledger_fields.clock_skew_s(self.transmission, host_now)

    def fields(self) -> dict[int, FieldValue]:
        request = NetworkRequest(self.code, self.stan, self.transmission, self.terminal_id)
        fields = request.fields() | {39: self.response_code}
        layout.check_network_fields(fields, NETWORK_CODES, answer=True)
        return fields


def network_request(
    code: NetworkCode, *, stan: int, transmitted_at: dt.datetime, terminal_id: str
) -> NetworkRequest:
    return NetworkRequest(code, stan, field7(transmitted_at), terminal_id)


def respond_network(
    request: NetworkRequest, response_code: str = "00", *, ledger_time: dt.datetime | None = None
) -> NetworkResponse:
    """The 0810 to `request`, its field 7 the ledger's clock at `ledger_time` (without one,
    the request's own field 7: a ledger whose clock reads exactly what the terminal's did)."""
    transmission = request.transmission if ledger_time is None else field7(ledger_time)
    return NetworkResponse(
        request.code, request.stan, transmission, request.terminal_id, response_code
    )


# ---- encode and decode -------------------------------------------------------------------------


def encode(
    message: LedgerRequest | LedgerResponse | NetworkRequest | NetworkResponse, mac_key: bytes
) -> bytes:
    """The message's bytes (without length prefix); financial messages get their MAC, last:
    field 64, or 128 in a message with a field 65-127 (profile 2)."""
    financial = isinstance(message, LedgerRequest | LedgerResponse)
    return encode_message(message.mti, message.fields(), mac_key if financial else None)


def decode_request(data: bytes, mac_key: bytes) -> Inbound[LedgerRequest | NetworkRequest]:
    """Parse a request (the ledger's side); raises LedgerFormatError naming the field."""
    return decode_inbound(
        data, mac_key, "0800", _parse_network_request, layout.FINANCIAL_REQUESTS,
        _parse_request, "request",
    )  # fmt: skip


def request_from_fields(mti: str, fields: Mapping[int, FieldValue]) -> LedgerRequest:
    """A financial request from its field values (as `LedgerRequest.fields()` gave them, e.g.
    kept in the store-and-forward queue), checked as a received one would be; a MAC (64 or
    128) is ignored."""
    iso = IsoMessage(mti, {n: v for n, v in fields.items() if n not in MAC_FIELDS})
    try:
        return _parse_request(iso)
    except LedgerFormatError as exc:
        raise with_ids(exc, iso) from None


def _parse_network_request(iso: IsoMessage) -> NetworkRequest:
    layout.check_network_fields(iso.fields, NETWORK_CODES, answer=False)
    return NetworkRequest(
        iso.text(70),  # type: ignore[arg-type]
        int(iso.text(11) or "0"),
        iso.text(7) or "",
        iso.text(41) or "",
    )


def _parse_request(iso: IsoMessage) -> LedgerRequest:
    """A financial request from a message whose MAC, if any, has been dealt with."""
    kind = layout.KINDS.get(iso.text(3) or "", "")
    layout.check_request_fields(
        iso.mti, kind, {n: v for n, v in iso.fields.items() if n not in MAC_FIELDS}
    )
    entry_code = iso.text(22)
    entry_mode = None
    if entry_code is not None:
        entry_mode = _ENTRY_MODE_NAMES.get(entry_code)
        if entry_mode is None:
            raise LedgerFormatError("22", "unknown POS entry mode")
    original_text = iso.text(90)
    # Each field of _REQUEST_AS_IS is text, or bytes for 55, as its attribute is (checked).
    as_is: dict[str, Any] = {name: iso.fields.get(n) for n, name in _REQUEST_AS_IS.items()}
    return LedgerRequest(
        mti=iso.mti,
        kind=kind,  # type: ignore[arg-type]
        stan=int(iso.text(11) or "0"),
        amount=int(iso.text(4) or "0"),
        entry_mode=entry_mode,  # type: ignore[arg-type]
        additional=AdditionalData.parse(iso.text(48)),
        original=None if original_text is None else OriginalData.parse(original_text),
        **as_is,
    )


def decode_response(data: bytes, mac_key: bytes) -> Inbound[LedgerResponse | NetworkResponse]:
    """Parse a response (posd's side); raises LedgerFormatError naming the field. Any field
    of the profile is accepted; an 0810's MAC, should it carry one, is ignored."""
    return decode_inbound(
        data, mac_key, "0810", _parse_network_response, layout.FINANCIAL_RESPONSES,
        _parse_response, "response",
    )  # fmt: skip


def _parse_network_response(iso: IsoMessage) -> NetworkResponse:
    layout.check_network_fields(iso.fields, NETWORK_CODES, answer=True)
    return NetworkResponse(
        iso.text(70),  # type: ignore[arg-type]
        int(iso.text(11) or "0"),
        iso.text(7) or "",
        iso.text(41) or "",
        iso.text(39) or "",
    )


def _parse_response(iso: IsoMessage) -> LedgerResponse:
    missing = layout.ANSWER_REQUIRED - set(iso.fields)
    if missing:  # before the attributes are read
        raise LedgerFormatError(str(min(missing)), "is required in this message")
    amount = iso.text(4)
    # Each field of _RESPONSE_AS_IS is text, or bytes for 55, as its attribute is; the
    # response checks them all again as it is made.
    as_is: dict[str, Any] = {name: iso.fields.get(n) for n, name in _RESPONSE_AS_IS.items()}
    return LedgerResponse(
        mti=iso.mti,
        stan=int(iso.text(11) or "0"),
        amount=None if amount is None else int(amount),
        echoed=layout.echoes_of(iso.fields, _RESPONSE_TYPED),
        **as_is,
    )
