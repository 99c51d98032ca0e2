"""The journal's synchronous core: every method is one SQLite transaction, committed (and so
fsynced, with synchronous=FULL) before it returns.

A JournalCore belongs to the thread that created it; `Journal` (journal.py) runs it in one
dedicated worker thread.
"""

from __future__ import annotations

import datetime
import secrets
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from posd.journal import reports, stans
from posd.journal.checks import (
    OFFLINE_AUTH_CODE,
    check_amount,
    check_benefit,
    check_idempotency_key,
    check_optional_text,
    check_response_code,
    check_stan,
    to_ms,
)
from posd.journal.crypto import JournalCipher, JournalKeyError, load_or_create_key
from posd.journal.model import (
    APPROVED,
    APPROVED_OFFLINE,
    AUTHORIZING,
    CANCELLED,
    DECLINED,
    ENTRY_MODES,
    IN_FLIGHT_STATES,
    METHODS,
    REVERSING,
    WAITING_FOR_CARD,
    CardSecrets,
    FieldValue,
    IdempotencyConflict,
    IllegalTransition,
    InvalidArgument,
    OfflineExposure,
    OfflineLimits,
    OfflineRefused,
    PaymentEvent,
    PaymentNotFound,
    PaymentRecord,
    SafEntry,
    offline_refusal,
)
from posd.journal.queue import SafQueue
from posd.journal.rows import (
    PAYMENT_COLUMNS,
    add_event,
    check_transition,
    drop_card_data,
    find_payment,
    get_payment,
    payment_by_key,
    payment_record,
    read_saf_entry,
)
from posd.journal.schema import DB_FILE_NAME, connect
from posd.logs import register_secret
from protocols.emv import PAN_MAX_DIGITS, PAN_MIN_DIGITS, mask_pan
from protocols.ledger_fields import field7


