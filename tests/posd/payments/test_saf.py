"""The store-and-forward sender: what settles an entry, what does not, and when it is sent.

Through the whole daemon against the reference ledger where the ledger can be made to answer
so, and the sender alone on a real journal and ledger link where the moment matters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from posd.journal import CardSecrets, Journal, JournalHolder, PaymentRecord
from posd.ledger import LedgerClient, LedgerUnavailable
from posd.payments import SafForwarder, request_fields
from posd.sim import LedgerSimulator
from posd.sim.ledger_accounts import DEMO_QR_ACCOUNT, GOOD_CARD, GOOD_QR_ACCOUNT
from protocols.ledger_messages import LedgerRequest, LedgerResponse, build_reversal
from tests.helpers.daemon import RunningDaemon, running_daemon
from tests.helpers.ledger import MAC_KEY, WAIT_S, now, plain_client, purchase

pytestmark = pytest.mark.timeout(60)
# The tests that let a 0200 go unanswered wait this long for it (loopback answers take ms).
QUICK_0200 = {"timeout_s": 1.0}


async def qr_payment(d: RunningDaemon, amount: int, account: str = GOOD_QR_ACCOUNT) -> str:
    created = await d.create(amount, "qr")
    await d.scanner.scan(d.issuer.valid(account))
    return str(created["payment_id"])


def financial_mtis(d: RunningDaemon | LedgerSimulator) -> list[str]:
    sim = d.ledger if isinstance(d, RunningDaemon) else d
    return [s.mti for s in sim.seen if s.network_code is None]


def errors_about(caplog: pytest.LogCaptureFixture, payment_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and payment_id in r.getMessage()
    ]


# ---- through the daemon ------------------------------------------------------------------


async def test_a_reversal_answered_30_is_not_settled_and_needs_attention(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_daemon(tmp_path, saf_retry_interval_s=600, ledger=QUICK_0200) as d:
        before = d.ledger.rules.balance(GOOD_QR_ACCOUNT)
        assert before is not None
        d.ledger.faults.no_answer = True
        pid = await qr_payment(d, 5_000)
        await d.ledger.wait_seen(lambda s: s.mti == "0200")  # booked, its answer lost
        d.ledger.faults.no_answer = False
        d.ledger.faults.respond_with = "30"
        await d.wait_state(pid, {"reversing"})
        status = await d.wait_status(lambda s: s["saf"]["needs_attention"] == 1)
        assert status["saf"]["pending"] == 1
        assert (await d.payment(pid))["state"] == "reversing"
        assert d.ledger.rules.balance(GOOD_QR_ACCOUNT) == before - 5_000  # still charged
        _, body = await d.request("GET", "/v1/saf")
        [entry] = body["queue"]
        assert (entry["payment_id"], entry["kind"], entry["attempts"]) == (pid, "reversal", 1)
        assert "30" in entry["last_error"] and "needs attention" in entry["last_error"]
        [logged] = errors_about(caplog, pid)
        assert entry["stan"] in logged and "30 (format error)" in logged
        assert GOOD_QR_ACCOUNT not in caplog.text

        # Once the ledger works again, a flush sends the repeat at once and it is settled.
        d.ledger.faults.respond_with = None
        status_code, flushed = await d.request("POST", "/v1/saf/flush")
        assert (status_code, flushed) == (200, {"forwarded": 1, "pending": 0})
        assert (await d.payment(pid))["state"] == "reversed"
        assert d.ledger.rules.balance(GOOD_QR_ACCOUNT) == before
        assert financial_mtis(d) == ["0200", "0400", "0401"]
        status = await d.wait_status(lambda s: s["saf"]["pending"] == 0)
        assert status["saf"]["needs_attention"] == 0


async def test_a_refused_entry_is_held_without_holding_back_the_others(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, saf_retry_interval_s=600, ledger=QUICK_0200) as d:
        d.ledger.faults.no_answer = True
        refused = await qr_payment(d, 5_000)
        await d.ledger.wait_seen(lambda s: s.mti == "0200")
        d.ledger.faults.no_answer = False
        d.ledger.faults.respond_with = "13"
        await d.wait_status(lambda s: s["saf"]["needs_attention"] == 1)
        d.ledger.faults.respond_with = None
        await d.ledger.refuse_connections(True)
        await d.wait_status(lambda s: s["ledger"]["link"] != "up")
        offline = await qr_payment(d, 3_000, DEMO_QR_ACCOUNT)
        assert (await d.wait_final(offline))["state"] == "approved_offline"
        await d.ledger.refuse_connections(False)
        # The link coming back starts a pass: the newer advice goes, the held reversal waits
        # for its retry interval (600 s here) instead of being sent again at once.
        assert (await d.wait_state(offline, {"forwarded"}))["offline"] is True
        assert financial_mtis(d) == ["0200", "0400", "0220"]
        _, body = await d.request("GET", "/v1/saf")
        assert [(e["payment_id"], e["attempts"]) for e in body["queue"]] == [(refused, 1)]
        assert (await d.payment(refused))["state"] == "reversing"


async def test_an_advice_refused_by_the_ledger_is_declined_not_forwarded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_daemon(tmp_path, ledger_up=False) as d:
        pid = await qr_payment(d, 5_000)
        assert (await d.wait_final(pid))["state"] == "approved_offline"
        d.ledger.faults.respond_with = "14"
        await d.ledger.refuse_connections(False)
        done = await d.wait_state(pid, {"declined", "forwarded"})
        assert (done["state"], done["response_code"], done["decline_reason"]) == (
            "declined",
            "14",
            "advice_refused",
        )
        assert done["offline"] is True and done["auth_code"].startswith("Y1")
        _, totals = await d.request("GET", "/v1/totals")
        assert totals["approved"] == {"count": 0, "amount": 0, "charged": 0}
        status = await d.wait_status(lambda s: s["saf"]["pending"] == 0)
        assert status["payments_today"]["approved"] == 0
        assert financial_mtis(d) == ["0220"]  # a decision: not sent again
        [logged] = errors_about(caplog, pid)
        assert "14 (invalid card or account)" in logged and "advice_refused" in logged
        assert GOOD_QR_ACCOUNT not in caplog.text


async def test_an_advice_answered_30_stays_approved_offline_until_the_ledger_books_it(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, ledger_up=False, saf_retry_interval_s=600) as d:
        pid = await qr_payment(d, 5_000)
        assert (await d.wait_final(pid))["state"] == "approved_offline"
        d.ledger.faults.respond_with = "30"
        await d.ledger.refuse_connections(False)
        status = await d.wait_status(lambda s: s["saf"]["needs_attention"] == 1)
        assert status["saf"]["pending"] == 1
        _, totals = await d.request("GET", "/v1/totals")
        assert totals["approved"]["count"] == 1  # posd's offline approval stands meanwhile
        payment = await d.payment(pid)
        assert (payment["state"], payment["response_code"]) == ("approved_offline", None)
        d.ledger.faults.respond_with = None
        status_code, flushed = await d.request("POST", "/v1/saf/flush")
        assert (status_code, flushed) == (200, {"forwarded": 1, "pending": 0})
        forwarded = await d.payment(pid)
        assert (forwarded["state"], forwarded["response_code"]) == ("forwarded", "00")
        assert financial_mtis(d) == ["0220", "0221"]


# ---- the sender alone --------------------------------------------------------------------


@dataclass
class LinkGoneAtFirstSend:
    """The real ledger client, except that its first send finds the link gone after is_up()
    said it was up: the race LedgerUnavailable reports, which no socket produces on demand."""

    client: LedgerClient
    refused: int = 0

    @property
    def link(self) -> str:
        return self.client.link

    @property
    def last_rtt_ms(self) -> float | None:
        return self.client.last_rtt_ms

    @property
    def last_error(self) -> str | None:
        return self.client.last_error

    def is_up(self) -> bool:
        return self.client.is_up()

    async def wait_up(self) -> None:
        await self.client.wait_up()

    async def send(self, message: LedgerRequest, timeout_s: float) -> LedgerResponse:
        if not self.refused:
            self.refused += 1
            raise LedgerUnavailable("ledger link went down before sending")
        return await self.client.send(message, timeout_s)


@dataclass
class Rig:
    sim: LedgerSimulator
    client: LedgerClient
    journal: Journal
    settled: asyncio.Queue[PaymentRecord]

    async def queue_reversal(self) -> PaymentRecord:
        """A card payment whose 0200 never went out, reversed: the ledger answers 00."""
        record, _ = await self.journal.create_payment(
            amount=7_000, charged=7_000, method="card", idempotency_key="k", now=1e9
        )
        record = await self.journal.begin_authorization(
            record.payment_id, CardSecrets("chip", GOOD_CARD), 1e9
        )
        assert record.stan is not None
        original = purchase(GOOD_CARD, 7_000, stan=record.stan)
        stan = await self.journal.allocate_stan(1e9)
        reversal = build_reversal(original, stan=stan, transmitted_at=now(), local_now=now())
        record, _ = await self.journal.start_reversal(
            record.payment_id,
            fields=request_fields(reversal),
            stan=stan,
            now=1e9,
            decline_reason="ledger_timeout",
        )
        return record


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with LedgerSimulator(mac_key=MAC_KEY) as sim:
        client = plain_client(sim.port)
        link = asyncio.create_task(client.run(lambda: None))
        journal = await Journal.open(tmp_path)
        try:
            async with asyncio.timeout(WAIT_S):
                await client.wait_up()
            yield Rig(sim, client, journal, asyncio.Queue())
        finally:
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
            await journal.close()


@asynccontextmanager
async def forwarding(rig: Rig, ledger: object) -> AsyncIterator[SafForwarder]:
    """The sender running, its retry interval far past any bound of these tests."""
    forwarder = SafForwarder(
        JournalHolder.of(rig.journal),
        ledger,  # type: ignore[arg-type]
        timeout_s=2.0,
        retry_interval_s=600.0,
    )
    forwarder.on_settled = rig.settled.put_nowait
    task = asyncio.create_task(forwarder.run(lambda: None))
    try:
        yield forwarder
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_send_that_never_went_out_is_no_attempt_and_waits_only_for_the_link(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        record = await r.queue_reversal()
        racing = LinkGoneAtFirstSend(r.client)
        async with forwarding(r, racing):
            async with asyncio.timeout(WAIT_S):  # far below the 600 s retry interval
                settled = await r.settled.get()
        assert racing.refused == 1
        assert (settled.payment_id, settled.state) == (record.payment_id, "reversed")
        assert financial_mtis(r.sim) == ["0400"]  # its first transmission, not a repeat


async def test_a_link_lost_after_sending_counts_and_the_repeat_follows_the_reconnect(
    tmp_path: Path,
) -> None:
    async with rig(tmp_path) as r:
        record = await r.queue_reversal()
        r.sim.faults.drop_mid_message = True  # the 0400 is acted on, its answer cut short
        async with forwarding(r, r.client):
            async with asyncio.timeout(WAIT_S):  # far below the 600 s retry interval
                settled = await r.settled.get()
        assert (settled.payment_id, settled.state) == (record.payment_id, "reversed")
        assert financial_mtis(r.sim) == ["0400", "0401"]
        assert r.sim.connections_accepted == 2


async def test_an_answer_code_outside_the_profile_needs_attention_without_a_crash(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, saf_retry_interval_s=600, ledger=QUICK_0200) as d:
        d.ledger.faults.no_answer = True
        pid = await qr_payment(d, 2_000)
        await d.ledger.wait_seen(lambda s: s.mti == "0200")
        d.ledger.faults.no_answer = False
        # an2 allows lower case; no rule of the profile gives "zz" a meaning.
        d.ledger.faults.respond_with = "zz"
        await d.wait_state(pid, {"reversing"})
        await d.wait_status(lambda s: s["saf"]["needs_attention"] == 1)
        _, body = await d.request("GET", "/v1/saf")
        [entry] = body["queue"]
        assert entry["needs_attention"] is True and entry["refused_code"] == "zz"
        d.ledger.faults.respond_with = None
        assert (await d.request("POST", "/v1/saf/flush"))[1] == {"forwarded": 1, "pending": 0}
        assert (await d.payment(pid))["state"] == "reversed"
