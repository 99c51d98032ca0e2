"""A store-and-forward backlog written straight into a journal: `count` payments approved
offline with their 0220 advices queued, as posd leaves them after an outage, for the tests
and the bench that need more of them than are worth paying one by one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from posd.journal import CardSecrets, Journal, PaymentRecord
from posd.payments import request_fields
from posd.sim.ledger_accounts import GOOD_CARD
from protocols.ledger_messages import CardPayer, build_advice, build_purchase
from tests.helpers.configs import MERCHANT_ID, TERMINAL_ID

AMOUNT = 1_000
ICC = b"\x9f\x02\x06\x00\x00\x00\x01\x00\x00"  # 9F02, the amount: what an ARQC's data has


@dataclass(frozen=True)
class _NoLimits:
    """Offline limits that let the whole backlog in (the daemon's own are not the point)."""

    enabled: bool = True
    max_payment: int = 10**9
    max_total: int = 10**12
    max_count: int = 10**6
    max_per_account: int = 10**6
    max_age_h: int = 10**6


async def queue_advices(state_dir: Path, count: int, *, now: float) -> list[str]:
    """Queues `count` chip advices of AMOUNT won each, made at Unix time `now`, in the
    journal of `state_dir` (posd not running); returns their payment ids, oldest first."""
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    journal = await Journal.open(state_dir)
    ids: list[str] = []
    try:
        for i in range(count):
            record, _ = await journal.create_payment(
                amount=AMOUNT, charged=AMOUNT, method="card", idempotency_key=f"bl-{i}", now=now
            )
            record = await journal.begin_authorization(
                record.payment_id, CardSecrets("chip", GOOD_CARD), now
            )
            assert record.stan is not None
            purchase = build_purchase(
                stan=record.stan,
                transmitted_at=at,
                local_now=at,
                amount=AMOUNT,
                terminal_id=TERMINAL_ID,
                merchant_id=MERCHANT_ID,
                payer=CardPayer(
                    "chip", GOOD_CARD, "3012", None, b"\x9f\x02\x06\x00\x00\x00\x01\x00\x00"
                ),
            )
            auth_code = f"Y1{i % 10_000:04d}"
            done = await journal.approve_offline(
                record.payment_id,
                auth_code=auth_code,
                fields=request_fields(build_advice(purchase, auth_code)),
                limits=_NoLimits(),
                now=now,
            )
            assert isinstance(done, PaymentRecord), done
            ids.append(done.payment_id)
    finally:
        await journal.close()
    return ids
