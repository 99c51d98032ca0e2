"""The order alert end to end: posd (in this process) on a real Mosquitto, the platform
played by posd.sim's OrderFeed, the chime through `aplay -D null`, the shop's POS on the
local API. Chimes are counted by the alert itself (`GET /v1/orders` → alert.chimes, counted
when aplay says it plays), never guessed from time."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from posd.sim import OrderFeed
from tests.helpers.daemon import sse_lines
from tests.helpers.mosquitto import Mosquitto
from tests.posd.orders.support import SHORT, chimes, events, posd, state

MERCHANT = "M00000000000001"


def feed(broker: Mosquitto) -> OrderFeed:
    return OrderFeed(broker.host, broker.port, MERCHANT)


async def test_an_order_chimes_at_once_repeats_and_stops_when_the_pos_acknowledges(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        posd(tmp_path, mosquitto, orders=SHORT | {"missed_after_s": 60.0}) as d,
        events(d) as hub,
        feed(mosquitto) as platform,
    ):
        order = platform.order("B-1")
        await platform.send(order)
        arrived = await hub.next("order", lambda e: e["order_id"] == "B-1")
        assert arrived == {
            "order_id": "B-1",
            "state": "alerting",
            "placed_at": order["placed_at"],
            "alerting_s": 0.0,
            "reason": None,
        }
        repeated = await d.wait_orders(lambda body: chimes(body) >= 3)
        assert repeated["alerting"] == 1 and repeated["alert"]["output"] == "alsa"
        listed = repeated["orders"][0]
        assert (listed["order_id"], listed["state"], listed["total"]) == ("B-1", "alerting", 30_000)
        assert listed["items"][0] == {"name": "짜장면", "qty": 2, "price": 7_000}
        assert (await platform.wait_status("B-1", "alerting"))["placed_at"] == order["placed_at"]

        status, acked = await d.request("POST", "/v1/orders/B-1/ack")
        assert status == 200 and acked["state"] == "acknowledged"
        assert acked["acknowledged_by"] == "pos" and acked["alerting_s"] >= 2 * SHORT["repeat_s"]
        await hub.next("order", lambda e: e["state"] == "acknowledged")
        assert (await platform.wait_status("B-1", "acknowledged"))["acknowledged_by"] == "pos"
        retained = await platform.retained("B-1")
        assert retained is not None and retained["state"] == "acknowledged"

        after = await d.wait_orders(lambda body: body["alerting"] == 0)
        # Four repeat intervals with nothing waiting: not one chime more.
        await asyncio.sleep(4 * SHORT["repeat_s"])
        assert chimes(await d.wait_orders(lambda body: True)) == chimes(after)
        # Acknowledging again answers the same order, changed by nothing.
        status, again = await d.request("POST", "/v1/orders/B-1/ack")
        assert status == 200 and again == acked | {"alerting_s": again["alerting_s"]}
        assert len([e for e in hub.of("order") if e["order_id"] == "B-1"]) == 2
    assert platform.bad_statuses == []


async def test_the_platform_acknowledges_by_mqtt(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with (
        posd(tmp_path, mosquitto, orders=SHORT | {"missed_after_s": 60.0}) as d,
        events(d) as hub,
        feed(mosquitto) as platform,
    ):
        await platform.send(platform.order("B-2"))
        await d.wait_orders(lambda body: chimes(body) >= 1)
        await platform.ack("B-2")
        done = await hub.next("order", lambda e: e["state"] == "acknowledged")
        assert done["order_id"] == "B-2"
        assert (await platform.wait_status("B-2", "acknowledged"))["acknowledged_by"] == "mqtt"
        body = await d.wait_orders(state("B-2", "acknowledged"))
        assert body["alerting"] == 0
        # An acknowledgement for an order this box never had changes nothing.
        await platform.ack("B-404")
        status, _ = await d.request("POST", "/v1/orders/B-404/ack")
        assert status == 404


async def test_the_same_order_sent_again_alerts_once(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with posd(tmp_path, mosquitto) as d, events(d) as hub, feed(mosquitto) as platform:
        order = platform.order("B-3")
        for _ in range(3):
            await platform.send(order)
        # The platform's marker after the copies: once it is in, the copies were taken too.
        await platform.send(platform.order("B-marker"))
        await hub.next("order", lambda e: e["order_id"] == "B-marker")
        body = await d.wait_orders(lambda b: b["alerting"] == 2)
        assert [o["order_id"] for o in body["orders"]] == ["B-3", "B-marker"]
        assert [e["order_id"] for e in hub.of("order")] == ["B-3", "B-marker"]


async def test_several_orders_make_one_alert_that_says_how_many(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "posd.orders")
    async with (
        posd(tmp_path, mosquitto, orders=SHORT | {"missed_after_s": 60.0}) as d,
        events(d) as hub,
        feed(mosquitto) as platform,
    ):
        for n in (1, 2, 3):
            await platform.send(platform.order(f"B-many-{n}"))
        await hub.next("order", lambda e: e["order_id"] == "B-many-3")
        body = await d.wait_orders(lambda b: b["alerting"] == 3 and b["alert"]["waiting"] == 3)
        seen = chimes(body)
        await d.wait_orders(lambda b: chimes(b) >= seen + 2)
        rounds = [r.getMessage() for r in caplog.records if "order alert: chime" in r.getMessage()]
        assert any("for 3 orders waiting (oldest B-many-1" in line for line in rounds), rounds
        status, _ = await d.request("POST", "/v1/orders/B-many-2/ack")
        assert status == 200
        body = await d.wait_orders(lambda b: b["alerting"] == 2)
        assert [o["order_id"] for o in body["orders"][:2]] == ["B-many-1", "B-many-3"]
        for order_id in ("B-many-1", "B-many-3"):
            await d.request("POST", f"/v1/orders/{order_id}/ack")
        await d.wait_orders(lambda b: b["alerting"] == 0 and b["alert"]["waiting"] == 0)


async def test_an_order_left_alone_escalates_then_is_missed_with_an_event(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        posd(tmp_path, mosquitto, orders=SHORT) as d,
        events(d) as hub,
        feed(mosquitto) as platform,
    ):
        await platform.send(platform.order("B-4"))
        loud = await d.wait_orders(lambda b: b["alert"]["last_loud"])
        assert loud["alerting"] == 1
        missed = await hub.next("order", lambda e: e["state"] == "missed")
        assert missed["order_id"] == "B-4" and missed["alerting_s"] >= SHORT["missed_after_s"]
        assert (await platform.wait_status("B-4", "missed"))["acknowledged_by"] is None
        body = await d.wait_orders(state("B-4", "missed"))
        assert (body["alerting"], body["missed_today"]) == (0, 1)
        status = await d.wait_status(lambda s: s["orders"]["missed_today"] == 1)
        assert status["orders"]["alerting"] == 0
        # Too late at the POS: the call centre was told already.
        code, refused = await d.request("POST", "/v1/orders/B-4/ack")
        assert code == 409 and refused["error"]["code"] == "wrong_state"
        stopped = chimes(body)
        await asyncio.sleep(4 * SHORT["repeat_s"])
        assert chimes(await d.wait_orders(lambda b: True)) == stopped


async def test_the_event_stream_carries_order_changes_and_not_errors(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with posd(tmp_path, mosquitto) as d, feed(mosquitto) as platform:
        async with d.session.get("http://posd/v1/events") as response:
            assert (await response.content.readline()).strip() == b": connected"
            await platform.send(b"not an order")
            await platform.send(platform.order("B-5"))
            raw = b""
            async with asyncio.timeout(10):
                while b'"B-5"' not in raw:
                    raw += await response.content.readany()
        [event] = sse_lines(raw)
        assert event["type"] == "order" and event["order"]["order_id"] == "B-5"


async def test_order_requests_the_api_refuses(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with posd(tmp_path, mosquitto) as d:
        status, body = await d.request("GET", "/v1/orders?all=1")
        assert status == 400 and body["error"]["field"] == "all"
        status, body = await d.request("POST", "/v1/orders/B-x/ack", {"by": "me"})
        assert status == 400 and body["error"]["field"] == "by"
        status, body = await d.request("POST", "/v1/orders/B-x/ack")
        assert status == 404 and body["error"]["code"] == "unknown_order"
        status, body = await d.request("GET", "/v1/orders")
        assert status == 200
        assert body["orders"] == [] and body["link"] == "up" and body["can_alert"] is True
        assert body["audio"] == {"state": "ready", "output": "alsa"}
