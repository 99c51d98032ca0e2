"""Numbers the journal hands out or remembers once: STANs (field 11, unique per UTC day and
never reused while the ledger owes an answer) and QR nonces (a code is paid once). Each runs
in the caller's transaction."""

from __future__ import annotations

import sqlite3

from posd.journal.model import QR_NONCE_WINDOW_S, STAN_PENDING_STATES, JournalError
from protocols.ledger_fields import STAN_MAX, STAN_MIN, next_stan

DAY_MS = 86_400_000


def allocate_stan(db: sqlite3.Connection, now_ms: int) -> int:
    """The STAN after the last one handed out (protocols' next_stan: 999999 wraps to 1),
    skipping any still owed an answer and any already used this UTC day (field 11 is unique
    per day); recorded as used."""
    day_start = now_ms - now_ms % DAY_MS
    db.execute("DELETE FROM stans WHERE allocated_at < ?", (day_start,))
    marks = ",".join("?" * len(STAN_PENDING_STATES))
    busy = {
        row[0]
        for row in db.execute(
            f"SELECT stan FROM payments WHERE state IN ({marks}) AND stan IS NOT NULL"
            " UNION SELECT stan FROM saf WHERE completed_at IS NULL"
            " UNION SELECT stan FROM stans",
            tuple(sorted(STAN_PENDING_STATES)),
        )
    }
    row = db.execute("SELECT value FROM meta WHERE key = 'last_stan'").fetchone()
    last = int(row[0]) if row is not None else None
    if last is not None and not STAN_MIN <= last <= STAN_MAX:
        last = None  # a meta row edited by hand: start again from the first STAN
    try:
        candidate = next_stan(last, busy)
    except ValueError:
        raise JournalError(
            "every STAN is pending or used today; the ledger link is stuck"
        ) from None
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('last_stan', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(candidate),),
    )
    db.execute(
        "INSERT INTO stans (stan, allocated_at) VALUES (?, ?)"
        " ON CONFLICT (stan) DO UPDATE SET allocated_at = excluded.allocated_at",
        (candidate, now_ms),
    )
    return candidate


def use_qr_nonce(db: sqlite3.Connection, nonce: bytes, now_ms: int) -> bool:
    """Marks a QR nonce used; False if it was already used within QR_NONCE_WINDOW_S."""
    db.execute("DELETE FROM qr_nonces WHERE used_at <= ?", (now_ms - QR_NONCE_WINDOW_S * 1000,))
    inserted = db.execute(
        "INSERT INTO qr_nonces (nonce, used_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (nonce, now_ms),
    ).rowcount
    return inserted == 1
