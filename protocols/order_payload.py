"""The 배달서구 order payload of mqtt.md: parse and validate, with a precise error path.

Decisions where mqtt.md is silent, made so that no real order is lost to a pedantic check
(an unalerted order is a missed delivery):
- `total` must be a non-negative integer but need not equal the sum of qty * price: the
  platform's total may include delivery fees or coupons that the items do not show.
  `Order.items_total` and `Order.total_matches` let the caller log a mismatch.
- Unknown keys (at the top and in items) are allowed and ignored, so the platform can add
  fields without breaking deployed terminals; they are listed in `Order.unknown_keys`.
- `requested_prep_min` and `note` may be absent, which means null.
- `order_id` goes into MQTT topics (`{topic}/{order_id}/status`), so it may not hold
  `/`, `+`, `#` or control characters.
- A key given twice in one object is refused: which value counts would be a guess.
- `placed_at` takes every RFC 3339 form, lower-case `t`/`z` and a leap second (`:60`, read
  as `:59`) included.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from protocols import strict_json

MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_ORDER_ID: Final = 64
MAX_ITEMS: Final = 200
MAX_NAME: Final = 200
MAX_NOTE: Final = 1000
MAX_PREP_MIN: Final = 24 * 60

_KNOWN_KEYS: Final = frozenset(
    {"order_id", "placed_at", "items", "total", "requested_prep_min", "note"}
)
_ITEM_KEYS: Final = frozenset({"name", "qty", "price"})
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)
_TOPIC_UNSAFE: Final = re.compile(r"[/+#\x00-\x1f\x7f]")


class OrderPayloadError(ValueError):
    """An order that does not parse; `path` names the offending value (`items[2].qty`)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class OrderItem:
    name: str
    qty: int
    price: int


@dataclass(frozen=True)
class Order:
    order_id: str
    placed_at: dt.datetime  # aware
    items: tuple[OrderItem, ...]
    total: int
    requested_prep_min: int | None
    note: str | None
    unknown_keys: tuple[str, ...] = ()

    @property
    def items_total(self) -> int:
        return sum(item.qty * item.price for item in self.items)

    @property
    def total_matches(self) -> bool:
        return self.items_total == self.total


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_placed_at(value: object) -> dt.datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise OrderPayloadError("placed_at", "must be an RFC 3339 date-time with an offset")
    # fromisoformat takes at most 6 fraction digits, upper-case T and Z, and no leap second;
    # RFC 3339 allows more digits, lower case, and :60 (read as :59 rather than lose the order).
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.upper())
    text = re.sub(r"^(.{10}.\d{2}:\d{2}):60", r"\1:59", text)
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise OrderPayloadError("placed_at", "is not a real date and time") from None


def _parse_item(index: int, raw: object) -> tuple[OrderItem, list[str]]:
    path = f"items[{index}]"
    if not isinstance(raw, Mapping):
        raise OrderPayloadError(path, "must be an object")
    for key in ("name", "qty", "price"):
        if key not in raw:
            raise OrderPayloadError(f"{path}.{key}", "is missing")
    name, qty, price = raw["name"], raw["qty"], raw["price"]
    if not isinstance(name, str) or not name.strip():
        raise OrderPayloadError(f"{path}.name", "must be a non-empty string")
    if len(name) > MAX_NAME:
        raise OrderPayloadError(f"{path}.name", f"must be at most {MAX_NAME} characters")
    if not _is_int(qty) or qty <= 0:
        raise OrderPayloadError(f"{path}.qty", "must be a positive integer")
    if not _is_int(price) or price < 0:
        raise OrderPayloadError(f"{path}.price", "must be an integer >= 0 (won)")
    unknown = [f"{path}.{key}" for key in raw if key not in _ITEM_KEYS]
    return OrderItem(name=name, qty=qty, price=price), unknown


def parse_order(payload: bytes) -> Order:
    """Parse an order message; raises OrderPayloadError naming the first bad value."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise OrderPayloadError("$", f"payload over {MAX_PAYLOAD_BYTES} bytes")
    try:
        raw = strict_json.loads(payload)
    except UnicodeDecodeError:
        raise OrderPayloadError("$", "not UTF-8") from None
    except strict_json.DuplicateKey as exc:
        raise OrderPayloadError(exc.key, "given twice") from None
    except json.JSONDecodeError as exc:
        raise OrderPayloadError("$", f"not JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:
        raise OrderPayloadError("$", str(exc)) from None
    except RecursionError:
        raise OrderPayloadError("$", "nested too deeply") from None
    if not isinstance(raw, dict):
        raise OrderPayloadError("$", "must be a JSON object")
    for key in ("order_id", "placed_at", "items", "total"):
        if key not in raw:
            raise OrderPayloadError(key, "is missing")

    order_id = raw["order_id"]
    if not isinstance(order_id, str) or not order_id:
        raise OrderPayloadError("order_id", "must be a non-empty string")
    if len(order_id) > MAX_ORDER_ID:
        raise OrderPayloadError("order_id", f"must be at most {MAX_ORDER_ID} characters")
    if _TOPIC_UNSAFE.search(order_id):
        raise OrderPayloadError("order_id", "may not hold '/', '+', '#' or control characters")

    placed_at = _parse_placed_at(raw["placed_at"])

    raw_items = raw["items"]
    if not isinstance(raw_items, list) or not raw_items:
        raise OrderPayloadError("items", "must be a non-empty list")
    if len(raw_items) > MAX_ITEMS:
        raise OrderPayloadError("items", f"must have at most {MAX_ITEMS} entries")
    items: list[OrderItem] = []
    unknown = [key for key in raw if key not in _KNOWN_KEYS]
    for index, raw_item in enumerate(raw_items):
        item, item_unknown = _parse_item(index, raw_item)
        items.append(item)
        unknown += item_unknown

    total = raw["total"]
    if not _is_int(total) or total < 0:
        raise OrderPayloadError("total", "must be an integer >= 0 (won)")

    prep = raw.get("requested_prep_min")
    if prep is not None and (not _is_int(prep) or not 0 <= prep <= MAX_PREP_MIN):
        raise OrderPayloadError(
            "requested_prep_min", f"must be null or an integer 0 to {MAX_PREP_MIN}"
        )
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise OrderPayloadError("note", "must be null or a string")
    if note is not None and len(note) > MAX_NOTE:
        raise OrderPayloadError("note", f"must be at most {MAX_NOTE} characters")

    return Order(
        order_id=order_id,
        placed_at=placed_at,
        items=tuple(items),
        total=total,
        requested_prep_min=prep,
        note=note,
        unknown_keys=tuple(unknown),
    )
