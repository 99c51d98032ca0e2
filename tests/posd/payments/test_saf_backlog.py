"""A full backlog being forwarded never holds a payment's 0200 behind it: through the daemon,
against the reference ledger with WAN latency and slow advice answers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from posd.payments.saf import WINDOW
from posd.sim.ledger_accounts import GOOD_QR_ACCOUNT
from tests.helpers.backlog import queue_advices
from tests.helpers.daemon import running_daemon

pytestmark = pytest.mark.timeout(90)
BACKLOG = 40
ADVICE_ANSWER_S = 2.0  # the ledger books advices slowly: the backlog takes ~20 s to drain


async def test_a_payment_made_while_the_backlog_is_forwarded_does_not_wait_for_it(
    tmp_path: Path,
) -> None:
    await queue_advices(tmp_path / "state", BACKLOG, now=time.time())
    async with running_daemon(tmp_path, ledger_up=False) as d:
        d.ledger.latency_s = 0.02
        d.ledger.faults.delay_mti = {"0220": ADVICE_ANSWER_S}
        await d.ledger.refuse_connections(False)

        def advices() -> int:
            return sum(1 for s in d.ledger.seen if s.mti == "0220")

        # The forwarding has begun: a full window of advices is at the ledger, unanswered.
        await d.ledger.wait_seen(lambda s: advices() >= WINDOW, timeout_s=10)
        created = await d.create(5_000, "qr")
        await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
        done = await d.wait_final(str(created["payment_id"]))
        assert (done["state"], done["offline"]) == ("approved", False)
        _, status = await d.request("GET", "/v1/status")
        # Approved online while most of the backlog was still waiting for its turn.
        assert status["saf"]["pending"] > BACKLOG // 2
        answered = [e for e in d.ledger.events if e.kind == "answered" and e.mti == "0230"]
        assert len(answered) < BACKLOG // 2
        assert sum(1 for s in d.ledger.seen if s.mti == "0200") == 1
