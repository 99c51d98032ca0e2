"""What the store-and-forward sender's tests share: a journal with reversals queued in it,
the real ledger client on the reference ledger, and what that ledger received."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from posd.journal import CardSecrets, Journal, PaymentRecord
from posd.ledger import LedgerClient
from posd.payments import request_fields
from posd.sim import LedgerSimulator
from posd.sim.ledger_accounts import GOOD_CARD
from protocols.ledger_messages import build_reversal
from tests.helpers.ledger import now, plain_client, purchase, running

T0 = 1e9  # when the queued payments were made (Unix seconds)


class Queue:
    """A real journal, and reversals queued in it: of card payments whose 0200 never went
    out, so the ledger answers each 00 (it never saw the payment)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.count = 0

    async def reversal(self) -> PaymentRecord:
        self.count += 1
        record, _ = await self.journal.create_payment(
            amount=7_000, charged=7_000, method="card", idempotency_key=f"k{self.count}", now=T0
        )
        record = await self.journal.begin_authorization(
            record.payment_id, CardSecrets("chip", GOOD_CARD), T0
        )
        assert record.stan is not None
        original = purchase(GOOD_CARD, 7_000, stan=record.stan)
        stan = await self.journal.allocate_stan(T0)
        reversal = build_reversal(original, stan=stan, transmitted_at=now(), local_now=now())
        record, _ = await self.journal.start_reversal(
            record.payment_id,
            fields=request_fields(reversal),
            stan=stan,
            now=T0,
            decline_reason="ledger_timeout",
        )
        return record

    async def stan_of(self, payment_id: str) -> int:
        [entry] = [e for e in await self.journal.saf_pending() if e.payment_id == payment_id]
        return entry.stan


@asynccontextmanager
async def link(sim: LedgerSimulator) -> AsyncIterator[LedgerClient]:
    async with running(plain_client(sim.port), wait_up=False) as client:
        yield client


def stans_received(sim: LedgerSimulator, stan: int) -> list[str]:
    return [s.mti for s in sim.seen if s.network_code is None and s.stan == stan]
