"""The store-and-forward sender's schedule: each entry on its own, so one the ledger does not
settle never holds back the entries behind it; and nothing sent before the sign-on's answer.

The sender alone on a real journal, the real ledger client and the reference ledger."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from posd.journal import Journal, JournalHolder, PaymentRecord
from posd.ledger import LedgerClient
from posd.payments import SafForwarder
from posd.sim import LedgerSimulator
from posd.sim.ledger import LedgerEvent
from tests.helpers.ledger import MAC_KEY, WAIT_S, wait_until
from tests.helpers.saf import Queue, link, stans_received

pytestmark = pytest.mark.timeout(60)
SETTLE_S = 15.0


@dataclass
class Sender:
    forwarder: SafForwarder
    settled: asyncio.Queue[PaymentRecord]


@asynccontextmanager
async def sending(
    journal: Journal, client: LedgerClient, *, timeout_s: float, retry_interval_s: float
) -> AsyncIterator[Sender]:
    forwarder = SafForwarder(
        JournalHolder.of(journal), client, timeout_s=timeout_s, retry_interval_s=retry_interval_s
    )
    settled: asyncio.Queue[PaymentRecord] = asyncio.Queue()
    forwarder.on_settled = settled.put_nowait
    task = asyncio.create_task(forwarder.run(lambda: None))
    try:
        yield Sender(forwarder, settled)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def settled_ids(settled: asyncio.Queue[PaymentRecord], n: int) -> set[str]:
    # Generous for a loaded machine, and still half the 30 s a stuck entry is waited for.
    async with asyncio.timeout(SETTLE_S):
        return {(await settled.get()).payment_id for _ in range(n)}


async def test_an_entry_the_ledger_never_answers_holds_back_none_behind_it(
    tmp_path: Path,
) -> None:
    journal = await Journal.open(tmp_path)
    try:
        queue = Queue(journal)
        stuck, *behind = [await queue.reversal() for _ in range(5)]
        async with LedgerSimulator(mac_key=MAC_KEY) as sim, link(sim) as client:
            # The ledger acts on the first reversal and never answers it, as a host that
            # chokes on one message does; posd waits 30 s for that answer.
            sim.faults.no_answer_stans = {await queue.stan_of(stuck.payment_id)}
            async with sending(journal, client, timeout_s=30, retry_interval_s=600) as sender:
                # Far sooner than the 30 s the stuck one's answer is waited for.
                done = await settled_ids(sender.settled, len(behind))
                assert done == {r.payment_id for r in behind}
                [left] = await journal.saf_pending()
                assert (left.payment_id, left.attempts) == (stuck.payment_id, 0)  # in flight
                assert stans_received(sim, left.stan) == ["0400"]
                # Queued while it is in flight, a new entry does not wait for it either.
                newer = await queue.reversal()
                sender.forwarder.wake()  # as the payment flow does after queueing
                assert await settled_ids(sender.settled, 1) == {newer.payment_id}
    finally:
        await journal.close()


async def test_an_entry_refused_96_is_retried_every_interval_on_its_own_schedule(
    tmp_path: Path,
) -> None:
    interval = 0.3
    journal = await Journal.open(tmp_path)
    try:
        queue = Queue(journal)
        refused = await queue.reversal()
        others = [await queue.reversal() for _ in range(3)]
        async with LedgerSimulator(mac_key=MAC_KEY) as sim, link(sim) as client:
            stan = await queue.stan_of(refused.payment_id)
            sim.faults.respond_with_stans = {stan: "96"}
            received: list[float] = []
            loop = asyncio.get_running_loop()

            def on_event(event: LedgerEvent) -> None:
                if event.kind == "received" and event.stan == stan:
                    received.append(loop.time())

            sim.add_listener(on_event)
            async with sending(journal, client, timeout_s=5, retry_interval_s=interval) as sender:
                done = await settled_ids(sender.settled, len(others))
                assert done == {r.payment_id for r in others}
                await wait_until(lambda: len(received) >= 4)
                sim.faults.respond_with_stans = {}
                assert await settled_ids(sender.settled, 1) == {refused.payment_id}
        gaps = [b - a for a, b in itertools.pairwise(received)]
        # Lower bounds only: a loaded machine may be late, never early (1 ms: the journal
        # keeps whole milliseconds).
        for attempt, gap in enumerate(gaps[:3], start=1):
            assert gap >= interval - 0.001, (attempt, gaps)
        assert stans_received(sim, stan)[:2] == ["0400", "0401"]
        assert set(stans_received(sim, stan)[1:]) == {"0401"}
    finally:
        await journal.close()


async def test_a_restarted_sender_keeps_each_entry_s_next_attempt_time(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    try:
        queue = Queue(journal)
        refused = await queue.reversal()
        async with LedgerSimulator(mac_key=MAC_KEY) as sim, link(sim) as client:
            stan = await queue.stan_of(refused.payment_id)
            sim.faults.respond_with_stans = {stan: "91"}
            async with sending(journal, client, timeout_s=5, retry_interval_s=600):

                async def tried() -> bool:
                    return (await journal.saf_pending())[0].attempts == 1

                async with asyncio.timeout(WAIT_S):
                    while not await tried():  # noqa: ASYNC110 - the journal has no hook
                        await asyncio.sleep(0.01)
            [entry] = await journal.saf_pending()
            assert entry.next_attempt_at is not None
            assert entry.next_attempt_at - entry.last_attempt_at == 600 * 1000  # type: ignore[operator]
            # A new sender (posd restarted) sends the newer entry and leaves the refused one
            # waiting for its time, 600 s on.
            newer = await queue.reversal()
            async with sending(journal, client, timeout_s=5, retry_interval_s=600) as sender:
                assert await settled_ids(sender.settled, 1) == {newer.payment_id}
            [still] = await journal.saf_pending()
            assert (still.payment_id, still.attempts) == (refused.payment_id, 1)
            assert stans_received(sim, stan) == ["0400"]
    finally:
        await journal.close()


async def test_after_the_ledger_comes_back_the_queue_waits_for_the_sign_on_answer(
    tmp_path: Path,
) -> None:
    journal = await Journal.open(tmp_path)
    try:
        queue = Queue(journal)
        queued = {(await queue.reversal()).payment_id for _ in range(3)}
        async with LedgerSimulator(mac_key=MAC_KEY) as sim:
            await sim.refuse_connections(True)  # the ledger is away
            async with (
                link(sim) as client,
                sending(journal, client, timeout_s=5, retry_interval_s=600) as sender,
            ):
                # It comes back, and at first takes connections without answering sign-ons
                # (FAST gives each 2 s): the queue must not go out on a connection alone.
                sim.faults.no_network_answer = True
                await sim.refuse_connections(False)

                def sign_ons() -> int:
                    return sum(1 for s in sim.seen if s.network_code == "001")

                await sim.wait_seen(lambda s: sign_ons() >= 2, timeout_s=10)
                assert [s.mti for s in sim.seen if s.network_code is None] == []
                # Answered with latency, the sign-on's answer comes 0.3 s after the request.
                sim.latency_s = 0.3
                sim.faults.no_network_answer = False
                assert await settled_ids(sender.settled, 3) == queued
        signed_on = max(
            i for i, e in enumerate(sim.events) if e.kind == "answered" and e.network_code == "001"
        )
        first_sent = min(
            i for i, e in enumerate(sim.events) if e.kind == "received" and e.mti == "0400"
        )
        assert signed_on < first_sent
    finally:
        await journal.close()
