from __future__ import annotations

import datetime

import pytest

from posd.payments import rules as r
from protocols.ber_tlv import Tlv, TlvError, decode_tlv, encode_tlv


def test_benefit_rate() -> None:
    assert r.benefit_rate_for(500, True) == 500
    assert r.benefit_rate_for(500, False) == 0
    # A request for 혜택플러스 at a shop that is not one: no discount, not an error.
    assert r.benefit_rate_for(0, True) == 0


@pytest.mark.parametrize(
    ("amount", "shop", "asked", "benefit"),
    [
        (12_345, 700, True, r.Benefit(700, 864, 11_481)),  # floor(12345 * 0.07)
        (10_000, 500, True, r.Benefit(500, 500, 9_500)),
        (3_000, 500, True, r.Benefit(500, 150, 2_850)),
        (1, 700, True, r.Benefit(700, 0, 1)),
        (10_000, 500, False, r.Benefit(0, 0, 10_000)),
        (10_000, 0, True, r.Benefit(0, 0, 10_000)),
    ],
)
def test_benefit_plus_arithmetic(amount: int, shop: int, asked: bool, benefit: r.Benefit) -> None:
    """discount = floor(amount x rate / 10000), charged = amount - discount: here only."""
    assert r.benefit_for(amount, shop, asked) == benefit


def test_prefix() -> None:
    assert r.prefix_accepted("9410123456789012", ("9410",))
    assert not r.prefix_accepted("4111111111111111", ("9410",))
    assert not r.prefix_accepted("9410123456789012", ())
    assert r.prefix_accepted("5555000011112222", ("9410", "5555"))


@pytest.mark.parametrize(
    ("expiry", "today", "expired"),
    [
        ("2612", datetime.date(2026, 12, 31), False),  # good through its last day
        ("2612", datetime.date(2027, 1, 1), True),
        ("2611", datetime.date(2026, 12, 1), True),
        ("3001", datetime.date(2026, 12, 1), False),
        (None, datetime.date(2099, 1, 1), False),  # unknown: the ledger judges
        ("2613", datetime.date(2030, 1, 1), False),  # malformed: the ledger judges
        ("26x2", datetime.date(2030, 1, 1), False),
        ("261", datetime.date(2030, 1, 1), False),
    ],
)
def test_card_expired(expiry: str | None, today: datetime.date, expired: bool) -> None:
    assert r.card_expired(expiry, today) is expired


def test_read_failed_reasons() -> None:
    assert r.read_failed_reason("unsupported_card") == "card_not_accepted"
    assert r.read_failed_reason("card_removed") == "card_removed"
    assert r.read_failed_reason("timeout") == "timeout"
    assert r.read_failed_reason("something_new") == "reader_error"


def test_icc_for_authorization_keeps_the_authorisation_tags_in_the_cards_order() -> None:
    card = encode_tlv(
        [
            Tlv(0x5A, bytes.fromhex("9410000000000001")),
            Tlv(0x9F26, bytes(8)),
            Tlv(0x57, bytes.fromhex("9410000000000001D3012201")),
            Tlv(0x5F24, bytes.fromhex("301231")),
            Tlv(0x9F7C, bytes(32)),  # unknown to the ledger: left out
            Tlv(0x82, b"\x19\x80"),
            Tlv(0x9F33, b"\xe0\xf8\xc8"),  # terminal capabilities, sent when present
            Tlv(0x9F26, b"\xff" * 8),  # a repeat: the first counts
        ]
    )
    kept = decode_tlv(r.icc_for_authorization(card))
    assert kept == [Tlv(0x9F26, bytes(8)), Tlv(0x82, b"\x19\x80"), Tlv(0x9F33, b"\xe0\xf8\xc8")]


def test_icc_for_authorization_of_malformed_tlv_raises() -> None:
    with pytest.raises(TlvError):
        r.icc_for_authorization(b"\x9f\x26\x08\x00")
