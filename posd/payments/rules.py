"""The payment decisions that need no I/O: 혜택플러스 and its arithmetic, card checks, reasons.

Pure functions of their arguments (time is passed in), tested apart from devices, sockets and
storage. The states, offline limits and refund limits live in the journal, which enforces them
in the same transaction as the change they guard.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from protocols.ber_tlv import decode_tlv, encode_tlv

# ARCs of COMPLETE that no ledger answer gave (reader-link.md). Z3: the ledger was not
# reached and the card may approve offline (TC), so only where posd takes an offline
# approval. Z1: posd declines without a ledger answer (a limit, a card not accepted, a
# cancel, a 0200 whose answer never came), and the card must answer AAC.
ARC_LEDGER_NOT_REACHED = "Z3"
ARC_HOST_DECLINED = "Z1"

# Field 55 of a chip or contactless 0200: what the ledger needs to check the ARQC. The
# reader-link.md list, then terminal and risk data it uses when the card gave them. Not 5A,
# 57 or 5F24: they travel in fields 2, 35 and 14, and field 55 (b..255) has no room to spare.
ICC_AUTHORIZATION_TAGS: Final = (
    0x5F2A, 0x5F34, 0x82, 0x84, 0x95, 0x9A, 0x9C, 0x9F02, 0x9F10, 0x9F26, 0x9F27, 0x9F36, 0x9F37,
    0x9F1A, 0x9F33, 0x9F34, 0x9F35, 0x9F03, 0x9F09, 0x9F1E, 0x9F41, 0x9F53,
)  # fmt: skip
_ICC_TAG_SET: Final = frozenset(ICC_AUTHORIZATION_TAGS)


@dataclass(frozen=True)
class Benefit:
    """A payment's 혜택플러스: the rate it gets, the discount, and what is charged."""

    rate_bps: int
    discount: int
    charged: int


def benefit_for(amount: int, shop_rate_bps: int, requested: bool) -> Benefit:
    """The 혜택플러스 of a payment of `amount` won: discount = floor(amount × rate / 10000) at
    the rate `benefit_rate_for` gives, charged = amount − discount."""
    rate = benefit_rate_for(shop_rate_bps, requested)
    discount = amount * rate // 10_000
    return Benefit(rate, discount, amount - discount)


def benefit_rate_for(shop_rate_bps: int, requested: bool) -> int:
    """The 혜택플러스 rate a payment gets: the shop's, if it is a 혜택플러스 shop and the POS asked.

    A request at a shop that is not one (rate 0) is not an error: the POS app may ask on every
    sale, and the payment's `discount` of 0 tells it plainly that none was given.
    """
    return shop_rate_bps if requested and shop_rate_bps > 0 else 0


def icc_for_authorization(tlv: bytes) -> bytes:
    """The card's authorisation tags from its CARD_DATA TLV, in the card's order, the first of
    any repeated tag only. Raises protocols.ber_tlv.TlvError on malformed TLV."""
    seen: set[int] = set()
    kept = []
    for item in decode_tlv(tlv):
        if item.tag in _ICC_TAG_SET and item.tag not in seen:
            seen.add(item.tag)
            kept.append(item)
    return encode_tlv(kept)


def prefix_accepted(pan: str, prefixes: Iterable[str]) -> bool:
    return any(pan.startswith(p) for p in prefixes)


def card_expired(expiry_yymm: str | None, today: datetime.date) -> bool:
    """True when a card's YYMM expiry month is over (a card is good through its last day).

    An expiry the card did not give, or a malformed one, is left to the ledger to judge.
    """
    if expiry_yymm is None or len(expiry_yymm) != 4 or not expiry_yymm.isdigit():
        return False
    year = 2000 + int(expiry_yymm[:2])
    month = int(expiry_yymm[2:])
    if not 1 <= month <= 12:
        return False
    return (today.year, today.month) > (year, month)


# READ_FAILED reason names (reader-link.md) → the reason shown at the counter.
_READ_FAILED_REASONS = {
    "timeout": "timeout",
    "cancelled": "cancelled",
    "card_error": "card_error",
    "use_chip": "use_chip",
    "card_removed": "card_removed",
    "unsupported_card": "card_not_accepted",
}


def read_failed_reason(reader_reason: str) -> str:
    return _READ_FAILED_REASONS.get(reader_reason, "reader_error")