def _field7(now_ms: int) -> str:
    return field7(datetime.datetime.fromtimestamp(now_ms // 1000, tz=datetime.UTC))


def _card_aad(payment_id: str) -> bytes:
    return b"posd-card\x00" + payment_id.encode()


class JournalCore:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = state_dir / DB_FILE_NAME
        self._conn = connect(self.path)
        self._conn.row_factory = sqlite3.Row
        try:
            # Card data kept past the ledger's answer stays: it marks a chip approval whose
            # card never answered COMPLETE (PaymentRecord.card_undecided), which recovery
            # reverses, dropping it then.
            self._cipher = self._open_cipher(state_dir)
        except BaseException:
            self._conn.close()
            raise
        self.saf = SafQueue(self._conn, self._cipher, self._tx)
        """The store-and-forward queue, on this connection (queue.py)."""

    def _open_cipher(self, state_dir: Path) -> JournalCipher:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
        key = load_or_create_key(state_dir, create=row is None)
        # The key must never reach a log line, in any encoding.
        register_secret(key)
        cipher = JournalCipher(key)
        if row is None:
            with self._tx():
                self._conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('key_check', ?)", (cipher.key_check,)
                )
        elif row["value"] != cipher.key_check:
            raise JournalKeyError(
                f"{state_dir / 'journal.key'} is not the key this journal was written with; "
                "restore the matching key file"
            )
        return cipher

    def close(self) -> None:
        self._conn.close()

    def settings(self) -> dict[str, object]:
        """The connection's durability settings as SQLite reports them, for diagnostics."""
        report: dict[str, object] = {
            name: self._conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "secure_delete")
        }
        report["schema_version"] = self._conn.execute(
            "SELECT version FROM schema_version"
        ).fetchone()[0]
        return report

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full, I/O error) can leave the transaction open; roll it
            # back so the next call starts clean and nothing half-written becomes visible.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    transaction = _tx  # for the other tables' stores (orders.py) on this connection

    # -- payments -------------------------------------------------------------------------

    def create_payment(
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
        """A purchase in waiting_for_card, or the one already made under this idempotency key
        (then the bool is False). A reused key with other parameters is refused. The
        혜택플러스 rate and discount are the payment rules' (payments/rules.py); the journal
        stores them as given, once they add up: amount = discount + charged."""
        check_amount(amount)
        check_benefit(amount, benefit_plus_rate_bps, discount, charged)
        if method not in METHODS:
            raise InvalidArgument("method", f"must be one of {sorted(METHODS)}")
        check_idempotency_key(idempotency_key)
        now_ms = to_ms(now)
        with self._tx() as db:
            existing = payment_by_key(db, "purchase", idempotency_key)
            if existing is not None:
                for what, mine, theirs in (
                    ("amount", existing.amount, amount),
                    ("method", existing.requested_method, method),
                    ("benefit_plus", existing.benefit_plus_rate_bps, benefit_plus_rate_bps),
                ):
                    if mine != theirs:
                        raise IdempotencyConflict(existing.payment_id, what)
                return existing, False
            payment_id = self.insert_payment(
                db,
                kind="purchase",
                idempotency_key=idempotency_key,
                original=None,
                state=WAITING_FOR_CARD,
                amount=amount,
                discount=discount,
                charged=charged,
                rate=benefit_plus_rate_bps,
                method=method,
                stan=None,
                now_ms=now_ms,
            )
            return get_payment(db, payment_id), True

    def insert_payment(
        self,
        db: sqlite3.Connection,
        *,
        kind: str,
        idempotency_key: str | None,
        original: PaymentRecord | None,
        state: str,
        amount: int,
        discount: int,
        charged: int,
        rate: int,
        method: str,
        stan: int | None,
        now_ms: int,
    ) -> str:
        """A new payment row in `state` and its first event, in the caller's transaction (a
        purchase here, a refund in refunds.py); returns its id."""
        while True:
            payment_id = "p_" + secrets.token_hex(8)
            if find_payment(db, payment_id) is None:
                break
        db.execute(
            "INSERT INTO payments (id, kind, idempotency_key, original_payment_id, state, amount,"
            " discount, charged, benefit_plus_rate_bps, requested_method, method, entry_mode,"
            " masked_pan, last4, stan, field7, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                payment_id,
                kind,
                idempotency_key,
                original.payment_id if original else None,
                state,
                amount,
                discount,
                charged,
                rate,
                method,
                method,
                original.entry_mode if original else None,
                original.masked_pan if original else None,
                original.last4 if original else None,
                stan,
                _field7(now_ms) if stan is not None else None,
                now_ms,
                now_ms,
            ),
        )
        add_event(db, payment_id, None, state, now_ms)
        return payment_id

    def get(self, payment_id: str) -> PaymentRecord | None:
        return find_payment(self._conn, payment_id)

    def by_idempotency_key(
        self, idempotency_key: str, kind: str = "purchase"
    ) -> PaymentRecord | None:
        return payment_by_key(self._conn, kind, idempotency_key)

    def begin_authorization(self, payment_id: str, card: CardSecrets, now: float) -> PaymentRecord:
        """waiting_for_card -> authorizing, sealing the card data and allocating the STAN and
        field 7 in the same transaction: call before a byte of the 0200 goes out."""
        if card.entry_mode not in ENTRY_MODES:
            raise InvalidArgument("card.entry_mode", f"must be one of {sorted(ENTRY_MODES)}")
        if not (
            card.pan.isascii()
            and card.pan.isdigit()
            and PAN_MIN_DIGITS <= len(card.pan) <= PAN_MAX_DIGITS
        ):
            digits = f"{PAN_MIN_DIGITS} to {PAN_MAX_DIGITS}"
            raise InvalidArgument("card.pan", f"must be {digits} digits")
        now_ms = to_ms(now)
        actual_method = "qr" if card.entry_mode == "qr" else "card"
        with self._tx() as db:
            payment = get_payment(db, payment_id)
            check_transition(payment, AUTHORIZING)
            if payment.requested_method not in ("any", actual_method):
                raise InvalidArgument(
                    "card.entry_mode",
                    f"a {card.entry_mode} read does not fit a {payment.requested_method} payment",
                )
            stan = stans.allocate_stan(db, now_ms)
            db.execute(
                "UPDATE payments SET state = ?, method = ?, entry_mode = ?, masked_pan = ?,"
                " last4 = ?, account_hash = ?, card_data = ?, stan = ?, field7 = ?,"
                " updated_at = ? WHERE id = ?",
                (
                    AUTHORIZING,
                    actual_method,
                    card.entry_mode,
                    None if actual_method == "qr" else mask_pan(card.pan),
                    card.pan[-4:],
                    self._cipher.account_hash(card.pan),
                    self._cipher.seal(card.to_bytes(), _card_aad(payment_id)),
                    stan,
                    _field7(now_ms),
                    now_ms,
                    payment_id,
                ),
            )
            add_event(db, payment_id, payment.state, AUTHORIZING, now_ms)
            return get_payment(db, payment_id)

    def card_data(self, payment_id: str) -> CardSecrets | None:
        """The sealed card data, decrypted; None once dropped."""
        row = self._conn.execute(
            "SELECT card_data FROM payments WHERE id = ?", (payment_id,)
        ).fetchone()
        if row is None:
            raise PaymentNotFound(payment_id)
        if row["card_data"] is None:
            return None
        return CardSecrets.from_bytes(self._cipher.open(row["card_data"], _card_aad(payment_id)))

    def record_answer(
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
        """The ledger's 0210: authorizing -> approved (39=00) or declined. The card data is
        dropped unless keep_card_data (a chip approval still waiting for COMPLETE_RESULT,
        which may need a reversal built from it)."""
        check_response_code(response_code)
        check_optional_text("rrn", rrn, 12)
        check_optional_text("auth_code", auth_code, 6)
        state = APPROVED if response_code == "00" else DECLINED
        now_ms = to_ms(now)
        with self._tx() as db:
            payment = get_payment(db, payment_id)
            if payment.state != AUTHORIZING:
                raise IllegalTransition(payment_id, payment.state, state)
            db.execute(
                "UPDATE payments SET state = ?, response_code = ?, rrn = ?, auth_code = ?,"
                " decline_reason = ?, updated_at = ? WHERE id = ?",
                (
                    state,
                    response_code,
                    rrn,
                    auth_code,
                    None if state == APPROVED else decline_reason or f"ledger_{response_code}",
                    now_ms,
                    payment_id,
                ),
            )
            if not (keep_card_data and state == APPROVED):
                drop_card_data(db, payment_id)
            add_event(db, payment_id, payment.state, state, now_ms)
            return get_payment(db, payment_id)

    def transition(
        self, payment_id: str, state: str, now: float, *, decline_reason: str | None = None
    ) -> PaymentRecord:
        """Ending a payment with no ledger involvement: cancelled (only while waiting for the
        card) or declined at the counter (card not accepted, QR rejected, read failed, ...).
        Other states have their own methods, which record what the state needs."""
        if state not in (CANCELLED, DECLINED):
            raise InvalidArgument(
                "state", f"{state} is reached through its own journal method, not transition()"
            )
        now_ms = to_ms(now)
        with self._tx() as db:
            payment = get_payment(db, payment_id)
            if payment.state == APPROVED_OFFLINE:
                # Only the ledger's answer to the queued advice decides such a payment.
                raise IllegalTransition(payment_id, payment.state, state)
            check_transition(payment, state)
            db.execute(
                "UPDATE payments SET state = ?, decline_reason = ?, updated_at = ? WHERE id = ?",
                (state, decline_reason, now_ms, payment_id),
            )
            drop_card_data(db, payment_id)
            add_event(db, payment_id, payment.state, state, now_ms)
            return get_payment(db, payment_id)

    def drop_card_data(self, payment_id: str) -> PaymentRecord:
        """Drops the sealed card data; for a chip approval, this records the card's TC."""
        with self._tx() as db:
            get_payment(db, payment_id)
            drop_card_data(db, payment_id)
            return get_payment(db, payment_id)

    def start_reversal(
        self,
        payment_id: str,
        *,
        fields: Mapping[str, FieldValue],
        stan: int,
        now: float,
        decline_reason: str,
    ) -> tuple[PaymentRecord, SafEntry]:
        """authorizing or approved -> reversing, with the 0400's fields queued (sealed) in the
        same transaction, so no crash can leave a reversal unqueued."""
        check_stan(stan)
        now_ms = to_ms(now)
        with self._tx() as db:
            payment = get_payment(db, payment_id)
            check_transition(payment, REVERSING)
            db.execute(
                "UPDATE payments SET state = ?, decline_reason = ?, updated_at = ? WHERE id = ?",
                (REVERSING, decline_reason, now_ms, payment_id),
            )
            entry_id = self.saf.enqueue(db, payment, "reversal", stan, fields, now_ms)
            drop_card_data(db, payment_id)
            add_event(db, payment_id, payment.state, REVERSING, now_ms)
            return get_payment(db, payment_id), read_saf_entry(db, entry_id)

    def offline_exposure(self, payment_id: str, now: float) -> OfflineExposure:
        """Offline approvals not yet forwarded, and those for this payment's card or account."""
        now_ms = to_ms(now)
        payment = get_payment(self._conn, payment_id)
        return reports.offline_exposure(self._conn, payment.payment_id, now_ms)

    def approve_offline(
        self,
        payment_id: str,
        *,
        auth_code: str,
        fields: Mapping[str, FieldValue],
        limits: OfflineLimits,
        now: float,
    ) -> PaymentRecord | OfflineRefused:
        """authorizing -> approved_offline with the 0220 advice queued, if the offline limits
        allow it; checked and applied in one transaction. On refusal nothing changes."""
        if not OFFLINE_AUTH_CODE.fullmatch(auth_code):
            raise InvalidArgument("auth_code", "an offline approval code is Y1 and 4 digits")
        now_ms = to_ms(now)
        with self._tx() as db:
            payment = get_payment(db, payment_id)
            check_transition(payment, APPROVED_OFFLINE)
            if payment.kind != "purchase" or payment.stan is None:
                raise InvalidArgument("payment_id", "only a purchase can be approved offline")
            exposure = reports.offline_exposure(db, payment_id, now_ms)
            reason = offline_refusal(limits, payment.charged, exposure)
            if reason is not None:
                return OfflineRefused(reason, exposure)
            db.execute(
                "UPDATE payments SET state = ?, offline = 1, auth_code = ?, updated_at = ?"
                " WHERE id = ?",
                (APPROVED_OFFLINE, auth_code, now_ms, payment_id),
            )
            self.saf.enqueue(db, payment, "advice", payment.stan, fields, now_ms)
            drop_card_data(db, payment_id)
            add_event(db, payment_id, payment.state, APPROVED_OFFLINE, now_ms)
            return get_payment(db, payment_id)

    def in_flight(self) -> list[PaymentRecord]:
        """Payments not yet final, oldest first: what start-up recovery looks at, chip
        approvals whose card never answered COMPLETE (card_undecided) included. A payment
        in reversing or approved_offline already has its SAF entry."""
        marks = ",".join("?" * len(IN_FLIGHT_STATES))
        rows = self._conn.execute(
            f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE state IN ({marks})"
            " OR (state = ? AND card_data IS NOT NULL) ORDER BY created_at, id",
            (*sorted(IN_FLIGHT_STATES), APPROVED),
        ).fetchall()
        return [payment_record(row) for row in rows]

    def events_since(self, seq: int, limit: int = 1000) -> list[PaymentEvent]:
        rows = self._conn.execute(
            "SELECT seq, payment_id, from_state, to_state, at FROM payment_events"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [PaymentEvent(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    # -- STAN and QR nonces ---------------------------------------------------------------

    def allocate_stan(self, now: float) -> int:
        """A STAN for a message not tied to a payment (0800s)."""
        now_ms = to_ms(now)
        with self._tx() as db:
            return stans.allocate_stan(db, now_ms)

    def use_qr_nonce(self, nonce: bytes, now: float) -> bool:
        """Marks a QR nonce used; False if it was already used within the last 24 h."""
        if not nonce:
            raise InvalidArgument("nonce", "must not be empty")
        now_ms = to_ms(now)
        with self._tx() as db:
            return stans.use_qr_nonce(db, nonce, now_ms)

    # -- totals ---------------------------------------------------------------------------

    def totals(self, start_ms: int, end_ms: int) -> dict[str, object]:
        """Counts and sums by kind, method and state for payments created in [start, end)."""
        return reports.totals(self._conn, start_ms, end_ms)

    def payments_today(self, start_ms: int, end_ms: int) -> dict[str, int]:
        """The status counters: successful purchases, failed ones, and the won charged."""
        return reports.payments_today(self._conn, start_ms, end_ms)
