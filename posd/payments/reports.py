"""What the payment service reports, from the journal's figures: the day's totals, the
store-and-forward queue as `posd saf` shows it, and its sections of mqtt.md's state object.

Pure functions of what they are given: the journal's sums and records, the config, and the
devices' and ledger link's current state.
"""

from __future__ import annotations

import datetime

from posd.config import Config
from posd.journal import APPROVED, SUCCESS_STATES, SafEntry, SafSummary
from posd.payments.counter import Counter
from posd.payments.ports import LedgerPort

Sums = dict[str, dict[str, dict[str, int]]]

_SAF_KEYS = ("pending", "pending_amount", "oldest_age_s", "alarm", "needs_attention")
_TODAY_KEYS = ("approved", "declined", "amount")


def totals_report(raw: dict[str, object], date: datetime.date) -> dict[str, object]:
    """The day's totals of local-api.md from the journal's sums by kind, method and state:
    purchases whose charge stands (SUCCESS_STATES), approved refunds, and the net."""
    purchases: Sums = raw["purchases"]  # type: ignore[assignment]
    refunds: Sums = raw["refunds"]  # type: ignore[assignment]
    approved = {"count": 0, "amount": 0, "charged": 0}
    for by_state in purchases.values():
        for state, sums in by_state.items():
            if state in SUCCESS_STATES:
                for key in approved:
                    approved[key] += sums[key]
    refunded = {"count": 0, "amount": 0}
    for by_state in refunds.values():
        done = by_state.get(APPROVED)
        if done is not None:
            refunded["count"] += done["count"]
            refunded["amount"] += done["charged"]
    return {
        "date": date.isoformat(),
        "currency": raw.get("currency", "KRW"),
        "by_method": purchases,
        "approved": approved,
        "refunded": refunded,
        "net_charged": approved["charged"] - refunded["amount"],
    }


def saf_queue(entries: list[SafEntry]) -> list[dict[str, object]]:
    """The pending entries as `GET /v1/saf` lists them, oldest first, masked."""
    queue: list[dict[str, object]] = []
    for entry in entries:
        full = entry.to_json()
        # A QR payment has no masked card number: what it names is an account.
        shown = "account_last4" if entry.masked_pan is None else "card_last4"
        queue.append(
            {
                "payment_id": entry.payment_id,
                "kind": entry.kind,
                "mti": entry.mti,
                "amount": entry.amount,
                "stan": full["stan"],
                shown: entry.last4,
                "queued_at": full["created_at"],
                "attempts": entry.attempts,
                "last_error": entry.last_error,
                "needs_attention": entry.needs_attention,
                "refused_code": entry.refused_code,
                "next_attempt_at": full["next_attempt_at"],
            }
        )
    return queue


def payment_sections(
    config: Config,
    ledger: LedgerPort,
    counter: Counter,
    *,
    saf: SafSummary | None,
    payments_today: dict[str, int] | None,
    storage_error: str | None,
) -> dict[str, object]:
    """The payment side's sections of mqtt.md's state object (posd.monitoring builds the
    whole object): ledger, the card reader and QR scanner, saf, payments_today; and
    `storage` (not in mqtt.md), a full or failing disk under the journal. `saf` and
    `payments_today` are None while the journal cannot say: their figures are then null."""
    reader = counter.reader
    scanner = counter.scanner
    info = reader.info if reader is not None else None
    return {
        "ledger": {
            "link": ledger.link,
            "last_rtt_ms": ledger.last_rtt_ms,
            "last_error": ledger.last_error,
            "clock_skew_s": ledger.clock_skew_s,
        },
        "devices": {
            "card_reader": {
                "state": reader.state if reader is not None else "disabled",
                "port": reader.port if reader is not None else None,
                "firmware": info.firmware if info is not None else None,
            },
            "qr_scanner": {
                "state": scanner.state if scanner is not None else "disabled",
                "kind": config.qr_scanner.kind,
            },
        },
        "saf": (
            {**saf.to_json(), "alarm": saf.alarm(config.offline.max_age_h)}
            if saf is not None
            else dict.fromkeys(_SAF_KEYS)
        ),
        "storage": {
            "state": "error" if storage_error else "ready",
            "last_error": storage_error,
        },
        "payments_today": (
            payments_today if payments_today is not None else dict.fromkeys(_TODAY_KEYS)
        ),
    }
