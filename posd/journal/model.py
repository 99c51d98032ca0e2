"""What the journal stores and returns: payment states and their allowed transitions, the
records handed to the rest of posd, and the journal's errors.

Nothing here holds clear card data except CardSecrets, whose repr masks it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from protocols.emv import mask_pan
from protocols.ledger_messages import ENTRY_MODE_CODES

WAITING_FOR_CARD: Final = "waiting_for_card"
AUTHORIZING: Final = "authorizing"
APPROVED: Final = "approved"
DECLINED: Final = "declined"
APPROVED_OFFLINE: Final = "approved_offline"
FORWARDED: Final = "forwarded"
CANCELLED: Final = "cancelled"
REVERSING: Final = "reversing"
REVERSED: Final = "reversed"

# Every state of local-api.md, in its order; the payment service and the API show these.
STATES: Final = (
    WAITING_FOR_CARD,
    AUTHORIZING,
    APPROVED,
    DECLINED,
    APPROVED_OFFLINE,
    FORWARDED,
    CANCELLED,
    REVERSING,
    REVERSED,
)

# local-api.md's state graph. approved -> reversing is the chip card that declines (AAC)
# after the ledger approved; authorizing -> approved_offline is only for a 0200 that never
# went out (the ledger link was down before sending). approved_offline -> declined is the
# ledger refusing the advice for good (decline_reason ADVICE_REFUSED): the charge does not
# stand, so it must not stay among the approved ones.
TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    WAITING_FOR_CARD: frozenset({AUTHORIZING, DECLINED, CANCELLED}),
    AUTHORIZING: frozenset({APPROVED, DECLINED, APPROVED_OFFLINE, REVERSING}),
    APPROVED: frozenset({REVERSING}),
    APPROVED_OFFLINE: frozenset({FORWARDED, DECLINED}),
    REVERSING: frozenset({REVERSED}),
    DECLINED: frozenset(),
    CANCELLED: frozenset(),
    FORWARDED: frozenset(),
    REVERSED: frozenset(),
}
# States in which a STAN is still owed an answer by the ledger and so may not be reused.
STAN_PENDING_STATES: Final = frozenset({AUTHORIZING, REVERSING, APPROVED_OFFLINE})
# States whose charge stands (for totals, refunds and the status counters).
SUCCESS_STATES: Final = frozenset({APPROVED, APPROVED_OFFLINE, FORWARDED})
IN_FLIGHT_STATES: Final = frozenset({WAITING_FOR_CARD, AUTHORIZING, REVERSING, APPROVED_OFFLINE})

# The methods a payment may ask for (local-api.md), in the order the API lists them.
METHODS: Final = ("card", "qr", "any")
ENTRY_MODES: Final = frozenset(ENTRY_MODE_CODES)
SafKind = Literal["reversal", "advice"]
# The decline_reason of an offline approval whose advice the ledger refused.
ADVICE_REFUSED: Final = "advice_refused"
SAF_MTI: Final[Mapping[str, tuple[str, str]]] = {
    "reversal": ("0400", "0401"),
    "advice": ("0220", "0221"),
}
MAX_IDEMPOTENCY_KEY: Final = 255
QR_NONCE_WINDOW_S: Final = 24 * 3600

FieldValue = str | bytes


class JournalError(Exception):
    """Base of the journal's refusals."""


class InvalidArgument(JournalError, ValueError):
    """An argument is out of its domain; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class JournalStorageError(JournalError):
    """The journal's file cannot be written or read (disk full, I/O error, read-only
    filesystem). Nothing was recorded; the same call can succeed once the storage is fixed.
    `reason` is SQLite's own text, which never holds a value the journal stores."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"journal storage failed at {path}: {reason}")
        self.reason = reason


class JournalNotOpen(JournalError):
    """The journal is not open (posd is starting, or the open failed: the message says why)."""


class PaymentNotFound(JournalError, LookupError):
    def __init__(self, payment_id: str) -> None:
        super().__init__(f"no payment {payment_id!r} in the journal")
        self.payment_id = payment_id


class IllegalTransition(JournalError):
    def __init__(self, payment_id: str, from_state: str, to_state: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS.get(from_state, ()))) or "none, it is final"
        super().__init__(
            f"payment {payment_id} cannot go from {from_state} to {to_state} "
            f"(allowed from {from_state}: {allowed})"
        )
        self.payment_id = payment_id
        self.from_state = from_state
        self.to_state = to_state


class IdempotencyConflict(JournalError):
    """The idempotency key is already bound to a payment with other parameters."""

    def __init__(self, payment_id: str, what: str) -> None:
        super().__init__(
            f"idempotency_key already used for payment {payment_id} with a different {what}"
        )
        self.payment_id = payment_id


