"""Orders across a stop of posd: the persistent session keeps what the platform sent while
posd was stopped (both MQTT versions), and an order still alerting when posd stopped alerts
again after it starts, on its original timeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from posd.sim import OrderFeed
from tests.helpers.mosquitto import Mosquitto
from tests.posd.orders.support import SHORT, chimes, events, posd, state

PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])


@PROTOCOLS
async def test_orders_sent_while_posd_is_stopped_alert_after_it_starts(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    async with posd(tmp_path, mosquitto, protocol=protocol):
        pass  # the session is made, then posd stops
    async with OrderFeed(mosquitto.host, mosquitto.port, protocol=protocol) as platform:
        for n in (1, 2, 3):
            await platform.send(platform.order(f"B-away-{n}"))
        async with posd(tmp_path, mosquitto, protocol=protocol) as d:
            body = await d.wait_orders(lambda b: b["alerting"] == 3 and chimes(b) >= 1)
            assert [o["order_id"] for o in body["orders"]] == ["B-away-1", "B-away-2", "B-away-3"]
            for n in (1, 2, 3):
                await platform.wait_status(f"B-away-{n}", "alerting")
        assert platform.bad_statuses == []


async def test_an_order_alerting_when_posd_stopped_alerts_again_on_its_own_timeline(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    timings = SHORT | {"escalate_after_s": 1.5, "missed_after_s": 3.0}
    async with OrderFeed(mosquitto.host, mosquitto.port) as platform:
        async with posd(tmp_path, mosquitto, orders=timings) as d:
            await platform.send(platform.order("B-6"))
            first = await d.wait_orders(lambda b: chimes(b) >= 1)
            received_at = first["orders"][0]["received_at"]
        async with posd(tmp_path, mosquitto, orders=timings) as d, events(d) as hub:
            again = await d.wait_orders(lambda b: b["alerting"] == 1 and chimes(b) >= 1)
            assert again["orders"][0]["received_at"] == received_at
            missed = await hub.next("order", lambda e: e["state"] == "missed")
            # Missed at the deadline of its first arrival, not of this start.
            assert timings["missed_after_s"] <= missed["alerting_s"] < 2 * timings["missed_after_s"]
            body = await d.wait_orders(state("B-6", "missed"))
            assert body["orders"][0]["received_at"] == received_at
            await platform.wait_status("B-6", "missed")
