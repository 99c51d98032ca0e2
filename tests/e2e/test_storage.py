"""A disk that fills up under posd (a real small tmpfs): the card's transaction still ends, a
payment whose 0200 went out is reversed once the journal can record it, and until then no
payment is taken, with a 503 that names the storage and the status showing it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from posd.runtime import Backoff
from posd.sim import GOOD_QR_ACCOUNT
from protocols import srl_messages as srl
from tests.helpers.daemon import WAIT_S, RunningDaemon, financial, pay_card, running_daemon
from tests.helpers.filesystem import fill, small_filesystem

pytestmark = pytest.mark.timeout(60)

# Quick restarts, so that recovery is retried soon after space is freed.
FAST_RESTARTS = Backoff(initial_s=0.05, max_s=0.5)


async def until(check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


async def refused_create(d: RunningDaemon, method: str) -> dict[str, Any]:
    status, body = await d.request(
        "POST",
        "/v1/payments",
        {"amount": 1_000, "method": method, "idempotency_key": "while-full", "benefit_plus": False},
    )
    assert status == 503, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == "device_not_ready"
    assert "journal storage failed" in error["message"], error
    return error


async def test_a_disk_full_after_the_0210_ends_the_card_holds_payments_and_reverses_later(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "fs", "8m") as fs:
        async with running_daemon(fs, card_reader=True, backoff=FAST_RESTARTS) as d:
            assert d.reader is not None
            assert (await pay_card(d))["state"] == "approved"
            # The disk fills while the ledger works on the 0200: its approval cannot be kept.
            d.ledger.faults.delay_s = 1.5
            told = len(d.reader.received)
            created = await d.create(1_000, "card")
            payment_id = str(created["payment_id"])
            d.reader.present("seoroeum")
            await until(lambda: financial(d) == ["0200", "0200"])
            filler = fill(fs)
            reader = d.reader
            await until(lambda: reader.received[-1] == srl.Complete("Z1"))
            assert [type(m) for m in reader.received[told:]] == [srl.StartRead, srl.Complete]
            assert (await d.payment(payment_id))["state"] == "authorizing"
            status = await d.wait_status(lambda s: s["storage"]["state"] == "error")
            assert "full" in status["storage"]["last_error"]
            # The reader is free, but the ledger may hold this payment's money.
            await refused_create(d, "card")
            assert financial(d) == ["0200", "0200"]

            filler.unlink()
            d.ledger.faults.delay_s = 0
            done = await d.wait_state(payment_id, {"reversed"})
            assert done["decline_reason"] == "interrupted"
            assert financial(d)[:3] == ["0200", "0200", "0400"]
            await d.wait_status(lambda s: s["storage"] == {"state": "ready", "last_error": None})
            assert (await pay_card(d))["state"] == "approved"


async def test_a_full_disk_refuses_new_payments_with_503_until_space_is_freed(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "fs", "8m") as fs:
        async with running_daemon(fs) as d:
            filler = fill(fs)
            await refused_create(d, "qr")
            status = await d.wait_status(lambda s: s["storage"]["state"] == "error")
            assert "journal storage failed" in status["storage"]["last_error"]
            assert financial(d) == []
            filler.unlink()
            created = await d.create(1_000, "qr", key="while-full")
            assert created["state"] == "waiting_for_card"
            status = await d.wait_status(lambda s: s["storage"]["state"] == "ready")
            assert status["storage"]["last_error"] is None


def journal_state(d: RunningDaemon, payment_id: str) -> str | None:
    """The payment's state as the journal file holds it, read by a connection of our own."""
    db = sqlite3.connect(f"file:{d.state_dir / 'journal.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT state FROM payments WHERE id = ?", (payment_id,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        db.close()


async def test_a_card_refusal_the_full_disk_cannot_record_is_reversed_once_it_can(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "fs", "8m") as fs:
        async with running_daemon(fs, card_reader=True, backoff=FAST_RESTARTS) as d:
            assert d.reader is not None
            assert (await pay_card(d))["state"] == "approved"
            reader = d.reader
            d.ledger.faults.delay_s = 0.3
            created = await d.create(1_000, "card")
            payment_id = str(created["payment_id"])
            reader.present("declines-at-complete")
            await until(lambda: financial(d) == ["0200", "0200"])
            # The card answers only once the ledger's approval is in the journal and the disk
            # is full: its refusal's reversal cannot be recorded.
            reader.go_silent()
            await until(lambda: journal_state(d, payment_id) == "approved")
            filler = fill(fs)
            reader.wake()
            await d.wait_status(lambda s: s["storage"]["state"] == "error")
            # The ledger approved, the card did not: not approved for the POS.
            assert (await d.payment(payment_id))["state"] == "authorizing"
            await refused_create(d, "card")
            assert financial(d) == ["0200", "0200"]

            filler.unlink()
            d.ledger.faults.delay_s = 0
            done = await d.wait_state(payment_id, {"reversed"})
            assert done["decline_reason"] in ("card_declined", "reader_error"), done
            assert financial(d)[:3] == ["0200", "0200", "0400"]
            await d.wait_status(lambda s: s["storage"]["state"] == "ready")
            assert (await pay_card(d))["state"] == "approved"


async def test_a_refund_whose_answer_the_full_disk_cannot_record_is_reversed_once_it_can(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "fs", "8m") as fs:
        async with running_daemon(fs, backoff=FAST_RESTARTS) as d:
            created = await d.create(10_000, "qr")
            await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
            paid = await d.wait_final(str(created["payment_id"]))
            assert paid["state"] == "approved"
            d.ledger.faults.delay_s = 0.5
            refund = asyncio.create_task(
                d.request("POST", f"/v1/payments/{paid['payment_id']}/refund", {"amount": 2_500})
            )
            await until(lambda: financial(d) == ["0200", "0200"])
            filler = fill(fs)
            status, body = await refund
            assert (status, body["error"]["code"]) == (503, "device_not_ready"), body
            assert "journal storage failed" in body["error"]["message"]
            await refused_create(d, "qr")
            assert financial(d) == ["0200", "0200"]

            filler.unlink()
            d.ledger.faults.delay_s = 0
            await until(lambda: financial(d)[2:3] == ["0400"])
            await d.wait_status(
                lambda s: s["storage"]["state"] == "ready" and not s["saf"]["pending"]
            )
            status, again = await d.request(
                "POST", f"/v1/payments/{paid['payment_id']}/refund", {"amount": 2_500}
            )
            assert status in (200, 202) and again["state"] == "approved", again
