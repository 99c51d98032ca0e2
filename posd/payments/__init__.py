"""The payment flow: one payment at a time from the card reader or QR scanner to the ledger,
every step in the journal before anyone is told; and the store-and-forward sender.

Modules:
- `service`: `PaymentService`, what the local API asks of the flow, and the refusals it may
  raise (`PaymentError` and its kinds, each with its API error code); the API's policy limits.
- `engine`: `PaymentEngine`, the PaymentService and a component: recovery from the journal,
  the counter (card or QR), authorization, offline approval, reversal, refunds.
- `saf`: `SafForwarder`, the sender of queued reversals and advices, oldest first.
- `rules`: the payment decisions that need no I/O (혜택플러스, card checks, reasons).
- `ports`: what the flow needs of the reader, scanner and ledger link (`CardReaderPort`,
  `ScannerPort`, `LedgerPort`).
- `view`: `PaymentView`, the payment object of local-api.md over a journal record.
"""

from posd.payments.engine import ALL_MODES, PaymentEngine, PaymentsHeld
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
    METHODS,
    STATES,
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
    "RETRY_INTERVAL_S",
    "STATES",
    "CardData",
    "CardReaderPort",
    "CardVerdict",
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