class RefundRefused(JournalError):
    """`reason`: not_found, not_a_purchase, not_refundable, card_undecided, exceeds_original
    (refunds.create_refund)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnknownSafEntry(JournalError, LookupError):
    def __init__(self, entry_id: int) -> None:
        super().__init__(f"no pending store-and-forward entry {entry_id}")
        self.entry_id = entry_id


@dataclass(frozen=True)
class CardSecrets:
    """What was read from the card or QR; stored only sealed, and dropped once settled.

    `pan` is the card PAN, or for entry_mode "qr" the account number from the token.
    """

    entry_mode: str
    pan: str = field(repr=False)
    expiry: str | None = field(default=None, repr=False)
    track2: str | None = field(default=None, repr=False)
    icc: bytes | None = field(default=None, repr=False)
    pan_sequence: int | None = field(default=None, repr=False)
    qr_text: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"CardSecrets(entry_mode={self.entry_mode!r}, pan={mask_pan(self.pan)!r})"

    def to_bytes(self) -> bytes:
        doc: dict[str, object] = dataclasses.asdict(self)
        doc["icc"] = self.icc.hex() if self.icc is not None else None
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CardSecrets:
        doc = json.loads(data)
        icc = doc.pop("icc")
        return cls(**doc, icc=bytes.fromhex(icc) if icc is not None else None)


def encode_fields(fields: Mapping[str, FieldValue]) -> bytes:
    """ISO 8583 fields as JSON, keeping str and bytes apart so they come back as they went in."""
    doc = {
        key: ({"b": value.hex()} if isinstance(value, bytes) else {"s": value})
        for key, value in fields.items()
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode_fields(data: bytes) -> dict[str, FieldValue]:
    doc: dict[str, dict[str, str]] = json.loads(data)
    return {
        key: (bytes.fromhex(value["b"]) if "b" in value else value["s"])
        for key, value in doc.items()
    }


def iso_time(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, as the local API shows times."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PaymentRecord:
    """One payment as the journal holds it: masked fields only, never card data.

    Times are Unix milliseconds. `stan` is an int (1-999999) or None before authorizing;
    `field7` is the MMDDhhmmss UTC transmission time of the 0200.
    """

    payment_id: str
    kind: str
    idempotency_key: str | None
    original_payment_id: str | None
    state: str
    amount: int
    discount: int
    charged: int
    benefit_plus_rate_bps: int
    requested_method: str
    method: str
    entry_mode: str | None
    masked_pan: str | None
    last4: str | None
    has_card_data: bool
    stan: int | None
    field7: str | None
    rrn: str | None
    auth_code: str | None
    response_code: str | None
    decline_reason: str | None
    offline: bool
    created_at: int
    updated_at: int

    @property
    def final(self) -> bool:
        return not TRANSITIONS[self.state]

    @property
    def card_undecided(self) -> bool:
        """A chip approval whose card has not answered COMPLETE: the ledger's approval is
        journaled with the sealed card data kept (record_answer keep_card_data), and the
        card's TC drops it. This is the COMPLETE window on disk: not final for the POS
        (shown authorizing), and a posd that restarts in it reverses the approval."""
        return self.state == APPROVED and self.has_card_data

    def to_api(self) -> dict[str, object]:
        """The payment object of local-api.md."""
        doc: dict[str, object] = {
            "payment_id": self.payment_id,
            "state": self.state,
            "amount": self.amount,
            "discount": self.discount,
            "charged": self.charged,
            "method": self.method,
            "entry_mode": self.entry_mode,
        }
        doc["account_last4" if self.method == "qr" else "card_last4"] = self.last4
        doc.update(
            stan=f"{self.stan:06d}" if self.stan is not None else None,
            rrn=self.rrn,
            auth_code=self.auth_code,
            response_code=self.response_code,
            decline_reason=self.decline_reason,
            offline=self.offline,
            created_at=iso_time(self.created_at),
            updated_at=iso_time(self.updated_at),
        )
        return doc


@dataclass(frozen=True)
class PaymentEvent:
    """One state change. `seq` increases strictly across all payments (SSE ids, audit)."""

    seq: int
    payment_id: str
    from_state: str | None
    state: str
    at: int

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "payment_id": self.payment_id,
            "from_state": self.from_state,
            "state": self.state,
            "at": iso_time(self.at),
        }


@dataclass(frozen=True)
class SafEntry:
    """A queued reversal or advice, masked; `mti` is what its next transmission is sent as.

    `attempts` counts transmissions that went out. `refused_code` is the ledger's answer
    when it answered without settling the entry (a reversal answered other than 00, an
    advice answered with a code that is not a decision): such an entry needs attention,
    and stays queued and retried until it is settled. `next_attempt_at` is when it is due
    again (None: at once).
    """

    entry_id: int
    payment_id: str
    kind: str
    stan: int
    amount: int
    masked_pan: str | None
    last4: str | None
    created_at: int
    attempts: int
    last_attempt_at: int | None
    last_error: str | None
    refused_code: str | None = None
    next_attempt_at: int | None = None

    @property
    def needs_attention(self) -> bool:
        return self.refused_code is not None

    @property
    def mti(self) -> str:
        first, repeat = SAF_MTI[self.kind]
        return first if self.attempts == 0 else repeat

    def to_json(self, now_ms: int | None = None) -> dict[str, object]:
        doc: dict[str, object] = {
            "id": self.entry_id,
            "payment_id": self.payment_id,
            "kind": self.kind,
            "mti": self.mti,
            "stan": f"{self.stan:06d}",
            "amount": self.amount,
            "masked_pan": self.masked_pan,
            "last4": self.last4,
            "created_at": iso_time(self.created_at),
            "attempts": self.attempts,
            "last_attempt_at": (
                iso_time(self.last_attempt_at) if self.last_attempt_at is not None else None
            ),
            "last_error": self.last_error,
            "refused_code": self.refused_code,
            "needs_attention": self.needs_attention,
            "next_attempt_at": (
                iso_time(self.next_attempt_at) if self.next_attempt_at is not None else None
            ),
        }
        if now_ms is not None:
            doc["age_s"] = max(0, (now_ms - self.created_at) // 1000)
        return doc


@dataclass(frozen=True)
class SafMessage:
    """A queued entry with its ISO 8583 fields, decrypted for sending. `mti` is the MTI to
    send this attempt as; the fields are exactly those given at enqueue time."""

    entry: SafEntry
    mti: str
    fields: Mapping[str, FieldValue] = field(repr=False)


@dataclass(frozen=True)
class SafSummary:
    """`needs_attention`: pending entries the ledger answered without settling them."""

    pending: int
    pending_amount: int
    oldest_age_s: int | None
    needs_attention: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "pending": self.pending,
            "pending_amount": self.pending_amount,
            "oldest_age_s": self.oldest_age_s,
            "needs_attention": self.needs_attention,
        }

    def alarm(self, max_age_h: float) -> bool:
        """Whether the oldest pending entry is older than offline.max_age_h: the `saf.alarm`
        of the status object and of the `saf` event."""
        return self.oldest_age_s is not None and self.oldest_age_s > max_age_h * 3600


class OfflineLimits(Protocol):
    """The [offline] config section (posd.config's OfflineConfig fits as is)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def max_payment(self) -> int: ...
    @property
    def max_total(self) -> int: ...
    @property
    def max_count(self) -> int: ...
    @property
    def max_per_account(self) -> int: ...
    @property
    def max_age_h(self) -> int: ...


@dataclass(frozen=True)
class OfflineExposure:
    """Offline approvals the ledger has not yet taken (approved_offline, not forwarded)."""

    count: int
    total: int
    for_account: int
    oldest_age_s: int | None


# An offline approval refused for a limit is declined OFFLINE_LIMIT (local-api-guide.md);
# the refusal's own reason, which names the limit, goes to the log.
OFFLINE_LIMIT: Final = "offline_limit"
OFFLINE_DISABLED: Final = "offline_disabled"


@dataclass(frozen=True)
class OfflineRefused:
    """Why an offline approval was refused: offline_disabled, or the limit in the way:
    offline_limit_payment, offline_limit_total, offline_limit_count, offline_limit_account
    or offline_limit_age."""

    reason: str
    exposure: OfflineExposure


def offline_refusal(limits: OfflineLimits, charged: int, exposure: OfflineExposure) -> str | None:
    """Why an offline approval of `charged` won is refused (the first limit it would break),
    or None when every limit allows it."""
    if not limits.enabled:
        return OFFLINE_DISABLED
    if charged > limits.max_payment:
        return "offline_limit_payment"
    if exposure.count + 1 > limits.max_count:
        return "offline_limit_count"
    if exposure.total + charged > limits.max_total:
        return "offline_limit_total"
    if exposure.for_account + 1 > limits.max_per_account:
        return "offline_limit_account"
    if exposure.oldest_age_s is not None and exposure.oldest_age_s > limits.max_age_h * 3600:
        return "offline_limit_age"
    return None
