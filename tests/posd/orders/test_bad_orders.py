"""Orders that are no orders: each is one `error` event on the hub and one log line, is
acknowledged to the broker (so it never comes back) and never alerts."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest

from posd.sim import OrderFeed
from tests.helpers.mosquitto import Mosquitto
from tests.posd.orders.support import events, posd

GOOD = OrderFeed.order("B-template")


def without(key: str) -> bytes:
    return json.dumps({k: v for k, v in GOOD.items() if k != key}).encode()


BAD: list[tuple[str, bytes, str]] = [
    ("not JSON", b"{order", "not JSON"),
    ("not UTF-8", b"\xff\xfe", "not UTF-8"),
    ("no order_id", without("order_id"), "order_id: is missing"),
    ("no items", without("items"), "items: is missing"),
    ("qty a string", json.dumps(GOOD | {"items": [{"name": "a", "qty": "2", "price": 1}]}).encode(),
     "items[0].qty"),
    ("total a float", json.dumps(GOOD | {"total": 1.5}).encode(), "total"),
    ("huge", json.dumps(GOOD | {"note": "x" * 70_000}).encode(), "payload over"),
    ("placed long ago", json.dumps(GOOD | {"placed_at": "2020-01-01T00:00:00Z"}).encode(),
     "days ago"),
]  # fmt: skip


async def test_malformed_orders_are_error_events_acknowledged_and_never_alerted(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "posd.orders")
    async with (
        posd(tmp_path, mosquitto) as d,
        events(d) as hub,
        OrderFeed(mosquitto.host, mosquitto.port) as platform,
    ):
        mark = mosquitto.log_mark()
        for _, payload, _ in BAD:
            await platform.send(payload)
        await platform.send(platform.order("B-good"))
        await hub.next("order", lambda e: e["order_id"] == "B-good")
        errors = hub.of("error")
        assert len(errors) == len(BAD)
        for (what, _, fragment), error in zip(BAD, errors, strict=True):
            assert fragment in error["detail"], what
            assert error["what"] == (
                "stale_order" if what == "placed long ago" else "order_payload"
            )
            assert "acknowledged, not alerted" in error["detail"]
        assert [e["order_id"] for e in hub.of("order")] == ["B-good"]
        body = await d.wait_orders(lambda b: b["alerting"] == 1)
        assert [o["order_id"] for o in body["orders"]] == ["B-good"]
        # Every one was acknowledged: none will come back.
        puback = r"Received PUBACK from posd-T0000001-orders"
        await asyncio.to_thread(mosquitto.wait_for_log, puback, after=mark, count=len(BAD) + 1)
        lines = [r.getMessage() for r in caplog.records if "does not parse" in r.getMessage()
                 or "days ago" in r.getMessage()]  # fmt: skip
        assert len(lines) == len(BAD)
        # The log names the problem and the size, never the payload.
        assert not any(re.search("x{100}|{order", line) for line in lines)
