"""Broker messages as posd publishes them (mqtt.md), for feeding the console in tests."""

from __future__ import annotations

import datetime
import itertools
import json
from typing import Any

BASE = "posd"
T0 = datetime.datetime(2026, 12, 2, 9, 0, tzinfo=datetime.UTC).timestamp()
_ids = itertools.count(1)


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def terminal(n: int) -> str:
    return f"T{n:07d}"


def merchant(n: int) -> str:
    return f"M{n:014d}"


def state(
    terminal_id: str,
    ts: float,
    *,
    boot_id: str = "boot-a",
    connects: int = 1,
    merchant_id: str | None = None,
    can_alert: bool | None = True,
    reason: str | None = None,
    orders_link: str = "up",
    reader: str = "ready",
    saf_pending: int = 0,
    saf_oldest_age_s: float | None = None,
    alerting: int = 0,
    missed_today: int = 0,
    link: str = "up",
    **overrides: Any,
) -> bytes:
    """The full state object of mqtt.md, every key present."""
    obj: dict[str, Any] = {
        "terminal_id": terminal_id,
        "merchant_id": merchant_id if merchant_id is not None else "M" + terminal_id[1:] * 2,
        "version": "0.1.0",
        "ts": rfc3339(ts),
        "boot_id": boot_id,
        "connects": connects,
        "uptime_s": 10,
        "config_sha256": "0" * 64,
        "ledger": {"link": link, "last_rtt_ms": 3.5, "last_error": None, "clock_skew_s": 0.0},
        "devices": {
            "card_reader": {"state": reader, "port": "/dev/posd-reader", "firmware": "1.2"},
            "qr_scanner": {"state": "ready", "kind": "usb-hid"},
            "audio": {"state": "ready", "output": "alsa"},
        },
        "saf": {
            "pending": saf_pending,
            "pending_amount": 1000 * saf_pending,
            "oldest_age_s": saf_oldest_age_s,
            "alarm": False,
        },
        "orders": {
            "alerting": alerting,
            "missed_today": missed_today,
            "link": orders_link,
            "can_alert": can_alert,
            "reason": reason,
        },
        "payments_today": {"approved": 0, "declined": 0, "amount": 0},
    }
    obj.update(overrides)
    return json.dumps(obj).encode()


def event(kind: str, ts: float, event_id: str | None = None, **fields: Any) -> bytes:
    obj = {"id": event_id or f"ev-{next(_ids)}", "ts": rfc3339(ts), "kind": kind, **fields}
    return json.dumps(obj).encode()


def order_event(
    ts: float,
    order_id: str,
    order_state: str,
    *,
    placed_at: float | None = None,
    event_id: str | None = None,
    reason: str | None = None,
) -> bytes:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "state": order_state,
        "placed_at": rfc3339(placed_at if placed_at is not None else ts - 300),
        "alerting_s": 300,
    }
    if order_state == "deaf":
        fields["reason"] = reason or "orders link down for more than 60 s"
    return event("order", ts, event_id, **fields)


def topic(terminal_id: str, leaf: str) -> str:
    return f"{BASE}/{terminal_id}/{leaf}"
