"""An order as the outside sees it: the local API's order object, the body of the hub's
`order` events (mqtt.md's field names), and the retained status payload for the platform.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Final

from posd.journal import OrderRecord

_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def rfc3339(ms: int | None) -> str | None:
    """Unix milliseconds as RFC 3339 UTC, with milliseconds only where there are some."""
    if ms is None:
        return None
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    spec = "milliseconds" if ms % 1000 else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def alerting_s(record: OrderRecord, now_ms: int) -> float:
    """How long it has alerted (still alerting) or did alert (ended), in seconds."""
    end = record.ended_at if record.ended_at is not None else now_ms
    return round(max(0, end - record.received_at) / 1000, 1)


def order_event(record: OrderRecord, now_ms: int) -> dict[str, object]:
    """The hub's `order` event body: mqtt.md's fields for an order change."""
    return {
        "order_id": record.order_id,
        "state": record.state,
        "placed_at": rfc3339(record.placed_at),
        "alerting_s": alerting_s(record, now_ms),
        "reason": None,
    }


def hearing_event(deaf: bool, reason: str | None) -> dict[str, object]:
    """The hub's `order` event for the shop going deaf or hearing again: no order."""
    return {
        "order_id": None,
        "state": "deaf" if deaf else "hearing",
        "placed_at": None,
        "alerting_s": None,
        "reason": reason if deaf else None,
    }


def status_payload(record: OrderRecord, now_ms: int) -> bytes:
    """`{orders.topic}/{order_id}/status` (retained): the state, and when it became so."""
    return _dumps(
        {
            "order_id": record.order_id,
            "state": record.state,
            "placed_at": rfc3339(record.placed_at),
            "received_at": rfc3339(record.received_at),
            "ts": rfc3339(record.ended_at if record.ended_at is not None else record.received_at),
            "alerting_s": alerting_s(record, now_ms),
            "acknowledged_by": record.acked_by,
        }
    ).encode()


def order_object(record: OrderRecord, now_ms: int) -> dict[str, object]:
    """The local API's order: state and timings, and what was ordered."""
    try:
        sent = json.loads(record.payload)
    except ValueError:
        sent = {}
    if not isinstance(sent, dict):
        sent = {}
    items = sent.get("items")
    return {
        "order_id": record.order_id,
        "state": record.state,
        "placed_at": rfc3339(record.placed_at),
        "received_at": rfc3339(record.received_at),
        "ended_at": rfc3339(record.ended_at),
        "alerting_s": alerting_s(record, now_ms),
        "acknowledged_by": record.acked_by,
        "total": record.total,
        "items": [
            {"name": i.get("name"), "qty": i.get("qty"), "price": i.get("price")}
            for i in (items if isinstance(items, list) else [])
            if isinstance(i, dict)
        ],
        "requested_prep_min": sent.get("requested_prep_min"),
        "note": sent.get("note"),
    }
