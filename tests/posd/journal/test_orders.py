"""The journal's orders table: each order_id once, ended once, kept across a reopen, and a
journal of the first schema (payments only) migrated in place."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posd.journal import ORDER_KEEP_DAYS, InvalidArgument, Journal, JournalError

NOW = 1_795_600_000.0
PAYLOAD = '{"order_id": "o-1"}'


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "state")
    yield j
    await j.close()


async def test_an_order_is_recorded_once_and_a_second_record_returns_the_first(
    journal: Journal,
) -> None:
    first, created = await journal.orders.record(
        "o-1", placed_at=NOW - 5, total=18_000, payload=PAYLOAD, now=NOW
    )
    assert created
    assert (first.state, first.placed_at, first.received_at) == (
        "alerting",
        (NOW - 5) * 1000,
        NOW * 1000,
    )
    again, created = await journal.orders.record(
        "o-1", placed_at=NOW, total=1, payload="{}", now=NOW + 60
    )
    assert not created and again == first
    assert await journal.orders.alerting() == [first]


async def test_an_order_ends_once_and_the_loser_of_a_race_is_told(journal: Journal) -> None:
    await journal.orders.record("o-1", placed_at=NOW, total=0, payload=PAYLOAD, now=NOW)
    # Both at once, as an ack from the POS meeting the missed deadline: one worker, one wins.
    results = await asyncio.gather(
        journal.orders.end("o-1", "acknowledged", NOW + 3, acked_by="pos"),
        journal.orders.end("o-1", "missed", NOW + 3),
    )
    (first, won_first), (second, won_second) = (r for r in results if r is not None)
    assert (won_first, won_second) == (True, False)
    assert first == second and first.state == "acknowledged" and first.acked_by == "pos"
    assert first.ended_at == (NOW + 3) * 1000
    assert await journal.orders.alerting() == []
    assert await journal.orders.end("o-unknown", "missed", NOW) is None


async def test_bad_arguments_record_nothing(journal: Journal) -> None:
    with pytest.raises(InvalidArgument, match="order_id"):
        await journal.orders.record("", placed_at=NOW, total=0, payload=PAYLOAD, now=NOW)
    with pytest.raises(InvalidArgument, match="total"):
        await journal.orders.record("o-1", placed_at=NOW, total=-1, payload=PAYLOAD, now=NOW)
    with pytest.raises(InvalidArgument, match="acked_by"):
        await journal.orders.end("o-1", "acknowledged", NOW)
    with pytest.raises(InvalidArgument, match="state"):
        await journal.orders.end("o-1", "alerting", NOW)
    assert await journal.orders.since(0) == []


async def test_orders_survive_a_reopen_and_old_ended_ones_are_dropped(tmp_path: Path) -> None:
    state = tmp_path / "state"
    journal = await Journal.open(state)
    old = NOW - (ORDER_KEEP_DAYS + 1) * 86_400
    await journal.orders.record("old-ended", placed_at=old, total=0, payload=PAYLOAD, now=old)
    await journal.orders.end("old-ended", "missed", old + 300)
    await journal.orders.record("old-alerting", placed_at=old, total=0, payload=PAYLOAD, now=old)
    await journal.orders.record("new", placed_at=NOW, total=0, payload=PAYLOAD, now=NOW)
    await journal.close()
    journal = await Journal.open(state)
    try:
        assert await journal.orders.get("old-ended") is None
        # An order still alerting is never dropped: the restart alerts it (and so misses it).
        assert [o.order_id for o in await journal.orders.alerting()] == ["old-alerting", "new"]
        assert [o.order_id for o in await journal.orders.since(NOW - 1)] == ["new"]
    finally:
        await journal.close()
    with pytest.raises(JournalError, match="closed"):
        await journal.orders.get("new")


async def test_a_journal_of_the_first_schema_gains_the_orders_table(tmp_path: Path) -> None:
    from posd.journal.schema import MIGRATIONS, SCHEMA_VERSION, _statements

    state = tmp_path / "state"
    journal = await Journal.open(state)
    await journal.close()
    db = sqlite3.connect(state / "journal.db", isolation_level=None)
    db.execute("DROP TABLE orders")
    # and what version 3 added (the queue's next attempt times)
    db.execute("DROP INDEX saf_next_attempt")
    db.execute("ALTER TABLE saf DROP COLUMN next_attempt_at")
    db.execute("UPDATE schema_version SET version = 1")
    db.close()
    assert "CREATE TABLE orders" in _statements(MIGRATIONS[1])[0]
    journal = await Journal.open(state)
    try:
        assert (await journal.settings())["schema_version"] == SCHEMA_VERSION
        _, created = await journal.orders.record(
            "o-1", placed_at=NOW, total=0, payload=PAYLOAD, now=NOW
        )
        assert created
    finally:
        await journal.close()
