"""The payment flow: one payment at a time from the card reader or QR scanner to the ledger,
every step in the journal before anyone is told; and the store-and-forward sender.

Modules:
- `service`: `PaymentService`, what the local API asks of the flow, and the refusals it may
  raise (`PaymentError` and its kinds, each with its API error code); the API's policy limits.
- `engine`: `PaymentEngine`, the PaymentService and a component: start-up recovery from the
  journal, payments and refunds through their flow, a payment that cannot be settled held.
- `counter`: `Counter`, the card reader and QR scanner and the payment waiting at them.
- `authorizer`: the 0200 sent or the offline decision taken, and how a payment ends.
- `requests`: the 0200, refund and 0400 of a payment, built from its journal record.
- `reports`: the day's totals, the SAF queue as listed, the payment side's state sections.
- `saf`: `SafForwarder`, the sender of queued reversals and advices, oldest first.
- `rules`: the payment decisions that need no I/O (혜택플러스, card checks, reasons).
- `ports`: what the flow needs of the reader, scanner and ledger link (`CardReaderPort`,
  `ScannerPort`, `LedgerPort`).
- `view`: `PaymentView`, the payment object of local-api.md over a journal record.
"""

from posd.journal import METHODS, STATES
from posd.payments.counter import ALL_MODES, READ_TIMEOUT_S, Counter
from posd.payments.engine import PaymentEngine, PaymentsHeld
from posd.payments.ports import (
    CardData,
    CardReaderPort,
    CardVerdict,
    LedgerPort,
    ReadFailure,
    ScannerPort,
)
from posd.payments.saf import RETRY_INTERVAL_S, SafForwarder, request_fields
from posd.payments.service import (
    IDEMPOTENCY_KEY_MAX_LEN,
    MAX_AMOUNT,
    DeviceNotReady,
    IdempotencyKeyReused,
    InvalidRequest,
    Payment,
    PaymentConflict,
    PaymentError,
    PaymentService,
    UnknownPayment,
    WrongState,
)
from posd.payments.view import PaymentView

__all__ = [
    "ALL_MODES",
    "IDEMPOTENCY_KEY_MAX_LEN",
    "MAX_AMOUNT",
    "METHODS",
    "READ_TIMEOUT_S",
    "RETRY_INTERVAL_S",
    "STATES",
    "CardData",
    "CardReaderPort",
    "CardVerdict",
    "Counter",
    "DeviceNotReady",
    "IdempotencyKeyReused",
    "InvalidRequest",
    "LedgerPort",
    "Payment",
    "PaymentConflict",
    "PaymentEngine",
    "PaymentError",
    "PaymentService",
    "PaymentView",
    "PaymentsHeld",
    "ReadFailure",
    "SafForwarder",
    "ScannerPort",
    "UnknownPayment",
    "WrongState",
    "request_fields",
]
