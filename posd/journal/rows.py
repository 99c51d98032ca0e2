"""Journal rows: the columns read, the row mappers, the lookups by payment id, idempotency key
and SAF entry id, and the single-row steps every transition takes (its event, the card data
dropped). Each runs on the connection or transaction it is given."""

from __future__ import annotations

import sqlite3

from posd.journal.model import (
    TRANSITIONS,
    IllegalTransition,
    PaymentNotFound,
    PaymentRecord,
    SafEntry,
    UnknownSafEntry,
)

PAYMENT_COLUMNS = """id, kind, idempotency_key, original_payment_id, state, amount, discount,
    charged, benefit_plus_rate_bps, requested_method, method, entry_mode, masked_pan, last4,
    card_data IS NOT NULL AS has_card_data, stan, field7, rrn, auth_code, response_code,
    decline_reason, offline, created_at, updated_at"""
# A pending entry's response_code is the ledger's refusal (it needs attention); a completed
# one's is the answer that settled it.
SAF_COLUMNS = """saf.id, saf.payment_id, saf.kind, saf.stan, saf.amount, p.masked_pan, p.last4,
    saf.created_at, saf.attempts, saf.last_attempt_at, saf.last_error,
    CASE WHEN saf.completed_at IS NULL THEN saf.response_code END, saf.next_attempt_at"""


def payment_record(row: sqlite3.Row) -> PaymentRecord:
    return PaymentRecord(
        payment_id=row["id"],
        kind=row["kind"],
        idempotency_key=row["idempotency_key"],
        original_payment_id=row["original_payment_id"],
        state=row["state"],
        amount=row["amount"],
        discount=row["discount"],
        charged=row["charged"],
        benefit_plus_rate_bps=row["benefit_plus_rate_bps"],
        requested_method=row["requested_method"],
        method=row["method"],
        entry_mode=row["entry_mode"],
        masked_pan=row["masked_pan"],
        last4=row["last4"],
        has_card_data=bool(row["has_card_data"]),
        stan=row["stan"],
        field7=row["field7"],
        rrn=row["rrn"],
        auth_code=row["auth_code"],
        response_code=row["response_code"],
        decline_reason=row["decline_reason"],
        offline=bool(row["offline"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def saf_entry(row: sqlite3.Row) -> SafEntry:
    return SafEntry(
        entry_id=row[0],
        payment_id=row[1],
        kind=row[2],
        stan=row[3],
        amount=row[4],
        masked_pan=row[5],
        last4=row[6],
        created_at=row[7],
        attempts=row[8],
        last_attempt_at=row[9],
        last_error=row[10],
        refused_code=row[11],
        next_attempt_at=row[12],
    )


def find_payment(db: sqlite3.Connection, payment_id: str) -> PaymentRecord | None:
    row = db.execute(
        f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?", (payment_id,)
    ).fetchone()
    return None if row is None else payment_record(row)


def get_payment(db: sqlite3.Connection, payment_id: str) -> PaymentRecord:
    payment = find_payment(db, payment_id)
    if payment is None:
        raise PaymentNotFound(payment_id)
    return payment


def payment_by_key(db: sqlite3.Connection, kind: str, key: str) -> PaymentRecord | None:
    row = db.execute(
        f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE kind = ? AND idempotency_key = ?",
        (kind, key),
    ).fetchone()
    return None if row is None else payment_record(row)


def read_saf_entry(db: sqlite3.Connection, entry_id: int, *, pending: bool = False) -> SafEntry:
    """The SAF entry `entry_id` (only while pending, with `pending`)."""
    row = db.execute(
        f"SELECT {SAF_COLUMNS} FROM saf JOIN payments p ON p.id = saf.payment_id"
        " WHERE saf.id = ?" + (" AND saf.completed_at IS NULL" if pending else ""),
        (entry_id,),
    ).fetchone()
    if row is None:
        raise UnknownSafEntry(entry_id)
    return saf_entry(row)


def check_transition(payment: PaymentRecord, state: str) -> None:
    if state not in TRANSITIONS[payment.state]:
        raise IllegalTransition(payment.payment_id, payment.state, state)


def add_event(
    db: sqlite3.Connection, payment_id: str, from_state: str | None, state: str, now_ms: int
) -> None:
    db.execute(
        "INSERT INTO payment_events (payment_id, from_state, to_state, at) VALUES (?, ?, ?, ?)",
        (payment_id, from_state, state, now_ms),
    )


def drop_card_data(db: sqlite3.Connection, payment_id: str) -> None:
    db.execute(
        "UPDATE payments SET card_data = NULL WHERE id = ? AND card_data IS NOT NULL",
        (payment_id,),
    )
