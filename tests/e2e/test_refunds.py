"""Refund rules, through the local API of the real daemon (`posd run`) against the reference
ledger and the simulated reader: a refund goes to the ledger at once or is declined, never
queued (ledger-iso8583.md, local-api.md)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from posd.config import load_config
from posd.sim import LedgerSimulator, SimulatedCardReader
from posd.sim.ledger import LedgerEvent
from posd.sim.ledger_accounts import GOOD_CARD
from protocols import srl_messages as srl
from tests.helpers.daemon import PosClient, daemon_process, ledger_and_reader, on_reader_command

pytestmark = pytest.mark.timeout(120)

# Generous: `posd run` reconnects with its real backoff (1 s doubling), on a loaded machine.
LINK_S = 30.0


@dataclass
class Shop:
    ledger: LedgerSimulator
    reader: SimulatedCardReader
    pos: PosClient
    state_dir: Path

    def balance(self) -> int:
        balance = self.ledger.rules.balance(GOOD_CARD)
        assert balance is not None
        return balance

    def financial(self) -> list[str]:
        """The MTIs of what reached the ledger, network messages left out."""
        return [s.mti for s in self.ledger.seen if s.mti != "0800"]

    def journal(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        """Rows of the journal file as it is on disk, read from outside posd."""
        with sqlite3.connect(f"file:{self.state_dir / 'journal.db'}?mode=ro", uri=True) as db:
            return db.execute(query, args).fetchall()

    async def pay(self, amount: int, card: str = "seoroeum") -> dict[str, Any]:
        created = await self.pos.create(amount, "card")
        self.reader.present(card)
        return await self.pos.wait_final(created["payment_id"], timeout_s=20)

    async def refund(
        self, payment_id: str, amount: int, key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        body: dict[str, object] = {"amount": amount}
        if key is not None:
            body["idempotency_key"] = key
        status, answer = await self.pos.request("POST", f"/v1/payments/{payment_id}/refund", body)
        return status, dict(answer)

    async def ledger_down(self) -> None:
        await self.ledger.refuse_connections(True)
        await self.pos.wait_status(lambda s: s["ledger"]["link"] != "up", timeout_s=LINK_S)

    async def ledger_up(self) -> None:
        await self.ledger.refuse_connections(False)
        await self.pos.wait_status(lambda s: s["ledger"]["link"] == "up", timeout_s=LINK_S)


@contextlib.asynccontextmanager
async def posd_run(tmp_path: Path) -> AsyncIterator[Shop]:
    """`posd run` with the reference ledger up and the simulated reader, both ready."""
    async with ledger_and_reader(tmp_path) as (ledger, reader, config_path):
        config = load_config(config_path)
        async with daemon_process(config_path):
            pos = PosClient(config.api.socket)
            try:
                await pos.wait_reader_and_ledger()
                yield Shop(ledger, reader, pos, config.storage.state_dir)
            finally:
                await pos.session.close()


async def test_with_the_ledger_down_a_refund_is_declined_ledger_unavailable_nothing_queued(
    tmp_path: Path,
) -> None:
    async with posd_run(tmp_path) as shop:
        before = shop.balance()
        paid = await shop.pay(5_000)
        assert paid["state"] == "approved", paid
        await shop.ledger_down()

        status, refund = await shop.refund(paid["payment_id"], 5_000, "refund-1")
        assert status == 202, refund
        assert (refund["state"], refund["decline_reason"]) == ("declined", "ledger_unavailable")
        assert refund["original_payment_id"] == paid["payment_id"]
        assert refund["stan"] is None and refund["response_code"] is None
        assert (await shop.pos.payment(refund["payment_id"]))["state"] == "declined"
        # Nothing queued, in the API or on disk, and no STAN spent on it.
        assert await shop.pos.request("GET", "/v1/saf") == (200, {"queue": []})
        assert shop.journal("SELECT count(*) FROM saf") == [(0,)]
        assert shop.journal(
            "SELECT state, stan, decline_reason FROM payments WHERE id = ?", refund["payment_id"]
        ) == [("declined", None, "ledger_unavailable")]

        # Once the ledger is back nothing of that refund reaches it, and the declined one
        # holds nothing back: the whole amount can be refunded, once.
        await shop.ledger_up()
        status, again = await shop.refund(paid["payment_id"], 5_000, "refund-2")
        assert (status, again["state"]) == (202, "approved"), again
        assert shop.financial() == ["0200", "0200"]  # the purchase and refund-2
        assert shop.balance() == before


def hold_advices(ledger: LedgerSimulator) -> tuple[asyncio.Event, asyncio.Event]:
    """(arrived, release): the ledger holds every advice (0220, 0221) as it arrives, before
    acting on it, until `release` is set; `arrived` is set at the first."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        await release.wait()

    def listener(event: LedgerEvent) -> Awaitable[None] | None:
        if event.kind == "received" and event.mti in ("0220", "0221"):
            arrived.set()
            return hold()
        return None

    ledger.add_listener(listener)
    return arrived, release


