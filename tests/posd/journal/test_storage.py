"""The journal on failing storage: a full disk is a JournalStorageError that records nothing and
loses nothing; a journal restored with loose file modes is made private on open."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import stat
import uuid
from pathlib import Path

import pytest

from posd.journal import (
    Journal,
    JournalHolder,
    JournalNotOpen,
    JournalStorageError,
    storage_failure,
)
from posd.journal.store import JournalCore
from tests.helpers.filesystem import fill, small_filesystem

NOW = 1_795_600_000.0


async def create(j: Journal, key: str) -> tuple[str, bool]:
    record, created = await j.create_payment(
        amount=1_000, charged=1_000, method="card", idempotency_key=key, now=NOW
    )
    return record.payment_id, created


async def test_a_full_disk_records_nothing_loses_nothing_and_recovers(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs") as fs:
        journal = await Journal.open(fs / "state")
        try:
            first, _ = await create(journal, "before")
            filler = fill(fs)
            with pytest.raises(JournalStorageError) as raised:
                await create(journal, "during")
            assert "journal storage failed" in str(raised.value)
            assert "full" in raised.value.reason
            assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
            # Reads still answer, and the refused payment left no trace.
            assert [r.payment_id for r in await journal.in_flight()] == [first]
            assert await journal.by_idempotency_key("during") is None
            filler.unlink()
            second, created = await create(journal, "during")
            assert created and second != first
            assert {r.payment_id for r in await journal.in_flight()} == {first, second}
        finally:
            await journal.close()


def test_sqlite_full_from_a_page_limit_is_a_storage_failure(tmp_path: Path) -> None:
    # No mount needed: max_page_count makes SQLite itself answer SQLITE_FULL.
    core = JournalCore(tmp_path / "state")
    try:
        pages = core._conn.execute("PRAGMA page_count").fetchone()[0]
        core._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(sqlite3.OperationalError) as raised:
            for n in range(10_000):
                core.create_payment(
                    amount=1_000,
                    charged=1_000,
                    method="qr",
                    idempotency_key=f"k{n}",
                    now=NOW,
                )
        assert raised.value.sqlite_errorcode == sqlite3.SQLITE_FULL
        assert storage_failure(raised.value)
        assert not core._conn.in_transaction
    finally:
        core.close()


def test_query_errors_are_not_storage_failures(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db")
    try:
        with pytest.raises(sqlite3.OperationalError) as raised:
            conn.execute("SELECT * FROM no_such_table")
        assert not storage_failure(raised.value)
    finally:
        conn.close()
    assert not storage_failure(sqlite3.OperationalError("database or disk is full"))
    assert not storage_failure(OSError(errno.ENOSPC, "No space left on device"))


async def test_a_restored_journal_and_its_wal_files_are_made_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    journal = await Journal.open(state)
    paid, _ = await create(journal, uuid.uuid4().hex)
    await journal.close()
    db = state / "journal.db"
    # A restore from backup: the files world-readable, a reader still holding the WAL open.
    os.chmod(db, 0o644)
    other = sqlite3.connect(db)
    try:
        other.execute("PRAGMA journal_mode=WAL")
        other.execute("SELECT count(*) FROM payments").fetchone()
        companions = [state / "journal.db-wal", state / "journal.db-shm"]
        for file in companions:
            assert file.exists()
            os.chmod(file, 0o644)
        with caplog.at_level(logging.WARNING, logger="posd.journal"):
            journal = await Journal.open(state)
        try:
            for file in (db, *companions):
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
            warned = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
            assert warned == {
                f"journal file {f} was mode 644; set to 0600" for f in (db, *companions)
            }
            record = await journal.get(paid)
            assert record is not None
        finally:
            await journal.close()
    finally:
        other.close()


async def test_a_private_journal_is_left_as_it_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    await (await Journal.open(state)).close()
    db = state / "journal.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with caplog.at_level(logging.WARNING, logger="posd.journal"):
        await (await Journal.open(state)).close()
    assert not [r for r in caplog.records if r.name == "posd.journal"]
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


async def test_a_journal_that_cannot_open_on_a_full_disk_says_so_to_its_users(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "fs") as fs:
        await (await Journal.open(fs / "state")).close()
        filler = fill(fs)
        holder = JournalHolder(fs / "state")
        with pytest.raises(JournalStorageError):
            await holder.run(lambda: None)
        with pytest.raises(JournalNotOpen, match="cannot be opened: journal storage failed"):
            holder()
        filler.unlink()
        started = asyncio.Event()
        running = asyncio.create_task(holder.run(started.set))
        try:
            async with asyncio.timeout(10):
                await started.wait()
            assert (
                await holder().create_payment(
                    amount=1_000, charged=1_000, method="qr", idempotency_key="k", now=NOW
                )
            )[1]
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
