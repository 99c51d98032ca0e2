"""The durable payment journal and store-and-forward queue (SQLite in state_dir/journal.db).

`Journal` is the asyncio face: every call runs in one dedicated worker thread that owns the
SQLite connection (worker.py), so the event loop never waits on an fsync; the queue's calls
(saf_due, saf_next_due, saf_attempt_failed, saf_refused, saf_complete, saf_summary) go after
any payment's call waiting. Every write is committed, and with WAL + synchronous=FULL on
disk, before its coroutine returns: durable before visible.
A caller cancelled while awaiting does not cancel the write; it may or may not have landed,
and the journal (not the caller's memory) says which. Any call raises JournalStorageError when
the disk under the journal is full or failing: nothing of that call was recorded.

Payment ids are "p_" + 16 random hex digits. Times passed in are Unix seconds; times in
records are Unix milliseconds.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import sqlite3
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TypeVar

from posd.journal import refunds
from posd.journal.checks import to_ms
from posd.journal.model import (
    CardSecrets,
    FieldValue,
    JournalError,
    JournalStorageError,
    OfflineExposure,
    OfflineLimits,
    OfflineRefused,
    PaymentEvent,
    PaymentRecord,
    SafEntry,
    SafMessage,
    SafSummary,
)
from posd.journal.orders import OrderStore
from posd.journal.schema import DB_FILE_NAME
from posd.journal.store import JournalCore
from posd.journal.worker import JournalWorker

__all__ = ["Journal", "day_bounds", "storage_failure"]

T = TypeVar("T")

# SQLite's primary result codes for storage that fails under it, rather than a bad query:
# SQLITE_READONLY (a filesystem remounted read-only after errors, common on SD cards),
# SQLITE_IOERR, SQLITE_FULL (disk full), SQLITE_CANTOPEN (the -wal or -shm file).
_STORAGE_CODES = frozenset({8, 10, 13, 14})


def storage_failure(exc: BaseException) -> bool:
    """Whether `exc` is SQLite saying the disk under the journal failed (full, I/O error)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.OperationalError) or not isinstance(code, int):
        return False
    # Extended codes (SQLITE_IOERR_WRITE, ...) carry the primary code in their low byte.
    return (code & 0xFF) in _STORAGE_CODES


def day_bounds(date: datetime.date, tz: datetime.tzinfo | None = None) -> tuple[int, int]:
    """[start, end) of a calendar day in Unix ms; tz None means the system's local zone.

    Any date has bounds, 0001-01-01 and 9999-12-31 included: there the local offset cannot be
    applied (the day before or after is outside the calendar), and UTC's midnights are used,
    which bound those days' payments (none) as well.
    """
    start = _midnight_ms(date, tz)
    try:
        end = _midnight_ms(date + datetime.timedelta(days=1), tz)
    except OverflowError:
        end = start + 86_400_000
    return start, end


