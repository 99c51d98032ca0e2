"""The call centre's list, kept in the console's SQLite file (`--db FILE`).

A call is a missed order (one per terminal and order id, however often its event is
redelivered, restarts included: a unique index says so) or a deaf episode (one per terminal
while it lasts: a partial unique index on the open episode). An agent marks a call called,
with a note. Every write is committed with synchronous=FULL before it is answered: calls are
rare and must survive a crash.

All SQLite work runs on one worker thread (the connection lives there), so the event loop
never waits on a disk: bench_fleet_model prints what a write costs.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeVar

from posd.fleet.model import DeafChanged, MissedOrder
from posd.fleet.payloads import format_rfc3339

SCHEMA_VERSION: Final = 1
MAX_NOTE_CHARS: Final = 1000
# Called calls stay on the list this long, so agents see what was just done.
CALLED_KEPT_S: Final = 24 * 3600.0

CallKind = Literal["missed_order", "deaf"]
_T = TypeVar("_T")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('missed_order', 'deaf')),
    terminal_id TEXT NOT NULL,
    merchant_id TEXT,
    order_id TEXT,
    at REAL NOT NULL,
    created_at REAL NOT NULL,
    ended_at REAL,
    called_at REAL,
    note TEXT,
    CHECK ((kind = 'missed_order') = (order_id IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS calls_missed_order
    ON calls (terminal_id, order_id) WHERE kind = 'missed_order';
CREATE UNIQUE INDEX IF NOT EXISTS calls_open_deaf
    ON calls (terminal_id) WHERE kind = 'deaf' AND ended_at IS NULL;
CREATE INDEX IF NOT EXISTS calls_called_at ON calls (called_at);
"""
_COLUMNS: Final = "id, kind, terminal_id, merchant_id, order_id, at, ended_at, called_at, note"


class CallStoreError(RuntimeError):
    """The database file cannot be used (not SQLite, a newer schema, unwritable)."""


class UnknownCall(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Call:
    id: int
    kind: CallKind
    terminal_id: str
    merchant_id: str | None
    order_id: str | None
    at: float
    ended_at: float | None
    called_at: float | None
    note: str | None

    @property
    def called(self) -> bool:
        return self.called_at is not None

    def to_json(self) -> dict[str, object]:
        """The call of fleet-console.md's `GET /api/calls`."""
        return {
            "id": self.id,
            "kind": self.kind,
            "terminal_id": self.terminal_id,
            "merchant_id": self.merchant_id,
            "order_id": self.order_id,
            "at": format_rfc3339(self.at),
            "called": self.called,
            "called_at": None if self.called_at is None else format_rfc3339(self.called_at),
            "note": self.note,
        }


def _call(row: tuple[object, ...]) -> Call:
    call_id, kind, terminal_id, merchant_id, order_id, at, ended_at, called_at, note = row
    assert isinstance(call_id, int) and isinstance(terminal_id, str) and isinstance(at, float)
    assert kind in ("missed_order", "deaf")
    return Call(
        call_id,
        kind,
        terminal_id,
        merchant_id if isinstance(merchant_id, str) else None,
        order_id if isinstance(order_id, str) else None,
        at,
        ended_at if isinstance(ended_at, float) else None,
        called_at if isinstance(called_at, float) else None,
        note if isinstance(note, str) else None,
    )


class CallStore:
    """Open with `await CallStore.open(path)`; every method runs on the store's own thread."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor) -> None:
        self.path = path
        self._executor = executor
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path) -> CallStore:
        store = cls(path, ThreadPoolExecutor(1, thread_name_prefix="fleet-calls"))
        try:
            await store._run(store._open)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    async def _run(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _open(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise CallStoreError(f"{self.path} cannot be opened ({exc})") from None
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CallStoreError(
                    f"{self.path} was written by a newer console (schema {version}); "
                    "use that version or another --db file"
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            db.close()
            raise CallStoreError(
                f"{self.path} is not a usable SQLite database of the console ({exc})"
            ) from None
        except BaseException:
            db.close()
            raise
        self._db = db

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the call store is closed")
        return self._db

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        try:
            await self._run(close)
        finally:
            self._executor.shutdown(wait=True)

    async def current(self, now: float) -> list[Call]:
        """The calls on the list: every call not yet called, and those called in the last
        CALLED_KEPT_S; oldest first."""

        def select() -> list[Call]:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM calls WHERE called_at IS NULL OR called_at >= ? "
                "ORDER BY at, id",
                (now - CALLED_KEPT_S,),
            ).fetchall()
            return [_call(row) for row in rows]

        return await self._run(select)

    async def add_missed(self, missed: MissedOrder, now: float) -> Call | None:
        """The new call, or None when this order already has one (a redelivered event)."""

        def insert() -> Call | None:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO calls (kind, terminal_id, merchant_id, order_id, at, "
                "created_at) VALUES ('missed_order', ?, ?, ?, ?, ?)",
                (missed.terminal_id, missed.merchant_id, missed.order_id, missed.placed_at, now),
            )
            return self._get(cursor.lastrowid) if cursor.rowcount == 1 else None

        return await self._run(insert)

    async def deaf_changed(self, change: DeafChanged, now: float) -> Call | None:
        """A deaf shop opens an episode (a new call) unless one is open; hearing closes it."""

        def apply() -> Call | None:
            if not change.deaf:
                self._conn.execute(
                    "UPDATE calls SET ended_at = ? WHERE kind = 'deaf' AND terminal_id = ? "
                    "AND ended_at IS NULL",
                    (change.at, change.terminal_id),
                )
                return None
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO calls (kind, terminal_id, merchant_id, at, created_at) "
                "VALUES ('deaf', ?, ?, ?, ?)",
                (change.terminal_id, change.merchant_id, change.at, now),
            )
            return self._get(cursor.lastrowid) if cursor.rowcount == 1 else None

        return await self._run(apply)

    async def mark_called(self, call_id: int, note: str, now: float) -> Call:
        """Marks the call called (the first time is kept) with `note` (the latest is kept)."""

        def update() -> Call:
            cursor = self._conn.execute(
                "UPDATE calls SET called_at = COALESCE(called_at, ?), note = ? WHERE id = ?",
                (now, note, call_id),
            )
            if cursor.rowcount != 1:
                raise UnknownCall(call_id)
            call = self._get(call_id)
            assert call is not None
            return call

        return await self._run(update)

    def _get(self, call_id: int | None) -> Call | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM calls WHERE id = ?", (call_id,)
        ).fetchone()
        return None if row is None else _call(row)
