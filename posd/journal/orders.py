"""The 배달서구 orders table: one row per order_id, written before the broker is told
(PUBACK), so that each order alerts once across redeliveries and restarts.

`OrderStore` is the asyncio face (`Journal.orders`); it runs on the journal's one worker thread
and connection, so an order and a payment are never written at once by two writers. Every write
is its own transaction, committed (fsync) before the coroutine returns.

An order is `alerting` until it ends, once: `acknowledged` (by the POS or the platform) or
`missed`. Rows are kept KEEP_DAYS after they arrived, then dropped; `record` refuses
nothing on age (the caller decides what is too old to alert).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeVar

from posd.journal.checks import to_ms
from posd.journal.model import InvalidArgument

if TYPE_CHECKING:
    from posd.journal.store import JournalCore

__all__ = [
    "ORDER_KEEP_DAYS",
    "ORDER_STATES",
    "OrderRecord",
    "OrderState",
    "OrderStore",
]

OrderState = Literal["alerting", "acknowledged", "missed"]
AckedBy = Literal["pos", "mqtt"]
ORDER_STATES: Final[tuple[OrderState, ...]] = ("alerting", "acknowledged", "missed")
ORDER_KEEP_DAYS: Final = 35
MAX_ORDER_PAYLOAD: Final = 64 * 1024
_DAY_MS: Final = 86_400_000
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order as the journal holds it; times are Unix milliseconds."""

    order_id: str
    state: OrderState
    placed_at: int
    received_at: int
    """When posd first took it: its alert's timeline (repeat, escalation, missed) runs from
    here, also after a restart."""
    ended_at: int | None
    acked_by: AckedBy | None
    total: int
    payload: str
    """The order's JSON as the platform sent it (already validated)."""


_COLUMNS: Final = "order_id, state, placed_at, received_at, ended_at, acked_by, total, payload"


def _record(row: sqlite3.Row) -> OrderRecord:
    return OrderRecord(*row)


def _get(db: sqlite3.Connection, order_id: str) -> OrderRecord | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else _record(row)


def _check_order_id(order_id: str) -> None:
    if not isinstance(order_id, str) or not 1 <= len(order_id) <= 64:
        raise InvalidArgument("order_id", "must be 1 to 64 characters")


def _record_order(
    db: sqlite3.Connection,
    order_id: str,
    placed_at_ms: int,
    total: int,
    payload: str,
    now_ms: int,
) -> tuple[OrderRecord, bool]:
    db.execute(
        "DELETE FROM orders WHERE received_at < ? AND state != 'alerting'",
        (now_ms - ORDER_KEEP_DAYS * _DAY_MS,),
    )
    inserted = db.execute(
        "INSERT INTO orders (order_id, state, placed_at, received_at, total, payload)"
        " VALUES (?, 'alerting', ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING",
        (order_id, placed_at_ms, now_ms, total, payload),
    ).rowcount
    found = _get(db, order_id)
    assert found is not None
    return found, inserted == 1


def _end_order(
    db: sqlite3.Connection, order_id: str, state: OrderState, acked_by: AckedBy | None, now_ms: int
) -> tuple[OrderRecord, bool] | None:
    changed = db.execute(
        "UPDATE orders SET state = ?, ended_at = ?, acked_by = ?"
        " WHERE order_id = ? AND state = 'alerting'",
        (state, now_ms, acked_by, order_id),
    ).rowcount
    found = _get(db, order_id)
    return None if found is None else (found, changed == 1)


def _alerting(db: sqlite3.Connection) -> list[OrderRecord]:
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM orders WHERE state = 'alerting' ORDER BY received_at, order_id"
    )
    return [_record(row) for row in rows]


def _since(db: sqlite3.Connection, since_ms: int, limit: int) -> list[OrderRecord]:
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM orders WHERE received_at >= ? OR ended_at >= ?"
        " ORDER BY received_at DESC, order_id LIMIT ?",
        (since_ms, since_ms, limit),
    )
    return [_record(row) for row in rows]


class _Runner(Protocol):
    """`Journal._run`: a call on the journal's worker thread, storage errors translated."""

    def __call__(self, fn: Callable[[], _T], /) -> Awaitable[_T]: ...


class OrderStore:
    """The orders table through the journal's worker thread; see the module docstring."""

    def __init__(self, core: JournalCore, run: _Runner) -> None:
        self._core = core
        self._run = run

    async def _tx(self, fn: Callable[..., _T], *args: object) -> _T:
        def in_transaction() -> _T:
            with self._core.transaction() as db:
                return fn(db, *args)

        return await self._run(in_transaction)

    async def record(
        self, order_id: str, *, placed_at: float, total: int, payload: str, now: float
    ) -> tuple[OrderRecord, bool]:
        """A new order in `alerting`, received now; or the one already under this id, with
        created=False (a redelivery, or the platform sending it again)."""
        _check_order_id(order_id)
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise InvalidArgument("total", "must be a whole number of won >= 0")
        if len(payload.encode()) > MAX_ORDER_PAYLOAD:
            raise InvalidArgument("payload", f"must be at most {MAX_ORDER_PAYLOAD} bytes")
        # A platform clock before 1970 is a broken one: kept as 0 rather than refused.
        placed_ms = to_ms(max(placed_at, 0.0))
        return await self._tx(_record_order, order_id, placed_ms, total, payload, to_ms(now))

    async def end(
        self, order_id: str, state: OrderState, now: float, *, acked_by: AckedBy | None = None
    ) -> tuple[OrderRecord, bool] | None:
        """alerting → acknowledged (with `acked_by`) or missed. Returns the order and whether
        this call ended it (False: it had already ended, as it says); None for an unknown id."""
        _check_order_id(order_id)
        if state == "alerting" or state not in ORDER_STATES:
            raise InvalidArgument("state", "must be acknowledged or missed")
        if (state == "acknowledged") != (acked_by is not None):
            raise InvalidArgument("acked_by", "is given for acknowledged orders only")
        return await self._tx(_end_order, order_id, state, acked_by, to_ms(now))

    async def get(self, order_id: str) -> OrderRecord | None:
        return await self._tx(_get, order_id)

    async def alerting(self) -> list[OrderRecord]:
        """The orders still alerting, oldest first: what a restart alerts again."""
        return await self._tx(_alerting)

    async def since(self, since: float, limit: int = 1000) -> list[OrderRecord]:
        """Orders received or ended since `since` (Unix seconds), newest first."""
        return await self._tx(_since, to_ms(since), limit)
