"""The payment decisions that need no I/O: states, discount, card checks, offline limits, reasons.

Everything here is a pure function of its arguments (time is passed in), so the rules the
shop and the ledger rely on are tested in isolation from devices, sockets and storage.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable
from dataclasses import dataclass

# States of local-api.md.
WAITING = "waiting_for_card"
AUTHORIZING = "authorizing"
APPROVED = "approved"
DECLINED = "declined"
APPROVED_OFFLINE = "approved_offline"
FORWARDED = "forwarded"
CANCELLED = "cancelled"
REVERSING = "reversing"
REVERSED = "reversed"

STATES = frozenset(
    {WAITING, AUTHORIZING, APPROVED, DECLINED, APPROVED_OFFLINE, FORWARDED, CANCELLED,
     REVERSING, REVERSED}
)

_TRANSITIONS: dict[str, frozenset[str]] = {
    WAITING: frozenset({AUTHORIZING, APPROVED_OFFLINE, DECLINED, CANCELLED}),
    AUTHORIZING: frozenset({APPROVED, DECLINED, APPROVED_OFFLINE, REVERSING}),
    # An approval the card then refuses (AAC) must be reversed at the ledger.
    APPROVED: frozenset({REVERSING}),
    APPROVED_OFFLINE: frozenset({FORWARDED, REVERSING}),
    REVERSING: frozenset({REVERSED}),
    DECLINED: frozenset(),
    FORWARDED: frozenset(),
    CANCELLED: frozenset(),
    REVERSED: frozenset(),
}

# Where the customer has their answer; what is left (reversal, advice) happens in the queue.
FINAL_FOR_CUSTOMER = frozenset({APPROVED, DECLINED, APPROVED_OFFLINE, FORWARDED, CANCELLED,
                                REVERSING, REVERSED})
# A payment in one of these still holds the reader or scanner.
IN_PROGRESS = frozenset({WAITING, AUTHORIZING})


class BadTransition(ValueError):
    """A state change the payment state machine does not allow (a bug, never user input)."""


def check_transition(old: str, new: str) -> None:
    if new not in _TRANSITIONS.get(old, frozenset()):
        raise BadTransition(f"payment state {old!r} cannot become {new!r}")


# ---- 혜택플러스 -------------------------------------------------------------------------------


def benefit_discount(amount: int, rate_bps: int, requested: bool) -> int:
    """The discount in won: floor(amount * rate / 10000), or 0.

    A request for 혜택플러스 at a shop that is not a 혜택플러스 merchant (rate 0) gets no
    discount rather than an error: the POS app may ask on every sale, and the payment object's
    `discount` of 0 tells it plainly that none was given.
    """
    if not requested or rate_bps <= 0:
        return 0
    return amount * rate_bps // 10000


def benefit_field48(rate_bps: int, discount: int) -> list[tuple[str, str]]:
    """The 48 pairs that announce a discount to the ledger (none when there is none)."""
    if discount <= 0:
        return []
    return [("BP", str(rate_bps)), ("DA", str(discount))]


# ---- card checks ----------------------------------------------------------------------------


def prefix_accepted(pan: str, prefixes: Iterable[str]) -> bool:
    return any(pan.startswith(p) for p in prefixes)


def card_expired(expiry_yymm: str | None, today: datetime.date) -> bool:
    """True when a card's YYMM expiry month is over (a card is good through its last day).

    An expiry the card did not give (None) is left to the ledger to judge.
    """
    if expiry_yymm is None or len(expiry_yymm) != 4 or not expiry_yymm.isdigit():
        return False
    year = 2000 + int(expiry_yymm[:2])
    month = int(expiry_yymm[2:])
    if not 1 <= month <= 12:
        # A malformed expiry is not ours to decline; the ledger answers 54 or 14 to it.
        return False
    return (today.year, today.month) > (year, month)


def mask_pan(pan: str) -> str:
    """First 6 and last 4 at most, as the logging rules allow."""
    if len(pan) <= 10:
        return "*" * len(pan)
    return f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]}"


def last4(number: str) -> str:
    return number[-4:]


# ---- reader outcomes ------------------------------------------------------------------------

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


# ARC sent to the card when the ledger was not reached (reader-link.md COMPLETE).
ARC_LEDGER_NOT_REACHED = "Z3"


# ---- ledger answers -------------------------------------------------------------------------

_RESPONSE_REASONS = {
    "05": "do_not_honour",
    "12": "invalid_transaction",
    "13": "invalid_amount",
    "14": "invalid_card_or_account",
    "30": "format_error",
    "51": "insufficient_funds",
    "54": "card_expired",
    "57": "not_permitted_to_cardholder",
    "58": "not_permitted_to_terminal",
    "61": "exceeds_amount_limit",
    "63": "ledger_security",
    "91": "ledger_unavailable",
    "94": "duplicate_transmission",
    "96": "ledger_malfunction",
}


def decline_reason(response_code: str) -> str:
    """The reason a cashier understands for a ledger's field 39 (not 00)."""
    return _RESPONSE_REASONS.get(response_code, f"declined_{response_code}")


# ---- offline approval -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfflineLimits:
    enabled: bool
    max_payment: int
    max_total: int
    max_count: int
    max_per_account: int
    max_age_h: int


@dataclass(frozen=True, slots=True)
class OfflineExposure:
    """What posd has approved offline and the ledger has not yet taken (advices queued)."""

    total: int
    count: int
    for_account: int
    oldest_at: int | None  # Unix seconds of the oldest still-unforwarded offline approval


def offline_refusal(
    charged: int, limits: OfflineLimits, exposure: OfflineExposure, now: int
) -> str | None:
    """None when this payment may be approved offline, else which limit stands in the way.

    max_age_h bounds how long posd keeps approving while its advices go unforwarded: once the
    oldest is that old, the link has been gone too long to keep taking risk on the ledger's
    behalf.
    """
    if not limits.enabled:
        return "offline_disabled"
    if charged > limits.max_payment:
        return "max_payment"
    if exposure.total + charged > limits.max_total:
        return "max_total"
    if exposure.count + 1 > limits.max_count:
        return "max_count"
    if exposure.for_account + 1 > limits.max_per_account:
        return "max_per_account"
    if exposure.oldest_at is not None and now - exposure.oldest_at > limits.max_age_h * 3600:
        return "max_age_h"
    return None


def offline_auth_code(stan: int) -> str:
    """`Y1` + 4 digits (ledger-iso8583.md field 38); the STAN makes it traceable per day."""
    return f"Y1{stan % 10000:04d}"


# ---- refunds --------------------------------------------------------------------------------

REFUNDABLE = frozenset({APPROVED, FORWARDED})


class RefundProblem(enum.Enum):
    NOT_REFUNDABLE = "not_refundable"  # wrong state or not a purchase: 409
    BAD_AMOUNT = "invalid_amount"  # zero, negative, or more than is left: 400


def refund_problem(
    original_state: str, original_is_refund: bool, original_charged: int, refunded: int,
    amount: int,
) -> RefundProblem | None:
    """Whether `amount` may be refunded of an original that already had `refunded` back."""
    if original_is_refund or original_state not in REFUNDABLE:
        return RefundProblem.NOT_REFUNDABLE
    if amount <= 0 or refunded + amount > original_charged:
        return RefundProblem.BAD_AMOUNT
    return None
