"""The QR text a token yields is the one the ledger gets: normalised, and short enough for
field 48 whatever 혜택플러스 pair goes with it."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.ber_tlv import Tlv, encode_tlv
from protocols.ledger_messages import LedgerFormatError, QrPayer, build_purchase
from protocols.qr_token import (
    MAX_QT_CHARS,
    MAX_TEXT_CHARS,
    QR_UNREADABLE,
    QrRejected,
    QrToken,
    make_qr,
    verify_qr,
)

T0 = 1_800_000_000
ACCOUNT = "9410000000000001"
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = {1: PRIVATE.public_key().public_bytes_raw()}
AT = dt.datetime.fromtimestamp(T0, tz=dt.UTC)


def token() -> str:
    return make_qr(ACCOUNT, T0, T0 + 120, b"nonce-01", 1, PRIVATE)


def padded_token(text: str, length: int) -> str:
    """`text` with a private-class tag appended at the top level, `length` characters long
    (a multiple of 4): still a valid token, as a faulty or hostile app might show one."""
    if length % 4:
        raise ValueError("base64 text comes in quanta of 4 characters")
    raw = base64.b64decode(text)
    room = length // 4 * 3 - len(raw)
    for header in (2, 3, 4):  # tag byte, then 1, 2 or 3 length bytes
        padded = raw + encode_tlv([Tlv(0xC1, bytes(room - header))])
        if len(padded) == len(raw) + room:
            return base64.b64encode(padded).decode()
    raise ValueError(f"no padding makes {length} characters")


def fits_field48(text: str, benefit_rate_bps: int | None, discount: int | None) -> bool:
    try:
        build_purchase(
            stan=1,
            transmitted_at=AT,
            local_now=AT,
            amount=999_999_999_999,
            terminal_id="T0000001",
            merchant_id="M00000000000001",
            payer=QrPayer(ACCOUNT, text),
            benefit_rate_bps=benefit_rate_bps,
            discount=discount,
        )
    except LedgerFormatError:
        return False
    return True


def test_the_token_carries_the_text_as_verified_without_surrounding_whitespace() -> None:
    result = verify_qr(f" {token()}\t\r\n", KEYS, T0)
    assert isinstance(result, QrToken)
    assert result.text == token()
    # Tokens compare by what is signed: the same token scanned twice is one token.
    assert result == verify_qr(token(), KEYS, T0)


def test_the_longest_token_accepted_fits_field_48_with_the_longest_benefit_pair() -> None:
    longest = padded_token(token(), MAX_QT_CHARS)
    result = verify_qr(longest, KEYS, T0)
    assert isinstance(result, QrToken) and result.text == longest
    assert fits_field48(longest, 10_000, 999_999_999_999)


def test_one_quantum_more_is_unreadable_although_under_the_scanner_cap() -> None:
    too_long = padded_token(token(), MAX_QT_CHARS + 4)
    assert len(too_long) < MAX_TEXT_CHARS
    result = verify_qr(too_long, KEYS, T0)
    assert isinstance(result, QrRejected) and result.reason == QR_UNREADABLE
    assert "field 48" in result.detail
    # Refused for a reason: field 48 could not carry it next to the longest BP/DA pair.
    assert not fits_field48(too_long, 10_000, 999_999_999_999)


@pytest.mark.parametrize("length", [MAX_QT_CHARS + 4, MAX_TEXT_CHARS])
def test_whitespace_does_not_count_but_the_text_does(length: int) -> None:
    assert isinstance(verify_qr(padded_token(token(), MAX_QT_CHARS) + "  \r\n", KEYS, T0), QrToken)
    result = verify_qr(padded_token(token(), length), KEYS, T0)
    assert isinstance(result, QrRejected) and result.reason == QR_UNREADABLE