def _midnight_ms(date: datetime.date, tz: datetime.tzinfo | None) -> int:
    midnight = datetime.datetime.combine(date, datetime.time.min)
    try:
        return round(midnight.replace(tzinfo=tz).timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        return round(midnight.replace(tzinfo=datetime.UTC).timestamp() * 1000)


class Journal:
    def __init__(self, core: JournalCore, worker: JournalWorker) -> None:
        self._core = core
        self._worker = worker
        self._closed = False
        self.path = core.path
        self.orders = OrderStore(core, self._run)
        """The 배달서구 orders, on the same worker thread and connection."""

    @classmethod
    async def open(cls, state_dir: Path) -> Journal:
        """Opens (creating on first start) the journal and its key in state_dir.

        Raises JournalKeyError (key file unsafe, wrong size, missing for an existing journal,
        or not this journal's key), JournalSchemaError (database from a newer posd) and
        JournalStorageError (the disk under it is full or failing).
        """
        worker = JournalWorker("posd-journal")
        try:
            core = await asyncio.wrap_future(worker.submit(lambda: JournalCore(state_dir)))
        except sqlite3.OperationalError as exc:
            worker.stop()
            if storage_failure(exc):
                raise JournalStorageError(state_dir / DB_FILE_NAME, str(exc)) from exc
            raise
        except BaseException:
            worker.stop()
            raise
        return cls(core, worker)

    async def close(self) -> None:
        """Waits for queued calls, then closes; a second close does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            # Behind the queue's calls too: they were given before the close.
            await asyncio.wrap_future(self._worker.submit(self._core.close, background=True))
        finally:
            self._worker.stop()

    async def settings(self) -> dict[str, object]:
        """journal_mode, synchronous (2 = FULL), foreign_keys, secure_delete, schema_version."""
        return await self._run(self._core.settings)

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        return await self._call(functools.partial(fn, *args, **kwargs), background=False)

    async def _background(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """A call of the store-and-forward queue's: run once no payment's call waits."""
        return await self._call(functools.partial(fn, *args, **kwargs), background=True)

    async def _call(self, call: Callable[[], T], *, background: bool) -> T:
        if self._closed:
            raise JournalError("the journal is closed")
        try:
            return await asyncio.wrap_future(self._worker.submit(call, background=background))
        except sqlite3.OperationalError as exc:
            if storage_failure(exc):
                raise JournalStorageError(self.path, str(exc)) from exc
            raise

    # -- payments -------------------------------------------------------------------------

    async def create_payment(
        self,
        *,
        amount: int,
        charged: int,
        method: str,
        idempotency_key: str,
        now: float,
        benefit_plus_rate_bps: int = 0,
        discount: int = 0,
    ) -> tuple[PaymentRecord, bool]:
        """A purchase in waiting_for_card, with the 혜택플러스 rate and discount as given (they
        must add up: amount = discount + charged), or the payment already under this
        idempotency key with created=False. Raises IdempotencyConflict if the key is bound to
        other parameters, InvalidArgument."""
        return await self._run(
            self._core.create_payment,
            amount=amount,
            charged=charged,
            method=method,
            idempotency_key=idempotency_key,
            now=now,
            benefit_plus_rate_bps=benefit_plus_rate_bps,
            discount=discount,
        )

    async def create_refund(
        self,
        *,
        original_payment_id: str,
        amount: int,
        idempotency_key: str | None,
        now: float,
        unsent_reason: str | None = None,
    ) -> tuple[PaymentRecord, bool]:
        """A refund in authorizing, STAN and field 7 set; or, with `unsent_reason` (it cannot
        be sent), declined with that reason and nothing queued. Raises RefundRefused,
        IdempotencyConflict (refunds.create_refund)."""
        return await self._run(
            refunds.create_refund,
            self._core,
            original_payment_id=original_payment_id,
            amount=amount,
            idempotency_key=idempotency_key,
            now=now,
            unsent_reason=unsent_reason,
        )

    async def get(self, payment_id: str) -> PaymentRecord | None:
        return await self._run(self._core.get, payment_id)

    async def by_idempotency_key(
        self, idempotency_key: str, kind: str = "purchase"
    ) -> PaymentRecord | None:
        return await self._run(self._core.by_idempotency_key, idempotency_key, kind)

    async def begin_authorization(
        self, payment_id: str, card: CardSecrets, now: float
    ) -> PaymentRecord:
        """waiting_for_card -> authorizing: seals the card data, allocates the STAN and sets
        field 7, in one transaction, before the 0200 is sent."""
        return await self._run(self._core.begin_authorization, payment_id, card, now)

    async def card_data(self, payment_id: str) -> CardSecrets | None:
        return await self._run(self._core.card_data, payment_id)

    async def record_answer(
        self,
        payment_id: str,
        *,
        response_code: str,
        now: float,
        rrn: str | None = None,
        auth_code: str | None = None,
        decline_reason: str | None = None,
        keep_card_data: bool = False,
    ) -> PaymentRecord:
        """authorizing -> approved (39=00) or declined (decline_reason defaults to
        "ledger_<code>"); card data dropped unless keep_card_data on an approval."""
        return await self._run(
            self._core.record_answer,
            payment_id,
            response_code=response_code,
            now=now,
            rrn=rrn,
            auth_code=auth_code,
            decline_reason=decline_reason,
            keep_card_data=keep_card_data,
        )

    async def transition(
        self, payment_id: str, state: str, now: float, *, decline_reason: str | None = None
    ) -> PaymentRecord:
        """To cancelled (from waiting_for_card) or declined at the counter."""
        return await self._run(
            self._core.transition, payment_id, state, now, decline_reason=decline_reason
        )

    async def drop_card_data(self, payment_id: str) -> PaymentRecord:
        return await self._run(self._core.drop_card_data, payment_id)

    async def start_reversal(
        self,
        payment_id: str,
        *,
        fields: Mapping[str, FieldValue],
        stan: int,
        now: float,
        decline_reason: str,
    ) -> tuple[PaymentRecord, SafEntry]:
        """authorizing/approved -> reversing with the 0400 queued in the same transaction."""
        return await self._run(
            self._core.start_reversal,
            payment_id,
            fields=fields,
            stan=stan,
            now=now,
            decline_reason=decline_reason,
        )

    async def approve_offline(
        self,
        payment_id: str,
        *,
        auth_code: str,
        fields: Mapping[str, FieldValue],
        limits: OfflineLimits,
        now: float,
    ) -> PaymentRecord | OfflineRefused:
        """authorizing -> approved_offline with the 0220 queued, if the limits allow."""
        return await self._run(
            self._core.approve_offline,
            payment_id,
            auth_code=auth_code,
            fields=fields,
            limits=limits,
            now=now,
        )

    async def offline_exposure(self, payment_id: str, now: float) -> OfflineExposure:
        return await self._run(self._core.offline_exposure, payment_id, now)

    async def in_flight(self) -> list[PaymentRecord]:
        return await self._run(self._core.in_flight)

    async def events_since(self, seq: int, limit: int = 1000) -> list[PaymentEvent]:
        return await self._run(self._core.events_since, seq, limit)

    # -- STAN and QR nonces ---------------------------------------------------------------

    async def allocate_stan(self, now: float) -> int:
        return await self._run(self._core.allocate_stan, now)

    async def use_qr_nonce(self, nonce: bytes, now: float) -> bool:
        """False when the nonce was used within the last 24 h: the QR is qr_replayed."""
        return await self._run(self._core.use_qr_nonce, nonce, now)

    # -- store and forward ----------------------------------------------------------------

    async def saf_pending(self, limit: int = 1000) -> list[SafEntry]:
        return await self._run(self._core.saf.pending, limit)

    async def saf_due(
        self,
        now: float,
        *,
        force: bool = False,
        after_id: int = 0,
        exclude: Collection[int] = (),
    ) -> SafMessage | None:
        """The oldest pending entry past `after_id` and not in `exclude` whose next attempt
        time has come (any, with `force`), with its fields."""
        return await self._background(
            self._core.saf.due, now, force=force, after_id=after_id, exclude=exclude
        )

    async def saf_next_due(self, exclude: Collection[int] = ()) -> float | None:
        """When the first pending entry not in `exclude` is due (Unix seconds, 0.0: at once);
        None if there is none."""
        return await self._background(self._core.saf.next_due, exclude)

    async def saf_attempt_failed(
        self, entry_id: int, error: str, now: float, next_attempt: float
    ) -> SafEntry:
        """A transmission went out and got no usable answer (`error` holds no card data); the
        entry is due again at `next_attempt`."""
        return await self._background(
            self._core.saf.attempt_failed, entry_id, error, now, next_attempt
        )

    async def saf_refused(
        self, entry_id: int, *, response_code: str, error: str, now: float, next_attempt: float
    ) -> SafEntry:
        """The ledger answered without settling the entry: it stays queued, needing attention,
        due again at `next_attempt`."""
        return await self._background(
            self._core.saf.refused,
            entry_id,
            response_code=response_code,
            error=error,
            now=now,
            next_attempt=next_attempt,
        )

    async def saf_complete(
        self, entry_id: int, *, response_code: str, now: float, rrn: str | None = None
    ) -> PaymentRecord:
        """The ledger's answer settled the entry (00, or an advice's refusal): see SafQueue."""
        return await self._background(
            self._core.saf.complete, entry_id, response_code=response_code, now=now, rrn=rrn
        )

    async def saf_summary(self, now: float) -> SafSummary:
        return await self._background(self._core.saf.summary, now)

    # -- totals ---------------------------------------------------------------------------

    async def totals(
        self, date: datetime.date, tz: datetime.tzinfo | None = None
    ) -> dict[str, object]:
        """The day's totals (payments created that local day) by kind, method and state."""
        start, end = day_bounds(date, tz)
        result: dict[str, object] = {"date": date.isoformat(), "currency": "KRW"}
        result.update(await self._run(self._core.totals, start, end))
        return result

    async def payments_today(self, now: float, tz: datetime.tzinfo | None = None) -> dict[str, int]:
        """{"approved", "declined", "amount"} for the status object's payments_today."""
        moment = datetime.datetime.fromtimestamp(to_ms(now) / 1000, tz=tz)
        start, end = day_bounds(moment.date(), tz)
        return await self._run(self._core.payments_today, start, end)
