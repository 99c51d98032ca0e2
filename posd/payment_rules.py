"""The payment decisions that need no I/O: 혜택플러스 eligibility, card checks, reasons.

Pure functions of their arguments (time is passed in), tested apart from devices, sockets and
storage. The states, offline limits and refund limits live in the journal, which enforces them
in the same transaction as the change they guard.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

# ARC sent to the card when the ledger was not reached (reader-link.md COMPLETE).
ARC_LEDGER_NOT_REACHED = "Z3"


def benefit_rate_for(shop_rate_bps: int, requested: bool) -> int:
    """The 혜택플러스 rate a payment gets: the shop's, if it is a 혜택플러스 shop and the POS asked.

    A request at a shop that is not one (rate 0) is not an error: the POS app may ask on every
    sale, and the payment's `discount` of 0 tells it plainly that none was given.
    """
    return shop_rate_bps if requested and shop_rate_bps > 0 else 0


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
