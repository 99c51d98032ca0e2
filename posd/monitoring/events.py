"""posd's hub events as mqtt.md's `…/event/{kind}` payloads: the one place they are mapped.

Each hub type is the MQTT kind of the same name; the fields taken (all others dropped):
- payment: payment_id, state, amount, charged, method, entry_mode, card_last4 or
  account_last4, response_code, decline_reason, offline; original_payment_id (refunds)
- order: order_id, state, placed_at, alerting_s, reason
- saf: pending, pending_amount, oldest_age_s, alarm; threshold (SafThresholds)
- device: device, state, detail
- ledger: link, detail
- config: result, config_sha256, problems
- security: what, detail; command, reason, suppressed
- error: what, detail; dropped (events_dropped)

Each payload gets `id` (`{boot_id}-{seq}`: unique per event, also across restarts, so that a
consumer drops a QoS 1 duplicate) and `ts` (RFC 3339 UTC) and `kind`. A payment event is
built from the masked payment object only; fields are taken by name, never copied whole, so a
field added upstream never leaks through. Free text (detail, reason, problems) is masked as a
log line is (posd.logs.redact) and cut to MAX_TEXT_CHARS. A hub type not in the table is no
monitoring event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from posd.logs import redact
from posd.monitoring.state import rfc3339

MAX_TEXT_CHARS: Final = 500
MAX_PROBLEMS: Final = 20

_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "payment": (
        "payment_id",
        "state",
        "amount",
        "charged",
        "method",
        "entry_mode",
        "card_last4",
        "account_last4",
        "response_code",
        "decline_reason",
        "offline",
        "original_payment_id",
    ),
    "order": ("order_id", "state", "placed_at", "alerting_s", "reason"),
    "saf": ("pending", "pending_amount", "oldest_age_s", "alarm", "threshold"),
    "device": ("device", "state", "detail"),
    "ledger": ("link", "detail"),
    "config": ("result", "config_sha256", "problems"),
    "security": ("what", "detail", "command", "reason", "suppressed"),
    "error": ("what", "detail", "dropped"),
}
KINDS: Final = frozenset(_FIELDS)
_TEXT: Final = frozenset({"detail", "reason", "what", "command"})
# Where a payment names its card or account: present in its event even when null.
_ALWAYS: Final[Mapping[str, tuple[str, ...]]] = {
    "payment": (
        "payment_id",
        "state",
        "amount",
        "charged",
        "method",
        "entry_mode",
        "response_code",
        "decline_reason",
        "offline",
    ),
    "order": ("order_id", "state", "placed_at", "alerting_s"),
    "saf": ("pending", "pending_amount", "oldest_age_s", "alarm"),
    "device": ("device", "state", "detail"),
    "ledger": ("link", "detail"),
    "config": ("result", "config_sha256", "problems"),
    "security": ("what", "detail"),
    "error": ("what", "detail"),
}


def mqtt_event(
    hub_event: Mapping[str, object], boot_id: str, now: float
) -> tuple[str, dict[str, object]] | None:
    """(kind, payload) of a hub event `{"seq", "type", type: body}`, or None for a type that
    is no monitoring event."""
    kind = hub_event.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        return None
    body = hub_event.get(kind)
    if not isinstance(body, Mapping):
        return None
    return kind, event_payload(kind, body, f"{boot_id}-{hub_event.get('seq')}", now)


def event_payload(
    kind: str, body: Mapping[str, object], event_id: str, now: float
) -> dict[str, object]:
    """The payload of one event of `kind` (one of KINDS) from its fields in `body`."""
    payload: dict[str, object] = {"id": event_id, "ts": rfc3339(now), "kind": kind}
    always = _ALWAYS[kind]
    for name in _FIELDS[kind]:
        if name in body or name in always:
            payload[name] = _value(name, body.get(name))
    if kind == "payment" and "card_last4" not in payload and "account_last4" not in payload:
        payload["card_last4"] = None
    return payload


def _value(name: str, value: object) -> object:
    if name == "problems":
        items = value if isinstance(value, list | tuple) else []
        return [_text(str(item)) for item in items[:MAX_PROBLEMS]]
    if name in _TEXT and isinstance(value, str):
        return _text(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    # Anything else (a nested object) is no field of mqtt.md's events: shown as text.
    return _text(str(value))


def _text(text: str) -> str:
    masked = redact(text)
    return masked if len(masked) <= MAX_TEXT_CHARS else masked[: MAX_TEXT_CHARS - 1] + "…"
