"""배달서구 order payloads: a good order, the decisions of the module, and every error path."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.order_payload import Order, OrderItem, OrderPayloadError, parse_order

GOOD: dict[str, object] = {
    "order_id": "B-20261125-0042",
    "placed_at": "2026-11-25T12:03:00+09:00",
    "items": [
        {"name": "짜장면", "qty": 2, "price": 7000},
        {"name": "탕수육", "qty": 1, "price": 18000},
    ],
    "total": 32000,
    "requested_prep_min": 20,
    "note": "단무지 많이",
}


ITEMS = [{"name": "짜장면", "qty": 2, "price": 7000}, {"name": "탕수육", "qty": 1, "price": 18000}]


def _payload(**changes: object) -> bytes:
    doc = dict(GOOD)
    for key, value in changes.items():
        if value is _DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc, ensure_ascii=False).encode()


_DROP = object()


def test_good_order() -> None:
    order = parse_order(_payload())
    assert order == Order(
        order_id="B-20261125-0042",
        placed_at=dt.datetime(2026, 11, 25, 3, 3, tzinfo=dt.UTC),
        items=(OrderItem("짜장면", 2, 7000), OrderItem("탕수육", 1, 18000)),
        total=32000,
        requested_prep_min=20,
        note="단무지 많이",
    )
    assert order.items_total == 32000 and order.total_matches


def test_total_may_differ_from_items_and_nulls_and_absence_are_allowed() -> None:
    order = parse_order(_payload(total=35000, requested_prep_min=_DROP, note=None))
    assert order.total == 35000 and not order.total_matches
    assert order.requested_prep_min is None and order.note is None


def test_unknown_keys_are_kept_aside() -> None:
    items = [{"name": "a", "qty": 1, "price": 0, "options": ["곱빼기"]}]
    order = parse_order(_payload(items=items, channel="app"))
    assert order.unknown_keys == ("channel", "items[0].options")


def test_rfc3339_forms() -> None:
    assert parse_order(_payload(placed_at="2026-11-25T03:03:00Z")).placed_at.utcoffset() == (
        dt.timedelta(0)
    )
    nano = parse_order(_payload(placed_at="2026-11-25T03:03:00.123456789+00:00"))
    assert nano.placed_at.microsecond == 123456
    lower = parse_order(_payload(placed_at="2026-11-25t03:03:00z")).placed_at
    assert lower == dt.datetime(2026, 11, 25, 3, 3, tzinfo=dt.UTC)
    leap = parse_order(_payload(placed_at="2016-12-31T23:59:60Z")).placed_at
    assert leap == dt.datetime(2016, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    spaced = parse_order(_payload(placed_at="2026-11-25 12:03:00+09:00")).placed_at
    assert spaced == dt.datetime(2026, 11, 25, 3, 3, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff", "$: not UTF-8"),
        (b"{", "$: not JSON"),
        (b"[]", "$: must be a JSON object"),
        (b'{"total": NaN}', "$: NaN is not JSON"),
        (b"x" * 70000, "$: payload over"),
        (b'{"order_id": "a", "order_id": "b"}', "order_id: given twice"),
        (_payload(order_id=_DROP), "order_id: is missing"),
        (_payload(placed_at=_DROP), "placed_at: is missing"),
        (_payload(items=_DROP), "items: is missing"),
        (_payload(total=_DROP), "total: is missing"),
        (_payload(order_id=""), "order_id: must be a non-empty string"),
        (_payload(order_id=42), "order_id: must be a non-empty string"),
        (_payload(order_id="a/b"), "order_id: may not hold"),
        (_payload(order_id="a#"), "order_id: may not hold"),
        (_payload(order_id="x" * 65), "order_id: must be at most 64"),
        (_payload(placed_at="2026-11-25 12:03"), "placed_at: must be an RFC 3339"),
        (_payload(placed_at="2026-11-25T12:03:00"), "placed_at: must be an RFC 3339"),
        (_payload(placed_at="2026-02-30T12:03:00Z"), "placed_at: is not a real date"),
        (_payload(placed_at="2026-11-25T24:00:00Z"), "placed_at: is not a real date"),
        (_payload(placed_at=1764039780), "placed_at: must be an RFC 3339"),
        (_payload(items=[]), "items: must be a non-empty list"),
        (_payload(items={"name": "a"}), "items: must be a non-empty list"),
        (_payload(items=[{"name": "a", "qty": 1, "price": 1}] * 201), "items: must have at most"),
        (_payload(items=[1]), "items[0]: must be an object"),
        (_payload(items=[{"qty": 1, "price": 1}]), "items[0].name: is missing"),
        (_payload(items=[{"name": "a", "price": 1}]), "items[0].qty: is missing"),
        (_payload(items=[{"name": "a", "qty": 1}]), "items[0].price: is missing"),
        (_payload(items=[{"name": " ", "qty": 1, "price": 1}]), "items[0].name: must be a non"),
        (_payload(items=[{"name": "a" * 201, "qty": 1, "price": 1}]), "items[0].name: must be at"),
        (
            _payload(items=[*ITEMS, {"name": "a", "qty": 0, "price": 1}]),
            "items[2].qty: must be a positive integer",
        ),
        (_payload(items=[{"name": "a", "qty": 1.5, "price": 1}]), "items[0].qty: must be a pos"),
        (_payload(items=[{"name": "a", "qty": True, "price": 1}]), "items[0].qty: must be a pos"),
        (_payload(items=[{"name": "a", "qty": 1, "price": -1}]), "items[0].price: must be an"),
        (_payload(items=[{"name": "a", "qty": 1, "price": "1"}]), "items[0].price: must be an"),
        (_payload(total=-1), "total: must be an integer >= 0"),
        (_payload(total=1.0), "total: must be an integer >= 0"),
        (_payload(requested_prep_min=-5), "requested_prep_min: must be null or an integer"),
        (_payload(requested_prep_min="20"), "requested_prep_min: must be null or an integer"),
        (_payload(requested_prep_min=1441), "requested_prep_min: must be null or an integer"),
        (_payload(note=5), "note: must be null or a string"),
        (_payload(note="x" * 1001), "note: must be at most 1000"),
    ],
)
def test_each_error_names_its_path(payload: bytes, message: str) -> None:
    with pytest.raises(OrderPayloadError) as info:
        parse_order(payload)
    assert str(info.value).startswith(message)
    assert str(info.value) == f"{info.value.path}: {info.value.problem}"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_an_order_or_a_payload_error(data: bytes) -> None:
    with contextlib.suppress(OrderPayloadError):
        parse_order(data)


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(OrderPayloadError, match="nested too deeply"):
        parse_order(b"[" * 30_000 + b"]" * 30_000)
