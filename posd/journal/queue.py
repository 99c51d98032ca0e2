"""The store-and-forward queue's table: reversals and advices waiting for the ledger's answer.

`SafQueue` belongs to the `JournalCore` whose connection and cipher it uses (`core.saf`), on
the journal's one worker thread. Each method is one transaction, committed before it returns,
except `enqueue`, which runs in the caller's (the payment's transition and its queued message
are one transaction, so no crash can leave one without the other).

Each pending entry carries its own next attempt time (`next_attempt_at`, Unix ms; NULL: due
at once), set by the sender when a transmission did not settle it: an entry that is not
settled waits on its own schedule and never holds back the others. The schedule is the
sender's policy (posd.payments.saf); the journal keeps it, so a restart keeps it too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager

from posd.journal import reports
from posd.journal.checks import check_optional_text, check_response_code, to_ms
from posd.journal.crypto import JournalCipher
from posd.journal.model import (
    ADVICE_REFUSED,
    DECLINED,
    FORWARDED,
    REVERSED,
    FieldValue,
    InvalidArgument,
    PaymentRecord,
    SafEntry,
    SafMessage,
    SafSummary,
    decode_fields,
    encode_fields,
)
from posd.journal.rows import (
    SAF_COLUMNS,
    add_event,
    check_transition,
    drop_card_data,
    get_payment,
    read_saf_entry,
    saf_entry,
)

Transaction = Callable[[], AbstractContextManager[sqlite3.Connection]]


def _saf_aad(payment_id: str, kind: str) -> bytes:
    return b"posd-saf\x00" + payment_id.encode() + b"\x00" + kind.encode()


def _count_attempt(
    db: sqlite3.Connection, entry_id: int, now_ms: int, error: str | None, next_ms: int | None
) -> None:
    db.execute(
        "UPDATE saf SET attempts = attempts + 1, last_attempt_at = ?,"
        " last_error = coalesce(?, last_error), next_attempt_at = ? WHERE id = ?",
        (now_ms, None if error is None else error[:200], next_ms, entry_id),
    )


class SafQueue:
    def __init__(
        self, conn: sqlite3.Connection, cipher: JournalCipher, transaction: Transaction
    ) -> None:
        self._conn = conn
        self._cipher = cipher
        self._tx = transaction

    def enqueue(
        self,
        db: sqlite3.Connection,
        payment: PaymentRecord,
        kind: str,
        stan: int,
        fields: Mapping[str, FieldValue],
        now_ms: int,
    ) -> int:
        """Queues a message, its fields sealed, in the caller's transaction `db`; due at once."""
        if not fields:
            raise InvalidArgument("fields", "a queued message needs its ISO 8583 fields")
        sealed = self._cipher.seal(encode_fields(fields), _saf_aad(payment.payment_id, kind))
        cursor = db.execute(
            "INSERT INTO saf (payment_id, kind, stan, amount, fields, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (payment.payment_id, kind, stan, payment.charged, sealed, now_ms),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def pending(self, limit: int = 1000) -> list[SafEntry]:
        """Pending entries, oldest first, masked (for `posd saf` and diagnostics)."""
        return reports.pending_entries(self._conn, limit)

    def due(
        self,
        now: float,
        *,
        force: bool = False,
        after_id: int = 0,
        exclude: Collection[int] = (),
    ) -> SafMessage | None:
        """The oldest pending entry past `after_id`, not in `exclude` (those in flight),
        whose next attempt time has come (any, with `force`), with its fields. Its mti is
        0400/0220 until a transmission went out, 0401/0221 after."""
        now_ms = to_ms(now)
        skip = ",".join("?" * len(exclude))
        row = self._conn.execute(
            f"SELECT {SAF_COLUMNS} FROM saf JOIN payments p ON p.id = saf.payment_id"
            f" WHERE saf.completed_at IS NULL AND saf.id > ? AND saf.id NOT IN ({skip})"
            " AND (? OR saf.next_attempt_at IS NULL OR saf.next_attempt_at <= ?)"
            " ORDER BY saf.id LIMIT 1",
            (after_id, *exclude, force, now_ms),
        ).fetchone()
        return None if row is None else self._message(saf_entry(row))

    def next_due(self, exclude: Collection[int] = ()) -> float | None:
        """When the first pending entry not in `exclude` is due (Unix seconds; 0.0 if one
        is due at once); None when there is none."""
        skip = ",".join("?" * len(exclude))
        row = self._conn.execute(
            "SELECT count(*), min(coalesce(next_attempt_at, 0)) FROM saf"
            f" WHERE completed_at IS NULL AND id NOT IN ({skip})",
            tuple(exclude),
        ).fetchone()
        return None if row[0] == 0 else row[1] / 1000

    def attempt_failed(
        self, entry_id: int, error: str, now: float, next_attempt: float
    ) -> SafEntry:
        """A transmission went out and no usable answer came: counted (the next one is a
        repeat), why kept (no card data in `error`), and the entry due again at
        `next_attempt` (Unix seconds)."""
        now_ms = to_ms(now)
        next_ms = to_ms(next_attempt, "next_attempt")
        with self._tx() as db:
            read_saf_entry(db, entry_id, pending=True)
            _count_attempt(db, entry_id, now_ms, error, next_ms)
            return read_saf_entry(db, entry_id)

    def refused(
        self, entry_id: int, *, response_code: str, error: str, now: float, next_attempt: float
    ) -> SafEntry:
        """The ledger answered the transmission without settling the entry: counted, and the
        entry stays queued with `response_code` as its refusal, needing attention, due again
        at `next_attempt`."""
        check_response_code(response_code)
        if response_code == "00":
            raise InvalidArgument("response_code", "00 settles an entry: use saf_complete")
        now_ms = to_ms(now)
        next_ms = to_ms(next_attempt, "next_attempt")
        with self._tx() as db:
            read_saf_entry(db, entry_id, pending=True)
            _count_attempt(db, entry_id, now_ms, error, next_ms)
            db.execute("UPDATE saf SET response_code = ? WHERE id = ?", (response_code, entry_id))
            return read_saf_entry(db, entry_id)

    def complete(
        self, entry_id: int, *, response_code: str, now: float, rrn: str | None = None
    ) -> PaymentRecord:
        """The ledger's answer settled the entry: the transmission is counted, the entry leaves
        the queue (its fields are dropped, the row stays as history) and the payment moves on.
        00 settles either kind: reversing -> reversed, approved_offline -> forwarded. Another
        code settles only an advice, as the ledger's refusal of it: approved_offline ->
        declined, decline_reason advice_refused. Which codes are such a decision is the
        caller's call; a reversal is settled by nothing but 00."""
        check_response_code(response_code)
        check_optional_text("rrn", rrn, 12)
        now_ms = to_ms(now)
        with self._tx() as db:
            entry = read_saf_entry(db, entry_id, pending=True)
            if entry.kind == "reversal" and response_code != "00":
                raise InvalidArgument("response_code", "only 00 settles a reversal")
            _count_attempt(db, entry_id, now_ms, None, None)
            db.execute(
                "UPDATE saf SET completed_at = ?, response_code = ?, fields = NULL WHERE id = ?",
                (now_ms, response_code, entry_id),
            )
            payment = get_payment(db, entry.payment_id)
            if entry.kind == "reversal":
                target = REVERSED
            else:
                target = FORWARDED if response_code == "00" else DECLINED
            check_transition(payment, target)
            if target == REVERSED:
                db.execute(
                    "UPDATE payments SET state = ?, updated_at = ? WHERE id = ?",
                    (target, now_ms, payment.payment_id),
                )
            else:
                db.execute(
                    "UPDATE payments SET state = ?, response_code = ?, rrn = coalesce(rrn, ?),"
                    " decline_reason = ?, updated_at = ? WHERE id = ?",
                    (
                        target,
                        response_code,
                        rrn,
                        ADVICE_REFUSED if target == DECLINED else None,
                        now_ms,
                        payment.payment_id,
                    ),
                )
            drop_card_data(db, payment.payment_id)
            add_event(db, payment.payment_id, payment.state, target, now_ms)
            return get_payment(db, payment.payment_id)

    def summary(self, now: float) -> SafSummary:
        return reports.saf_summary(self._conn, to_ms(now))

    def _message(self, entry: SafEntry) -> SafMessage:
        row = self._conn.execute(
            "SELECT fields FROM saf WHERE id = ?", (entry.entry_id,)
        ).fetchone()
        plain = self._cipher.open(row[0], _saf_aad(entry.payment_id, entry.kind))
        return SafMessage(entry, entry.mti, decode_fields(plain))
