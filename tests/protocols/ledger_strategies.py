"""Hypothesis strategies and fixed values for the ledger message tests."""

from __future__ import annotations

import base64
import datetime as dt

from hypothesis import strategies as st

from protocols.ber_tlv import Tlv, encode_tlv
from protocols.ledger_fields import RESPONSE_CODES, offline_auth_code
from protocols.ledger_messages import (
    CardPayer,
    LedgerRequest,
    OriginalData,
    QrPayer,
    build_advice,
    build_purchase,
    build_refund,
    build_reversal,
    repeat_of,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PAN = "9410123456789012"
TRACK2 = PAN + "=28121010000"
NOW = dt.datetime(2026, 11, 25, 3, 4, 5, tzinfo=dt.UTC)
KST = dt.timezone(dt.timedelta(hours=9))
# A chip card's authorisation data, as CARD_DATA gives it (abridged).
ARQC_ICC = encode_tlv([
    Tlv(0x9F26, bytes.fromhex("1122334455667788")), Tlv(0x9F27, b"\x80"),
    Tlv(0x9F36, b"\x00\x2a"), Tlv(0x95, bytes(5)), Tlv(0x9F02, bytes.fromhex("000000001000")),
    Tlv(0x5F2A, bytes.fromhex("0410")), Tlv(0x82, bytes.fromhex("1980")),
])  # fmt: skip


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


def ascii_text(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=[chr(c) for c in range(0x20, 0x7F)], min_size=n, max_size=n)


def alnum(n: int) -> st.SearchStrategy[str]:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return st.text(alphabet=alphabet, min_size=n, max_size=n)


times = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),
    max_value=dt.datetime(2099, 12, 31),
    timezones=st.just(dt.UTC),
)
expiries = st.builds(lambda y, m: f"{y:02d}{m:02d}", st.integers(0, 99), st.integers(1, 12))
pans = st.integers(12, 19).flatmap(digits)
stans = st.integers(1, 999_999)
amounts = st.integers(1, 999_999_999_999)
_CARD_TAGS = [0x9F26, 0x9F27, 0x9F10, 0x9F36, 0x9F37, 0x95, 0x9A, 0x9C, 0x9F02, 0x82, 0x84, 0x57]


def tlv(tags: list[int], max_items: int = 8) -> st.SearchStrategy[bytes]:
    """BER-TLV of up to `max_items` objects with tags from `tags`, at most 255 bytes."""
    items = st.lists(st.tuples(st.sampled_from(tags), st.binary(max_size=20)), min_size=1,
                     max_size=max_items)  # fmt: skip
    return items.map(lambda pairs: encode_tlv([Tlv(t, v) for t, v in pairs]))


icc_data = tlv(_CARD_TAGS)
issuer_data = tlv([0x91, 0x71, 0x72], 3)


@st.composite
def card_payers(draw: st.DrawFn) -> CardPayer:
    mode = draw(st.sampled_from(["chip", "contactless", "magstripe"]))
    pan = draw(pans)
    expiry = draw(st.none() | expiries)
    if mode == "magstripe":
        track2 = pan + draw(st.sampled_from("D=")) + draw(digits(4)) + draw(digits(3))
        return CardPayer("magstripe", pan, expiry, track2[:37], None)
    icc = draw(st.none() | icc_data)
    return CardPayer(mode, pan, expiry, None, icc)  # type: ignore[arg-type]


qr_payers = st.builds(
    QrPayer,
    account=digits(16),
    token=st.binary(min_size=1, max_size=600).map(lambda b: base64.b64encode(b).decode()),
)


@st.composite
def purchases(draw: st.DrawFn) -> LedgerRequest:
    rate = draw(st.none() | st.integers(300, 700))
    return build_purchase(
        stan=draw(stans),
        transmitted_at=draw(times),
        local_now=draw(times).astimezone(KST),
        amount=draw(amounts),
        terminal_id=draw(ascii_text(8)),
        merchant_id=draw(ascii_text(15)),
        payer=draw(card_payers() | qr_payers),
        benefit_rate_bps=rate,
        discount=None if rate is None else draw(st.integers(1, 10**6)),
    )


@st.composite
def refunds(draw: st.DrawFn) -> LedgerRequest:
    original = draw(purchases())
    return build_refund(
        stan=draw(stans),
        transmitted_at=draw(times),
        local_now=draw(times),
        amount=draw(amounts),
        terminal_id=original.terminal_id,
        merchant_id=original.merchant_id,
        original=OriginalData.of(original),
        rrn=draw(alnum(12)),
        pan=draw(st.none() | st.just(original.pan)),
    )


@st.composite
def advices(draw: st.DrawFn) -> LedgerRequest:
    advice = build_advice(draw(purchases()), offline_auth_code(draw(st.integers(0, 10**6))))
    return repeat_of(advice) if draw(st.booleans()) else advice


@st.composite
def reversals(draw: st.DrawFn) -> LedgerRequest:
    original = draw(purchases() | refunds())
    reversal = build_reversal(
        original,
        stan=draw(stans),
        transmitted_at=draw(times),
        local_now=draw(times),
        rrn=draw(st.none() | alnum(12)),
    )
    return repeat_of(reversal) if draw(st.booleans()) else reversal


requests = purchases() | refunds() | advices() | reversals()
response_codes = st.sampled_from(sorted(RESPONSE_CODES))
network_codes = st.sampled_from(["001", "002", "301"])
# Which of its request's fields an answer echoes: None for all of them.
echoes = st.none() | st.sets(st.sampled_from([2, 3, 4, 7, 12, 13, 14, 22, 25, 35, 37, 38, 42,
                                              48, 49, 55, 90]))  # fmt: skip


def card_purchase(payer: CardPayer | QrPayer | None = None, stan: int = 3) -> LedgerRequest:
    """A fixed 0200 purchase of 1,000 won, by default a chip card's."""
    return build_purchase(
        stan=stan, transmitted_at=NOW, local_now=NOW, amount=1000, terminal_id="T0000001",
        merchant_id="M00000000000001",
        payer=payer or CardPayer("chip", PAN, "2812", None, ARQC_ICC),
    )  # fmt: skip
