"""Durable before visible: every payment event the POS app is sent on /v1/events is already
in the journal on disk when it arrives, for card and QR payments, online and offline."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from posd.sim.ledger_accounts import GOOD_QR_ACCOUNT, POOR_QR_ACCOUNT
from tests.helpers.daemon import WAIT_S, RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)


def states_on_disk(state_dir: Path, payment_id: str) -> list[str]:
    """Every state the journal has recorded for the payment, read from outside posd."""
    with sqlite3.connect(f"file:{state_dir / 'journal.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT to_state FROM payment_events WHERE payment_id = ? ORDER BY seq",
            (payment_id,),
        ).fetchall()
    return [state for (state,) in rows]


class CheckedEvents:
    """Reads the event stream; at each payment event, at once, what the disk holds for it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.seen: list[tuple[str, str, list[str]]] = []
        """(payment id, state told, states on disk when it was told)"""
        self._arrived = asyncio.Event()

    async def read(self, stream: aiohttp.ClientResponse) -> None:
        async for line in stream.content:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[len(b"data: ") :])
            if event.get("type") != "payment":
                continue
            payment = event["payment"]
            on_disk = states_on_disk(self.state_dir, payment["payment_id"])
            self.seen.append((payment["payment_id"], payment["state"], on_disk))
            self._arrived.set()

    async def told(self, payment_id: str, state: str) -> None:
        async with asyncio.timeout(WAIT_S):
            while True:
                self._arrived.clear()
                if any(seen[:2] == (payment_id, state) for seen in self.seen):
                    return
                await self._arrived.wait()


async def pay(
    d: RunningDaemon, events: CheckedEvents, method: str, present: str, amount: int = 1_000
) -> str:
    """A payment of `method`, paid with the card or QR account `present`; its final state,
    once the stream has told it."""
    created = await d.create(amount, method)
    if method == "card":
        assert d.reader is not None
        d.reader.present(present)
    else:
        await d.scanner.scan(d.issuer.valid(present))
    done = await d.wait_final(str(created["payment_id"]))
    await events.told(str(created["payment_id"]), str(done["state"]))
    return str(done["state"])


async def test_every_payment_event_is_on_disk_before_it_is_sent(tmp_path: Path) -> None:
    unbounded = aiohttp.ClientTimeout(total=None)  # every wait on the stream is bounded here
    async with (
        running_daemon(tmp_path, card_reader=True) as d,
        d.session.get("http://posd/v1/events", timeout=unbounded) as stream,
    ):
        assert stream.status == 200
        events = CheckedEvents(d.state_dir)
        reading = asyncio.create_task(events.read(stream))
        try:
            assert await pay(d, events, "card", "seoroeum") == "approved"
            assert await pay(d, events, "qr", GOOD_QR_ACCOUNT) == "approved"
            assert await pay(d, events, "qr", POOR_QR_ACCOUNT, 50_000) == "declined"
            await d.ledger.refuse_connections(True)
            await d.wait_status(lambda s: s["ledger"]["link"] != "up")
            # A chip card that accepts offline (magstripe never is: ledger-iso8583.md).
            assert await pay(d, events, "card", "approves-offline") == "approved_offline"
            offline = events.seen[-1][0]
            await d.ledger.refuse_connections(False)
            await events.told(offline, "forwarded")
        finally:
            reading.cancel()
    told = {state for _, state, _ in events.seen}
    assert told >= {"waiting_for_card", "authorizing", "approved", "declined"}
    assert told >= {"approved_offline", "forwarded"}
    late = [(pid, state, disk) for pid, state, disk in events.seen if state not in disk]
    assert late == [], "sent before the journal had it on disk"
