"""Topics and payloads of mqtt.md as the console reads them: parsed, checked, never trusted.

Everything here is pure: bytes and strings in, a typed view or a `Bad` (a reason from a small
fixed set, for counting, and a detail, for the log) out. Nothing raises on bad input.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from typing import Final, Literal

from protocols import strict_json

# A state object is under 1.5 KB; 8 KiB leaves room for long version strings and reasons.
MAX_STATE_BYTES: Final = 8 * 1024
# Events are a few hundred bytes; a config event listing its problems can be longer.
MAX_EVENT_BYTES: Final = 8 * 1024
MAX_TOPIC_CHARS: Final = 512
MAX_ID_CHARS: Final = 128
MAX_TEXT_CHARS: Final = 256
TERMINAL_ID_CHARS: Final = 8

EVENT_KINDS: Final = frozenset(
    {"payment", "device", "ledger", "saf", "order", "config", "security", "error"}
)
ORDER_STATES: Final = frozenset({"alerting", "acknowledged", "missed", "deaf", "hearing"})
DEVICE_STATES: Final = frozenset({"ready", "busy", "disconnected", "error", "disabled"})
LINK_STATES: Final = frozenset({"up", "down", "disabled"})

BadReason = Literal[
    "topic",  # not one of the three subscribed shapes, or a terminal id of the wrong shape
    "too_large",
    "not_json",  # not UTF-8, not JSON, NaN/Infinity, nesting too deep
    "shape",  # JSON of the wrong shape: not an object, a key missing or of the wrong type
    "mismatch",  # the payload names another terminal or event kind than its topic
    "availability",  # neither `online` nor `offline`
    "too_many_boxes",
]
BAD_REASONS: Final[tuple[BadReason, ...]] = (
    "topic",
    "too_large",
    "not_json",
    "shape",
    "mismatch",
    "availability",
    "too_many_boxes",
)


@dataclass(frozen=True, slots=True)
class Bad:
    reason: BadReason
    detail: str


TopicKind = Literal["availability", "state", "event"]
Availability = Literal["online", "offline"]


@dataclass(frozen=True, slots=True)
class Topic:
    terminal_id: str
    kind: TopicKind
    event_kind: str | None = None


def valid_terminal_id(text: str) -> bool:
    """ans8 as posd's config demands it: 8 printable ASCII, no topic separator or wildcard."""
    return (
        len(text) == TERMINAL_ID_CHARS
        and text.isascii()
        and text.isprintable()
        and text.strip() == text
        and not any(char in "/+#" for char in text)
    )


def parse_topic(prefix: str, topic: str) -> Topic | Bad:
    """`prefix` is the base topic with its trailing `/`."""
    if len(topic) > MAX_TOPIC_CHARS:
        return Bad("topic", f"a topic of {len(topic)} characters")
    if not topic.startswith(prefix):
        return Bad("topic", "outside the base topic")
    levels = topic[len(prefix) :].split("/")
    terminal_id = levels[0]
    if not valid_terminal_id(terminal_id):
        return Bad("topic", "a terminal id that is not 8 printable ASCII characters")
    if len(levels) == 2 and levels[1] == "availability":
        return Topic(terminal_id, "availability")
    if len(levels) == 2 and levels[1] == "state":
        return Topic(terminal_id, "state")
    if len(levels) == 3 and levels[1] == "event" and levels[2] in EVENT_KINDS:
        return Topic(terminal_id, "event", levels[2])
    return Bad("topic", "not availability, state or event/{kind}")


def parse_object(payload: bytes, limit: int) -> dict[str, object] | Bad:
    if len(payload) > limit:
        return Bad("too_large", f"{len(payload)} bytes, over {limit}")
    try:
        value = strict_json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Bad("not_json", "not a UTF-8 JSON document")
    if not isinstance(value, dict):
        return Bad("shape", "not a JSON object")
    return value