async def test_a_refund_of_an_offline_payment_whose_advice_is_queued_is_declined_advice_pending(
    tmp_path: Path,
) -> None:
    async with posd_run(tmp_path) as shop:
        before = shop.balance()
        await shop.ledger_down()
        paid = await shop.pay(10_000, card="approves-offline")
        assert (paid["state"], paid["offline"]) == ("approved_offline", True), paid
        pid = paid["payment_id"]

        # The ledger down too: still advice_pending, the reason that outlasts the outage.
        status, down = await shop.refund(pid, 10_000, "refund-0")
        assert (status, down["state"], down["decline_reason"]) == (
            202,
            "declined",
            "advice_pending",
        ), down

        arrived, release = hold_advices(shop.ledger)
        await shop.ledger_up()
        async with asyncio.timeout(LINK_S):
            await arrived.wait()
        # The link is up and the advice is at the ledger, not yet taken.
        status, refund = await shop.refund(pid, 4_000, "refund-1")
        assert status == 202, refund
        assert (refund["state"], refund["decline_reason"]) == ("declined", "advice_pending")
        assert refund["stan"] is None and refund["original_payment_id"] == pid
        assert (await shop.pos.payment(pid))["state"] == "approved_offline"
        assert shop.journal("SELECT kind FROM saf WHERE completed_at IS NULL") == [("advice",)]
        assert "0200" not in shop.financial()

        # Once the ledger took the advice, the same payment is refunded like any other.
        release.set()
        await shop.pos.wait_state(pid, {"forwarded"}, timeout_s=LINK_S)
        status, again = await shop.refund(pid, 10_000, "refund-2")
        assert (status, again["state"]) == (202, "approved"), again
        assert shop.financial().count("0200") == 1
        assert shop.balance() == before


async def test_a_refund_key_reused_for_another_refund_is_409_and_repeated_gets_the_first(
    tmp_path: Path,
) -> None:
    async with posd_run(tmp_path) as shop:
        before = shop.balance()
        first = await shop.pay(10_000)
        second = await shop.pay(3_000)
        assert (first["state"], second["state"]) == ("approved", "approved")
        status, refund = await shop.refund(first["payment_id"], 4_000, "refund-1")
        assert (status, refund["state"]) == (202, "approved"), refund

        for original, amount in ((first, 5_000), (second, 4_000), (second, 1_000)):
            status, body = await shop.refund(original["payment_id"], amount, "refund-1")
            assert (status, body["error"]["code"]) == (409, "idempotency_key_reused"), body
        status, again = await shop.refund(first["payment_id"], 4_000, "refund-1")
        assert (status, again) == (202, refund)
        # With the ledger down too: the first answer, not a new decline; a differing one, 409.
        await shop.ledger_down()
        status, again = await shop.refund(first["payment_id"], 4_000, "refund-1")
        assert (status, again) == (202, refund)
        status, body = await shop.refund(first["payment_id"], 4_001, "refund-1")
        assert (status, body["error"]["code"]) == (409, "idempotency_key_reused"), body

        assert shop.financial() == ["0200", "0200", "0200"]  # two purchases, one refund
        assert shop.balance() == before - 10_000 - 3_000 + 4_000
        assert shop.journal("SELECT count(*) FROM payments WHERE kind = 'refund'") == [(1,)]


def hang_after_taking_complete(reader: SimulatedCardReader) -> asyncio.Event:
    """The reader takes the first COMPLETE (ACKs it) and hangs before its COMPLETE_RESULT gets
    through (that frame goes out damaged and is never repeated): posd waits out its whole
    COMPLETE_RESULT timeout with the approval journaled and the card undecided. The event is
    set when the COMPLETE arrived."""

    def hang() -> None:
        reader.corrupt_next_frame()
        # After this round of the reader's: its ACK and the damaged frame go out first.
        asyncio.get_running_loop().call_soon(reader.go_silent)

    return on_reader_command(reader, srl.Complete, hang)


async def test_a_refund_of_a_chip_payment_whose_card_has_not_answered_complete_is_409(
    tmp_path: Path,
) -> None:
    async with posd_run(tmp_path) as shop:
        before = shop.balance()
        arrived = hang_after_taking_complete(shop.reader)
        created = await shop.pos.create(4_000, "card")
        pid = created["payment_id"]
        shop.reader.present("seoroeum")
        async with asyncio.timeout(20):
            await arrived.wait()
        undecided = "SELECT state, card_data IS NOT NULL FROM payments WHERE id = ?"
        assert shop.journal(undecided, pid) == [("approved", 1)]

        status, body = await shop.refund(pid, 4_000, "refund-1")
        assert (status, body["error"]["code"]) == (409, "wrong_state"), body
        # Answered in the window: the card still undecided, the POS still shown authorizing.
        assert shop.journal(undecided, pid) == [("approved", 1)]
        assert (await shop.pos.payment(pid))["state"] == "authorizing"
        assert shop.journal("SELECT count(*) FROM payments WHERE kind = 'refund'") == [(0,)]

        # The card never answers: the approval is reversed, and only the reversal gives the
        # money back; a refund of the reversed payment is refused too.
        done = await shop.pos.wait_state(pid, {"reversed"}, timeout_s=LINK_S)
        assert done["decline_reason"] == "reader_error", done
        status, body = await shop.refund(pid, 4_000, "refund-2")
        assert (status, body["error"]["code"]) == (409, "wrong_state"), body
        assert shop.financial() == ["0200", "0400"]
        assert shop.balance() == before
