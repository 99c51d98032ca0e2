"""The `offline.max_age_h` alarm: an entry older than it is an ERROR at most hourly, a flag and
the oldest age in the status object, a `saf` event, and it keeps being sent.

offline.max_age_h is whole hours (1 to MAX_AGE_H), so the entries here are made old: queued
with an old timestamp in a real journal."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from posd.journal import Journal, JournalHolder
from posd.monitoring import mqtt_event
from posd.payments import SafForwarder
from posd.sim import LedgerSimulator
from tests.helpers.backlog import AMOUNT, queue_advices
from tests.helpers.daemon import running_daemon
from tests.helpers.ledger import MAC_KEY, WAIT_S, wait_until
from tests.helpers.saf import T0, Queue, link, stans_received

pytestmark = pytest.mark.timeout(60)
MAX_AGE_H = 72
HOUR = 3600.0


def alarm_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and "offline.max_age_h" in r.getMessage()
    ]


async def test_an_entry_older_than_max_age_h_alarms_hourly_and_is_still_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Time runs as it does, from 73 h after T0, when the reversal was queued.
    offset = [T0 + (MAX_AGE_H + 1) * HOUR - time.time()]
    journal = await Journal.open(tmp_path)
    try:
        queue = Queue(journal)
        old = await queue.reversal()
        async with LedgerSimulator(mac_key=MAC_KEY) as sim, link(sim) as client:
            stan = await queue.stan_of(old.payment_id)
            sim.faults.respond_with = "91"  # the ledger cannot take it yet
            forwarder = SafForwarder(
                JournalHolder.of(journal),
                client,
                timeout_s=5,
                retry_interval_s=0.4,
                max_age_h=MAX_AGE_H,
                clock=lambda: time.time() + offset[0],
            )
            alarms: asyncio.Queue[dict[str, object]] = asyncio.Queue()
            forwarder.on_alarm = alarms.put_nowait
            task = asyncio.create_task(forwarder.run(lambda: None))
            try:
                async with asyncio.timeout(WAIT_S):
                    raised = await alarms.get()
                assert raised["oldest_age_s"] >= (MAX_AGE_H + 1) * HOUR  # type: ignore[operator]
                assert {k: raised[k] for k in ("pending", "pending_amount", "alarm")} == {
                    "pending": 1,
                    "pending_amount": 7_000,
                    "alarm": True,
                }
                assert forwarder.alarm
                # Still sent, again and again: each try changes the queue and is looked at,
                # and within the hour none of those looks logs again.
                await wait_until(lambda: len(stans_received(sim, stan)) >= 4)
                [logged] = alarm_errors(caplog)
                assert "the oldest of 1 queued entries is 2628" in logged  # 262800 s and more
                offset[0] += HOUR
                forwarder.wake()
                await wait_until(lambda: len(alarm_errors(caplog)) == 2)
                # Sent once the ledger takes it: settled, the alarm ends.
                sim.faults.respond_with = None
                async with asyncio.timeout(WAIT_S):
                    cleared = await alarms.get()
                assert (cleared["alarm"], cleared["pending"], cleared["oldest_age_s"]) == (
                    False,
                    0,
                    None,
                )
                assert alarms.empty() and len(alarm_errors(caplog)) == 2
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        assert (await journal.get(old.payment_id)).state == "reversed"  # type: ignore[union-attr]
    finally:
        await journal.close()


async def test_the_status_object_and_a_saf_event_carry_the_alarm(tmp_path: Path) -> None:
    queued_at = time.time() - (MAX_AGE_H + 1) * HOUR
    [pid] = await queue_advices(tmp_path / "state", 1, now=queued_at)
    async with running_daemon(tmp_path, ledger_up=False) as d:
        status = await d.wait_status(lambda s: s["saf"]["alarm"] is True)
        saf = status["saf"]
        assert (saf["pending"], saf["pending_amount"]) == (1, AMOUNT)
        assert saf["oldest_age_s"] >= (MAX_AGE_H + 1) * HOUR
        events = d.daemon.runtime.events.subscribe(kinds={"saf"})
        try:
            await d.ledger.refuse_connections(False)
            assert (await d.wait_state(pid, {"forwarded"}))["offline"] is True
            status = await d.wait_status(lambda s: s["saf"]["pending"] == 0)
            assert status["saf"]["alarm"] is False
            async with asyncio.timeout(WAIT_S):
                event = await anext(events)
        finally:
            await events.aclose()
        mapped = mqtt_event(event, "boot", time.time())
        assert mapped is not None
        kind, payload = mapped
        assert kind == "saf"
        assert {k: payload[k] for k in ("pending", "pending_amount", "oldest_age_s", "alarm")} == {
            "pending": 0,
            "pending_amount": 0,
            "oldest_age_s": None,
            "alarm": False,
        }
