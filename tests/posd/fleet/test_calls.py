"""The call centre's list: one call per missed order and per deaf episode, kept across restarts."""

from __future__ import annotations

import datetime
import sqlite3
import time
from pathlib import Path

import pytest

from posd.fleet.calls import CALLED_KEPT_S, CallStore, CallStoreError, UnknownCall
from posd.fleet.console import Console
from posd.fleet.model import DeafChanged, FleetModel, MissedOrder
from tests.posd.fleet.fleetdata import order_event, rfc3339, state, terminal, topic

TID = terminal(7)
MISSED = MissedOrder(TID, "M000000000000007", "O-1", 1_000.0)


async def test_a_missed_order_is_one_call_also_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    store = await CallStore.open(db)
    call = await store.add_missed(MISSED, 1_300.0)
    assert call is not None
    assert (call.kind, call.terminal_id, call.order_id, call.at) == (
        "missed_order",
        TID,
        "O-1",
        1_000.0,
    )
    assert await store.add_missed(MISSED, 1_301.0) is None
    await store.close()
    store = await CallStore.open(db)
    try:
        assert await store.add_missed(MISSED, 1_400.0) is None
        assert [c.id for c in await store.current(1_500.0)] == [call.id]
        other = await store.add_missed(MissedOrder(terminal(8), None, "O-1", 900.0), 1_500.0)
        assert other is not None  # the same order id at another shop is another order
        assert [c.id for c in await store.current(1_500.0)] == [other.id, call.id]  # oldest first
    finally:
        await store.close()


async def test_one_call_per_deaf_episode(tmp_path: Path) -> None:
    store = await CallStore.open(tmp_path / "calls.db")
    try:
        first = await store.deaf_changed(DeafChanged(TID, None, True, 100.0, "no audio"), 100.0)
        assert first is not None and first.kind == "deaf" and first.order_id is None
        assert await store.deaf_changed(DeafChanged(TID, None, True, 150.0, None), 150.0) is None
        assert await store.deaf_changed(DeafChanged(TID, None, False, 200.0, None), 200.0) is None
        second = await store.deaf_changed(DeafChanged(TID, None, True, 300.0, "link"), 300.0)
        assert second is not None and second.id != first.id
        assert [c.at for c in await store.current(400.0)] == [100.0, 300.0]
    finally:
        await store.close()


async def test_marking_called_keeps_the_first_time_and_the_latest_note(tmp_path: Path) -> None:
    store = await CallStore.open(tmp_path / "calls.db")
    try:
        call = await store.add_missed(MISSED, 1_300.0)
        assert call is not None and not call.called
        done = await store.mark_called(call.id, "no answer", 2_000.0)
        assert (done.called, done.called_at, done.note) == (True, 2_000.0, "no answer")
        again = await store.mark_called(call.id, "reached the owner", 2_100.0)
        assert (again.called_at, again.note) == (2_000.0, "reached the owner")
        with pytest.raises(UnknownCall):
            await store.mark_called(call.id + 100, "", 2_200.0)
        assert [c.id for c in await store.current(2_000.0 + CALLED_KEPT_S - 1)] == [call.id]
        assert await store.current(2_000.0 + CALLED_KEPT_S + 1) == []
    finally:
        await store.close()


async def test_a_file_that_is_not_the_consoles_database_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database file, just text" * 100)
    with pytest.raises(CallStoreError, match="not a usable SQLite database"):
        await CallStore.open(junk)
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=9")
    with pytest.raises(CallStoreError, match="newer console"):
        await CallStore.open(newer)
    with pytest.raises(CallStoreError, match="cannot be opened"):
        await CallStore.open(tmp_path / "no-such-dir" / "calls.db")


def _console_day(epoch: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).date()


async def test_through_the_console_a_redelivered_missed_order_after_a_restart_is_no_new_call(
    tmp_path: Path,
) -> None:
    db = tmp_path / "calls.db"
    now = time.time()
    payload = order_event(now, "O-42", "missed", placed_at=now - 310, event_id="ev-42")
    deaf_state = state(TID, now, can_alert=False, reason="no working audio output")
    async with Console.open(db, FleetModel(), day=_console_day) as console:
        console.feed(topic(TID, "state"), deaf_state, True, now)
        console.feed(topic(TID, "event/order"), payload, False, now)
        await console.settle()
        calls = console.call_list()
        assert [(c.kind, c.order_id) for c in calls] == [("missed_order", "O-42"), ("deaf", None)]
        assert console.summary()["missed_uncalled"] == 1
        await console.mark_called(calls[0].id, "called, order accepted late")
        assert console.summary()["missed_uncalled"] == 0
    async with Console.open(db, FleetModel(), day=_console_day) as console:
        # The retained deaf state again, and the broker redelivering the same missed event.
        console.feed(topic(TID, "state"), deaf_state, True, now + 5)
        console.feed(topic(TID, "event/order"), payload, False, now + 5)
        await console.settle()
        after = console.call_list()
        assert [(c.id, c.called, c.note) for c in after] == [
            (calls[0].id, True, "called, order accepted late"),
            (calls[1].id, False, None),
        ]
        assert console.summary()["missed_uncalled"] == 0


async def test_missed_uncalled_counts_only_todays_orders(tmp_path: Path) -> None:
    now = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.UTC).timestamp()
    async with Console.open(
        tmp_path / "c.db", FleetModel(), clock=lambda: now, day=_console_day
    ) as console:
        for order_id, placed_at in (("today", now - 600), ("yesterday", now - 86_400)):
            console.feed(
                topic(TID, "event/order"),
                order_event(now, order_id, "missed", placed_at=placed_at),
                False,
                now,
            )
        await console.settle()
        assert [c.order_id for c in console.call_list()] == ["yesterday", "today"]
        assert console.summary()["missed_uncalled"] == 1
        assert console.summary()["as_of"] == rfc3339(now)
