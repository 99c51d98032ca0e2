"""The interface between the local API (posd.api) and the payment flow (the engine).

The API only validates HTTP input and maps the exceptions below to status codes; every
payment rule (idempotency, one payment per reader, refund limits) lives behind
`PaymentService`.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import ClassVar, Final, Protocol

# ISO 8583 field 4 would take 12 digits; no counter payment in local currency comes near
# ten million won, so anything larger is a typo (an extra zero) rather than a sale.
MAX_AMOUNT: Final = 10_000_000

IDEMPOTENCY_KEY_MAX_LEN: Final = 64


class PaymentError(Exception):
    """A request the service refuses; `code` is the snake_case API error code."""

    code: ClassVar[str] = "payment_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(PaymentError):
    """Bad input (HTTP 400); `field` names the offending request field."""

    code = "invalid_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PaymentConflict(PaymentError):
    """Another payment is still in progress on the reader or scanner (HTTP 409)."""

    code = "payment_in_progress"


class IdempotencyKeyReused(PaymentError):
    """The idempotency key is known but was sent with a different amount, method or
    benefit_plus (a refund's: amount or original payment) (HTTP 409): answering with the old
    payment would hide a POS bug."""

    code = "idempotency_key_reused"


class WrongState(PaymentError):
    """The payment is not in a state that allows this action (HTTP 409)."""

    code = "wrong_state"


class UnknownPayment(PaymentError):
    """No payment with this id (HTTP 404)."""

    code = "unknown_payment"


class DeviceNotReady(PaymentError):
    """The reader or scanner the method needs is not ready (HTTP 503)."""

    code = "device_not_ready"


class Payment(Protocol):
    @property
    def payment_id(self) -> str: ...

    @property
    def state(self) -> str: ...

    def to_json(self) -> dict[str, object]:
        """The payment object of local-api.md, every key present (null where unknown):
        payment_id, state, amount, discount, charged, method, entry_mode,
        card_last4 or account_last4, stan, rrn, auth_code, response_code, decline_reason,
        offline, created_at, updated_at (RFC 3339 UTC strings). Refunds add
        `original_payment_id`."""
        ...


class PaymentService(Protocol):
    async def create(
        self, amount: int, method: str, idempotency_key: str, benefit_plus: bool
    ) -> Payment:
        """Start a payment, or return the existing one for a known idempotency key.

        Raises PaymentConflict, DeviceNotReady, InvalidRequest, IdempotencyKeyReused.
        The API has already checked types and ranges (amount 1..MAX_AMOUNT, method in
        METHODS, key of 1..64 printable characters)."""
        ...

    async def get(self, payment_id: str) -> Payment | None: ...

    async def cancel(self, payment_id: str) -> Payment:
        """Cancel a payment still waiting for a card or QR. Raises UnknownPayment, WrongState."""
        ...

    async def refund(self, payment_id: str, amount: int, idempotency_key: str | None) -> Payment:
        """Refund (part of) an approved or forwarded payment; returns the refund payment,
        declined `ledger_unavailable` (nothing queued) while the ledger link is down.

        Raises UnknownPayment, WrongState (original not approved), InvalidRequest("amount",
        ...) when refunds would exceed the original amount, DeviceNotReady (payments held,
        journal storage failed), IdempotencyKeyReused."""
        ...

    def events(self) -> AsyncIterator[dict[str, object]]:
        """A new subscription to every state change from now on, ended by aclose().

        The subscription is registered when events() is called, not on the first
        iteration, so that a client told "connected" misses nothing that follows.

        Each event is `{"seq": int, "type": "payment", "payment": <payment object>}` or
        `{"seq", "type": "order", "order": {…}}` (nothing else: other kinds on posd's event
        hub are for monitoring); `seq` increases across the process (with gaps where other
        kinds went by) and becomes the SSE `id:`. A subscriber too slow to keep
        up is ended rather than allowed to hold memory without bound."""
        ...

    async def totals(self, date: datetime.date) -> dict[str, object]:
        """The day's totals (shop's local date): `{"date": "YYYY-MM-DD", "by_method":
        {method: {state: {"count": int, "amount": int, "discount": int}}}, "approved":
        {"count", "amount", "charged"}, "refunded": {"count", "amount"}}`."""
        ...

    async def saf(self) -> list[dict[str, object]]:
        """The store-and-forward queue, oldest first, masked: each entry
        `{"payment_id", "kind": "advice" | "reversal", "amount", "stan",
        "card_last4" | "account_last4", "queued_at", "attempts", "last_error"}`."""
        ...

    async def saf_flush(self) -> dict[str, object]:
        """Try to forward the queue now; returns `{"forwarded": int, "pending": int}`.
        Raises DeviceNotReady when the ledger link is down."""
        ...
