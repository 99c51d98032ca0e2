"""The durable payment journal and store-and-forward queue: SQLite in state_dir/journal.db.

Every write is committed (WAL, synchronous=FULL) before its coroutine returns: durable before
visible. Card data is stored only sealed (AES-GCM, key in state_dir/journal.key) and dropped
once settled; what the journal returns is masked.

Modules:
- `journal`: `Journal`, the asyncio face; one worker thread owns the SQLite connection.
- `worker`: `JournalWorker`, that thread: one call at a time, a payment's before the queue's.
- `orders`: `OrderStore` (`Journal.orders`), the 배달서구 orders table on that same thread;
  `OrderRecord`, `ORDER_STATES`.
- `holder`: `JournalHolder`, the journal as a component (opened in `run`, closed last);
  calling it gives the open journal or raises `JournalNotOpen`.
- `store`: `JournalCore`, the synchronous core: one method, one transaction.
- `queue`: `SafQueue` (`JournalCore.saf`), the store-and-forward queue's table: entries
  queued, due (each on its own next attempt time), counted, settled.
- `refunds`: a refund checked against its original and recorded, to send or declined unsent
  (`ADVICE_PENDING`: its original's advice is still queued).
- `rows`: the row mappers, lookups and single-row steps the store's transactions are made of.
- `reports`: the read-only queries: totals, status counters, the SAF queue, offline exposure;
  `saf_listing`, the queue read without the key or the daemon (`posd saf`).
- `stans`: STAN allocation and QR nonces, each used once.
- `checks`: the argument checks every call makes before its transaction.
- `model`: payment states and their transitions, the records handed out (`PaymentRecord`,
  `SafEntry`, ...), the offline limits rule, and the journal's errors.
- `schema`: the SQLite schema, its migrations and the connection settings.
- `crypto`: the journal key and the sealing of card data and queued messages.
"""

from posd.journal.crypto import JournalKeyError, SealError
from posd.journal.holder import JournalHolder
from posd.journal.journal import Journal, day_bounds, storage_failure
from posd.journal.model import (
    ADVICE_REFUSED,
    APPROVED,
    APPROVED_OFFLINE,
    AUTHORIZING,
    CANCELLED,
    DECLINED,
    FORWARDED,
    IN_FLIGHT_STATES,
    METHODS,
    OFFLINE_DISABLED,
    OFFLINE_LIMIT,
    REVERSED,
    REVERSING,
    STATES,
    SUCCESS_STATES,
    TRANSITIONS,
    WAITING_FOR_CARD,
    CardSecrets,
    FieldValue,
    IdempotencyConflict,
    IllegalTransition,
    InvalidArgument,
    JournalError,
    JournalNotOpen,
    JournalStorageError,
    OfflineExposure,
    OfflineLimits,
    OfflineRefused,
    PaymentEvent,
    PaymentNotFound,
    PaymentRecord,
    RefundRefused,
    SafEntry,
    SafMessage,
    SafSummary,
    UnknownSafEntry,
    offline_refusal,
)
from posd.journal.orders import ORDER_KEEP_DAYS, ORDER_STATES, OrderRecord, OrderState, OrderStore
from posd.journal.refunds import ADVICE_PENDING
from posd.journal.reports import saf_listing
from posd.journal.schema import DB_FILE_NAME, JournalSchemaError

__all__ = [
    "ADVICE_PENDING",
    "ADVICE_REFUSED",
    "APPROVED",
    "APPROVED_OFFLINE",
    "AUTHORIZING",
    "CANCELLED",
    "DB_FILE_NAME",
    "DECLINED",
    "FORWARDED",
    "IN_FLIGHT_STATES",
    "METHODS",
    "OFFLINE_DISABLED",
    "OFFLINE_LIMIT",
    "ORDER_KEEP_DAYS",
    "ORDER_STATES",
    "REVERSED",
    "REVERSING",
    "STATES",
    "SUCCESS_STATES",
    "TRANSITIONS",
    "WAITING_FOR_CARD",
    "CardSecrets",
    "FieldValue",
    "IdempotencyConflict",
    "IllegalTransition",
    "InvalidArgument",
    "Journal",
    "JournalError",
    "JournalHolder",
    "JournalKeyError",
    "JournalNotOpen",
    "JournalSchemaError",
    "JournalStorageError",
    "OfflineExposure",
    "OfflineLimits",
    "OfflineRefused",
    "OrderRecord",
    "OrderState",
    "OrderStore",
    "PaymentEvent",
    "PaymentNotFound",
    "PaymentRecord",
    "RefundRefused",
    "SafEntry",
    "SafMessage",
    "SafSummary",
    "SealError",
    "UnknownSafEntry",
    "day_bounds",
    "offline_refusal",
    "saf_listing",
    "storage_failure",
]
