"""The ledger requests of a payment, built from its journal record: the 0200 purchase, the
0200 refund and the 0400 reversal.

Every time in them comes from the journal (the record's STAN and the ms it was stamped at),
so a request built again after a restart is the one that went out. A reversal is built from
the journal row alone (STAN and field 7 of the 0200, amount, ids), never from card data, so no
card data can stop one, nor start-up recovery.
"""

from __future__ import annotations

import datetime

from posd.config import TerminalConfig
from posd.journal import PaymentRecord
from protocols.ledger_messages import (
    ENTRY_MODE_CODES,
    CardPayer,
    LedgerRequest,
    OriginalData,
    QrPayer,
    ReversalTarget,
    build_purchase,
    build_refund,
    build_reversal,
)


def purchase(
    rec: PaymentRecord,
    payer: CardPayer | QrPayer,
    terminal: TerminalConfig,
    *,
    stan: int,
    at: float,
) -> LedgerRequest:
    """The 0200 of `rec` paid by `payer`, with its 혜택플러스 rate and discount in field 48."""
    return build_purchase(
        stan=stan,
        transmitted_at=utc(at),
        local_now=local(at),
        amount=rec.charged,
        terminal_id=terminal.id,
        merchant_id=terminal.merchant_id,
        payer=payer,
        benefit_rate_bps=rec.benefit_plus_rate_bps or None,
        discount=rec.discount or None,
    )


def refund(rec: PaymentRecord, original: PaymentRecord, terminal: TerminalConfig) -> LedgerRequest:
    """The 0200 refund of a refund record (created in authorizing) of `original`."""
    assert rec.stan is not None and original.stan is not None
    assert original.field7 is not None and original.rrn is not None
    created = rec.updated_at / 1000
    return build_refund(
        stan=rec.stan,
        transmitted_at=utc(created),
        local_now=local(created),
        amount=rec.charged,
        terminal_id=terminal.id,
        merchant_id=terminal.merchant_id,
        # An offline approval reached the ledger as its 0220 advice.
        original=OriginalData(
            "0220" if original.offline else "0200", original.stan, original.field7
        ),
        rrn=original.rrn,
    )


def reversal(
    rec: PaymentRecord, terminal: TerminalConfig, *, stan: int, now: float
) -> LedgerRequest:
    """The 0400 reversing a payment's 0200: field 90 names the 0200 by its STAN and field 7,
    as the ledger finds it. No card data: field 2 is optional in a 0400, and nothing a card or
    QR held can then stand in the way of a reversal."""
    if rec.stan is None or rec.field7 is None:
        raise ValueError(f"payment {rec.payment_id} never had a 0200 to reverse")
    entry_mode = rec.entry_mode if rec.entry_mode in ENTRY_MODE_CODES else None
    target = ReversalTarget(
        original=OriginalData("0200", rec.stan, rec.field7),
        kind="refund" if rec.kind == "refund" else "purchase",
        amount=rec.charged,
        terminal_id=terminal.id,
        merchant_id=terminal.merchant_id,
        entry_mode=entry_mode,  # type: ignore[arg-type]
        rrn=rec.rrn,
    )
    return build_reversal(
        target, stan=stan, transmitted_at=utc(now), local_now=local(now), auth_code=rec.auth_code
    )


def utc(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, tz=datetime.UTC)


def local(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now).astimezone()
