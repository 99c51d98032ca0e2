"""The journal's read-only queries for reports: the day's totals, the status counters, the SAF
queue's summary and listing; `saf_listing` reads it without the key and without the daemon."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from posd.journal.model import (
    APPROVED_OFFLINE,
    DECLINED,
    REVERSED,
    REVERSING,
    SUCCESS_STATES,
    JournalError,
    OfflineExposure,
    SafEntry,
    SafSummary,
)
from posd.journal.rows import SAF_COLUMNS, saf_entry
from posd.journal.schema import DB_FILE_NAME


def pending_entries(db: sqlite3.Connection, limit: int) -> list[SafEntry]:
    """Pending SAF entries, oldest first, masked."""
    rows = db.execute(
        f"SELECT {SAF_COLUMNS} FROM saf JOIN payments p ON p.id = saf.payment_id"
        " WHERE saf.completed_at IS NULL ORDER BY saf.id LIMIT ?",
        (limit,),
    ).fetchall()
    return [saf_entry(row) for row in rows]


def saf_summary(db: sqlite3.Connection, now_ms: int) -> SafSummary:
    row = db.execute(
        "SELECT count(*), coalesce(sum(amount), 0), min(created_at),"
        " count(response_code) FROM saf WHERE completed_at IS NULL"
    ).fetchone()
    oldest = row[2]
    return SafSummary(
        pending=row[0],
        pending_amount=row[1],
        oldest_age_s=None if oldest is None else max(0, (now_ms - oldest) // 1000),
        needs_attention=row[3],
    )


def totals(db: sqlite3.Connection, start_ms: int, end_ms: int) -> dict[str, object]:
    """Counts and sums by kind, method and state for payments created in [start, end); what
    they add up to is the payment service's report (posd.payments.reports)."""
    rows = db.execute(
        "SELECT kind, method, state, count(*), sum(amount), sum(discount), sum(charged)"
        " FROM payments WHERE created_at >= ? AND created_at < ?"
        " GROUP BY kind, method, state ORDER BY kind, method, state",
        (start_ms, end_ms),
    ).fetchall()
    groups: dict[str, dict[str, dict[str, dict[str, int]]]] = {
        "purchase": {},
        "refund": {},
    }
    for kind, method, state, count, amount, discount, charged in rows:
        groups[kind].setdefault(method, {})[state] = {
            "count": count,
            "amount": amount,
            "discount": discount,
            "charged": charged,
        }
    return {"purchases": groups["purchase"], "refunds": groups["refund"]}


def payments_today(db: sqlite3.Connection, start_ms: int, end_ms: int) -> dict[str, int]:
    """The status counters: successful purchases, failed ones, and the won charged."""
    row = db.execute(
        "SELECT"
        " coalesce(sum(state IN (?, ?, ?)), 0),"
        " coalesce(sum(state IN (?, ?, ?)), 0),"
        " coalesce(sum(CASE WHEN state IN (?, ?, ?) THEN charged ELSE 0 END), 0)"
        " FROM payments WHERE kind = 'purchase' AND created_at >= ? AND created_at < ?",
        (
            *sorted(SUCCESS_STATES),
            DECLINED,
            REVERSING,
            REVERSED,
            *sorted(SUCCESS_STATES),
            start_ms,
            end_ms,
        ),
    ).fetchone()
    return {"approved": row[0], "declined": row[1], "amount": row[2]}


def offline_exposure(db: sqlite3.Connection, payment_id: str, now_ms: int) -> OfflineExposure:
    """Offline approvals not yet forwarded, and those for this payment's card or account."""
    row = db.execute(
        "SELECT count(*), coalesce(sum(charged), 0), min(updated_at) FROM payments WHERE state = ?",
        (APPROVED_OFFLINE,),
    ).fetchone()
    for_account = db.execute(
        "SELECT count(*) FROM payments WHERE state = ? AND account_hash IS NOT NULL AND"
        " account_hash = (SELECT account_hash FROM payments WHERE id = ?)",
        (APPROVED_OFFLINE, payment_id),
    ).fetchone()[0]
    oldest = row[2]
    return OfflineExposure(
        count=row[0],
        total=row[1],
        for_account=for_account,
        oldest_age_s=None if oldest is None else max(0, (now_ms - oldest) // 1000),
    )


def saf_listing(state_dir: Path, limit: int = 1000) -> list[SafEntry]:
    """Pending SAF entries, masked, read without the key and without writing: for `posd saf`
    run by a technician while the daemon may or may not be running."""
    path = state_dir / DB_FILE_NAME
    if not path.is_file():
        raise JournalError(f"no journal at {path}; is storage.state_dir right?")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        conn.row_factory = sqlite3.Row
        return pending_entries(conn, limit)
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"cannot read {path}: {exc}") from None
    finally:
        conn.close()