def parse_rfc3339(value: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 time with an offset (`Z` or `+09:00`)."""
    if not isinstance(value, str) or not 20 <= len(value) <= 35 or value[10] not in "Tt":
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def format_rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: object, limit: int = MAX_TEXT_CHARS) -> str | None:
    """A short single-line string, or None when the value is anything else."""
    if isinstance(value, str) and len(value) <= limit and value.isprintable():
        return value
    return None


class _Shape(Exception):
    """A key of the wrong type: the whole payload is refused."""


def _section(obj: dict[str, object], key: str) -> dict[str, object]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Shape(f"{key} is not an object")
    return value


def _opt_text(
    obj: dict[str, object], key: str, allowed: frozenset[str] | None = None
) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    text = _text(value)
    if text is None or (allowed is not None and text not in allowed):
        raise _Shape(f"{key} is not a valid string")
    return text


def _opt_count(obj: dict[str, object], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise _Shape(f"{key} is not a count")
    return value


def _opt_seconds(obj: dict[str, object], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Shape(f"{key} is not a number")
    if value < 0:
        raise _Shape(f"{key} is negative")
    return float(value)


def _opt_bool(obj: dict[str, object], key: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _Shape(f"{key} is not true or false")


@dataclass(frozen=True, slots=True)
class State:
    """What the console uses of a state object; `raw` is the whole object, re-encoded."""

    ts: float
    boot_id: str
    connects: int
    merchant_id: str | None
    version: str | None
    ledger_link: str | None
    card_reader: str | None
    saf_pending: int | None
    saf_oldest_age_s: float | None
    orders_alerting: int | None
    missed_today: int | None
    orders_link: str | None
    can_alert: bool | None
    """Null (None) with `orders_link` `disabled`: a shop that takes no orders, never deaf."""
    deaf_reason: str | None
    raw: bytes


def compact(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def parse_state(terminal_id: str, payload: bytes) -> State | Bad:
    obj = parse_object(payload, MAX_STATE_BYTES)
    if isinstance(obj, Bad):
        return obj
    if obj.get("terminal_id") != terminal_id:
        return Bad("mismatch", "terminal_id differs from the topic's")
    ts = parse_rfc3339(obj.get("ts"))
    if ts is None:
        return Bad("shape", "ts is not an RFC 3339 time")
    boot_id = _text(obj.get("boot_id"), MAX_ID_CHARS)
    if not boot_id:
        return Bad("shape", "boot_id is not a string")
    connects = obj.get("connects")
    if type(connects) is not int or connects < 0:
        return Bad("shape", "connects is not a count")
    try:
        ledger = _section(obj, "ledger")
        devices = _section(obj, "devices")
        reader = _section(devices, "card_reader")
        saf = _section(obj, "saf")
        orders = _section(obj, "orders")
        return State(
            ts=ts,
            boot_id=boot_id,
            connects=connects,
            merchant_id=_opt_text(obj, "merchant_id"),
            version=_opt_text(obj, "version"),
            ledger_link=_opt_text(ledger, "link", LINK_STATES),
            card_reader=_opt_text(reader, "state", DEVICE_STATES),
            saf_pending=_opt_count(saf, "pending"),
            saf_oldest_age_s=_opt_seconds(saf, "oldest_age_s"),
            orders_alerting=_opt_count(orders, "alerting"),
            missed_today=_opt_count(orders, "missed_today"),
            orders_link=_opt_text(orders, "link", LINK_STATES),
            can_alert=_opt_bool(orders, "can_alert"),
            deaf_reason=_opt_text(orders, "reason"),
            raw=compact(obj),
        )
    except _Shape as exc:
        return Bad("shape", str(exc))


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    ts: float
    kind: str
    raw: bytes
    # order events only
    order_id: str | None = None
    order_state: str | None = None
    placed_at: float | None = None
    reason: str | None = None


def parse_event(kind: str, payload: bytes) -> Event | Bad:
    obj = parse_object(payload, MAX_EVENT_BYTES)
    if isinstance(obj, Bad):
        return obj
    event_id = _text(obj.get("id"), MAX_ID_CHARS)
    if not event_id:
        return Bad("shape", "id is not a string")
    ts = parse_rfc3339(obj.get("ts"))
    if ts is None:
        return Bad("shape", "ts is not an RFC 3339 time")
    if obj.get("kind") != kind:
        return Bad("mismatch", "kind differs from the topic's")
    if kind != "order":
        return Event(event_id, ts, kind, compact(obj))
    state = obj.get("state")
    if not isinstance(state, str) or state not in ORDER_STATES:
        return Bad("shape", "state is not an order state")
    # A deaf or hearing event is about the shop, not an order: its order_id and placed_at
    # may be null (mqtt.md lists them for every order event without saying).
    about_shop = state in ("deaf", "hearing")
    order_id = _text(obj.get("order_id"), MAX_ID_CHARS)
    if not order_id and not (about_shop and obj.get("order_id") is None):
        return Bad("shape", "order_id is not a string")
    placed_at = parse_rfc3339(obj.get("placed_at"))
    if placed_at is None and not (about_shop and obj.get("placed_at") is None):
        return Bad("shape", "placed_at is not an RFC 3339 time")
    reason = obj.get("reason")
    if reason is not None and _text(reason) is None:
        return Bad("shape", "reason is not a string")
    return Event(
        event_id,
        ts,
        kind,
        compact(obj),
        order_id=order_id or None,
        order_state=state,
        placed_at=placed_at,
        reason=reason if isinstance(reason, str) else None,
    )


def parse_availability(payload: bytes) -> Availability | Bad:
    if payload == b"online":
        return "online"
    if payload == b"offline":
        return "offline"
    return Bad("availability", f"{len(payload)} bytes, neither online nor offline")


def subscriptions(base_topic: str) -> tuple[str, str, str]:
    """The topic filters the console subscribes to (snapshot at QoS 0: see the README)."""
    return (f"{base_topic}/+/availability", f"{base_topic}/+/state", f"{base_topic}/+/event/#")
