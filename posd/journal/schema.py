"""The journal's SQLite schema, its forward migrations, and the connection settings."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path

DB_FILE_NAME = "journal.db"
# SQLite's companions of the database file in WAL mode; they hold the same data.
_COMPANION_SUFFIXES = ("-wal", "-shm")

log = logging.getLogger(__package__)

# MIGRATIONS[n] takes a database from schema version n to n + 1. Append, never edit: a
# shipped step has already run on terminals in the field.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE payments (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('purchase', 'refund')),
        idempotency_key TEXT,
        original_payment_id TEXT REFERENCES payments(id),
        state TEXT NOT NULL CHECK (state IN ('waiting_for_card', 'authorizing', 'approved',
            'declined', 'approved_offline', 'forwarded', 'cancelled', 'reversing', 'reversed')),
        amount INTEGER NOT NULL CHECK (amount > 0),
        discount INTEGER NOT NULL CHECK (discount >= 0),
        charged INTEGER NOT NULL CHECK (charged = amount - discount AND charged > 0),
        benefit_plus_rate_bps INTEGER NOT NULL,
        requested_method TEXT NOT NULL,
        method TEXT NOT NULL,
        entry_mode TEXT,
        masked_pan TEXT,
        last4 TEXT,
        account_hash TEXT,
        card_data BLOB,
        stan INTEGER CHECK (stan BETWEEN 1 AND 999999),
        field7 TEXT,
        rrn TEXT,
        auth_code TEXT,
        response_code TEXT,
        decline_reason TEXT,
        offline INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK ((kind = 'refund') = (original_payment_id IS NOT NULL))
    );
    CREATE UNIQUE INDEX payments_idempotency ON payments(kind, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX payments_state ON payments(state);
    CREATE INDEX payments_created ON payments(created_at);
    CREATE INDEX payments_original ON payments(original_payment_id)
        WHERE original_payment_id IS NOT NULL;
    CREATE TABLE payment_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        payment_id TEXT NOT NULL REFERENCES payments(id),
        from_state TEXT,
        to_state TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX payment_events_payment ON payment_events(payment_id);
    CREATE TABLE saf (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        payment_id TEXT NOT NULL REFERENCES payments(id),
        kind TEXT NOT NULL CHECK (kind IN ('reversal', 'advice')),
        stan INTEGER NOT NULL CHECK (stan BETWEEN 1 AND 999999),
        amount INTEGER NOT NULL,
        fields BLOB,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_attempt_at INTEGER,
        last_error TEXT,
        completed_at INTEGER,
        response_code TEXT,
        CHECK ((completed_at IS NULL) = (fields IS NOT NULL))
    );
    CREATE INDEX saf_pending ON saf(id) WHERE completed_at IS NULL;
    CREATE TABLE stans (
        stan INTEGER PRIMARY KEY,
        allocated_at INTEGER NOT NULL
    );
    CREATE INDEX stans_allocated ON stans(allocated_at);
    CREATE TABLE qr_nonces (
        nonce BLOB PRIMARY KEY,
        used_at INTEGER NOT NULL
    );
    CREATE INDEX qr_nonces_used ON qr_nonces(used_at);
    """,
    # 2: the 배달서구 orders (posd.journal.orders).
    """
    CREATE TABLE orders (
        order_id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('alerting', 'acknowledged', 'missed')),
        placed_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        ended_at INTEGER,
        acked_by TEXT CHECK (acked_by IN ('pos', 'mqtt')),
        total INTEGER NOT NULL CHECK (total >= 0),
        payload TEXT NOT NULL,
        CHECK ((state = 'alerting') = (ended_at IS NULL)),
        CHECK ((state = 'acknowledged') = (acked_by IS NOT NULL))
    );
    CREATE INDEX orders_alerting ON orders(received_at) WHERE state = 'alerting';
    CREATE INDEX orders_received ON orders(received_at);
    CREATE INDEX orders_ended ON orders(ended_at) WHERE ended_at IS NOT NULL;
    """,
    # 3: each queued entry's own next attempt time (posd.journal.queue). Until now an entry
    # the ledger refused was held 30 s (the retry interval) after its last transmission and
    # any other was due at once: the same times, written down.
    """
    ALTER TABLE saf ADD COLUMN next_attempt_at INTEGER;
    UPDATE saf SET next_attempt_at = last_attempt_at + 30000
        WHERE completed_at IS NULL AND response_code IS NOT NULL
        AND last_attempt_at IS NOT NULL;
    CREATE INDEX saf_next_attempt ON saf(next_attempt_at) WHERE completed_at IS NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class JournalSchemaError(Exception):
    """The database was written by a newer posd, or is not a posd journal."""


def connect(path: Path) -> sqlite3.Connection:
    """Open the journal database with the settings every write relies on."""
    if not path.exists():
        # SQLite gives the -wal and -shm files the database file's mode, so create it private.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    else:
        make_private(path)
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA secure_delete=ON")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            raise JournalSchemaError(f"{path}: SQLite refused WAL mode (got {mode!r})")
        migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if type(exc) is sqlite3.DatabaseError:  # corrupt or foreign file, not a busy/IO error
            raise JournalSchemaError(
                f"{path}: {exc}; restore the journal from backup or move it away"
            ) from None
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def make_private(path: Path) -> None:
    """Mode 0600 for the database and its -wal and -shm files, where group or others had
    access (a journal restored from a backup at 0644): they hold the payment history, and
    SQLite creates the companions with the database file's mode."""
    for file in (path, *(path.with_name(path.name + s) for s in _COMPANION_SUFFIXES)):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(file, 0o600)
            log.warning("journal file %s was mode %o; set to 0600", file, mode)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            existing = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name != 'schema_version'"
            ).fetchone()[0]
            if existing:
                raise JournalSchemaError(
                    f"{path} holds tables but no schema version: it is not a posd journal"
                )
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            version = 0
        else:
            version = int(row[0])
        if version > SCHEMA_VERSION:
            raise JournalSchemaError(
                f"{path} has journal schema version {version}, newer than this posd understands "
                f"({SCHEMA_VERSION}); install the newer posd again or restore a matching backup"
            )
        for step in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (step + 1,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """Split a migration into statements so it runs inside the caller's transaction.

    executescript() would COMMIT first; splitting on sqlite3.complete_statement keeps the
    whole migration atomic.
    """
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise JournalSchemaError("migration script ends with an incomplete statement")
    return statements
