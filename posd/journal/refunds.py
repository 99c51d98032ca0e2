"""Refunds: each one checked against its original and recorded in one transaction.

A refund goes to the ledger as a 0200 (3=200000) or not at all: it is never approved offline
and never queued. So it is recorded either in authorizing, with its STAN and field 7, ready
for that 0200; or, when it cannot be sent, already declined, with no STAN and nothing in the
store-and-forward queue: `advice_pending` when the original is an offline approval whose
advice the ledger has not taken yet (ledger-iso8583.md: such a refund is sent only after it),
whatever the link; else `unsent_reason`, the caller's (`ledger_unavailable` while the link is
down). Either way it is bound to its idempotency key, so a repeat gets the first answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from posd.journal import stans
from posd.journal.checks import check_amount, check_idempotency_key, to_ms
from posd.journal.model import (
    APPROVED,
    APPROVED_OFFLINE,
    AUTHORIZING,
    DECLINED,
    FORWARDED,
    REVERSED,
    IdempotencyConflict,
    PaymentRecord,
    RefundRefused,
)
from posd.journal.rows import find_payment, get_payment, payment_by_key

if TYPE_CHECKING:
    from posd.journal.store import JournalCore

__all__ = ["ADVICE_PENDING", "create_refund"]

ADVICE_PENDING: Final = "advice_pending"


def create_refund(
    core: JournalCore,
    *,
    original_payment_id: str,
    amount: int,
    idempotency_key: str | None,
    now: float,
    unsent_reason: str | None = None,
) -> tuple[PaymentRecord, bool]:
    """A refund of `original_payment_id`, or the one already made under this idempotency key
    (then the bool is False; the key reused for another original or amount is an
    IdempotencyConflict). Its `method`, `entry_mode` and masked card come from the original.
    Raises RefundRefused: not_found, not_a_purchase, not_refundable (the original is not
    approved, forwarded or approved offline), card_undecided (a chip approval whose card has
    not answered COMPLETE: shown authorizing, and reversed if it never does), exceeds_original
    (with the refunds not declined or reversed)."""
    check_amount(amount)
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    now_ms = to_ms(now)
    with core.transaction() as db:
        if idempotency_key is not None:
            existing = payment_by_key(db, "refund", idempotency_key)
            if existing is not None:
                if existing.original_payment_id != original_payment_id:
                    raise IdempotencyConflict(existing.payment_id, "original payment")
                if existing.amount != amount:
                    raise IdempotencyConflict(existing.payment_id, "amount")
                return existing, False
        original = find_payment(db, original_payment_id)
        if original is None:
            raise RefundRefused("not_found", f"no payment {original_payment_id!r}")
        if original.kind != "purchase":
            raise RefundRefused("not_a_purchase", "a refund cannot itself be refunded")
        if original.state not in (APPROVED, FORWARDED, APPROVED_OFFLINE):
            raise RefundRefused(
                "not_refundable",
                f"payment {original.payment_id} is {original.state}; only approved or "
                "forwarded payments can be refunded",
            )
        if original.card_undecided:
            # The ledger approved it but the card has not (COMPLETE): it may yet be reversed,
            # and a refund beside that reversal would give the money back twice.
            raise RefundRefused(
                "card_undecided",
                f"payment {original.payment_id} is authorizing: its card has not confirmed the "
                "ledger's approval",
            )
        already = db.execute(
            "SELECT coalesce(sum(charged), 0) FROM payments WHERE original_payment_id = ? "
            "AND state NOT IN (?, ?)",
            (original.payment_id, DECLINED, REVERSED),
        ).fetchone()[0]
        if already + amount > original.charged:
            raise RefundRefused(
                "exceeds_original",
                f"refunds would total {already + amount} won, more than the "
                f"{original.charged} won charged",
            )
        if original.state == APPROVED_OFFLINE:
            unsent_reason = ADVICE_PENDING
        sent = unsent_reason is None
        payment_id = core.insert_payment(
            db,
            kind="refund",
            idempotency_key=idempotency_key,
            original=original,
            state=AUTHORIZING if sent else DECLINED,
            amount=amount,
            discount=0,
            charged=amount,
            rate=0,
            method=original.method,
            stan=stans.allocate_stan(db, now_ms) if sent else None,
            now_ms=now_ms,
        )
        if not sent:
            db.execute(
                "UPDATE payments SET decline_reason = ? WHERE id = ?", (unsent_reason, payment_id)
            )
        return get_payment(db, payment_id), True
