"""What the payment service reports, from the journal's figures: the day's totals, the
store-and-forward queue as `posd saf` shows it, and the state object of mqtt.md.

Pure functions of what they are given: the journal's sums and records, the config, and the
devices' and ledger link's current state.
"""

from __future__ import annotations

import datetime

from posd import __version__
from posd.config import Config
from posd.journal import APPROVED, SUCCESS_STATES, SafEntry, SafSummary
from posd.payments.counter import Counter
from posd.payments.ports import LedgerPort

Sums = dict[str, dict[str, dict[str, int]]]


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
            }
        )
    return queue


def state_object(
    config: Config,
    ledger: LedgerPort,
    counter: Counter,
    *,
    uptime_s: int,
    saf: SafSummary,
    payments_today: dict[str, int],
    storage_error: str | None,
) -> dict[str, object]:
    """The state object of mqtt.md, every key present; `storage` (not in mqtt.md) shows a
    full or failing disk under the journal. `orders` and `devices.audio` are the order
    alerts' (posd.orders `status_sections`, put in by the API); here they are what a stack
    without them reports."""
    reader = counter.reader
    scanner = counter.scanner
    info = reader.info if reader is not None else None
    return {
        "terminal_id": config.terminal.id,
        "merchant_id": config.terminal.merchant_id,
        "version": __version__,
        "uptime_s": uptime_s,
        "config_sha256": config.sha256,
        "ledger": {
            "link": ledger.link,
            "last_rtt_ms": ledger.last_rtt_ms,
            "last_error": ledger.last_error,
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
            "audio": {"state": "disabled", "output": config.audio.output},
        },
        "saf": saf.to_json(),
        "storage": {
            "state": "error" if storage_error else "ready",
            "last_error": storage_error,
        },
        "orders": {
            "alerting": 0,
            "missed_today": 0,
            "link": "disabled",
            "can_alert": None,
            "reason": None,
        },
        "payments_today": payments_today,
    }
