"""The order alerts as the operations centre sees them, both links on one broker: an order's
`order` events with mqtt.md's fields, the chime's output as a `device` event, and a deaf shop
told across the very outage that made it deaf (its events wait in the buffer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from posd.sim import OrderFeed
from tests.helpers.mosquitto import Mosquitto
from tests.posd.monitoring.support import box, watching
from tests.posd.orders.support import FAST

pytestmark = pytest.mark.timeout(60)

ORDERS = {"enabled": True, "repeat_s": 30.0, "escalate_after_s": 60.0, "missed_after_s": 120.0}
ALSA_NULL = {"output": "alsa", "device": "null"}
SESSION = "ops-orders"


async def test_order_events_carry_mqtt_md_fields_and_deafness_crosses_the_outage(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    broker = mosquitto_factory(persistence=True)
    # The operations centre's session is there before the box: it misses nothing.
    async with watching(broker, session=SESSION):
        pass
    async with box(tmp_path, broker, orders=ORDERS, audio=ALSA_NULL, order_tuning=FAST) as d:
        async with watching(broker, session=SESSION) as ops:
            await ops.state(lambda s: s["orders"]["link"] == "up" and s["orders"]["can_alert"])
            audio = await ops.event("device", lambda e: e["device"] == "audio")
            assert audio["state"] == "ready" and "the chime plays on alsa" in audio["detail"]
            async with OrderFeed(broker.host, broker.port) as platform:
                await platform.send(platform.order("B-ops-1"))
                alerting = await ops.event("order", lambda e: e["order_id"] == "B-ops-1")
            assert set(alerting) == {"id", "ts", "kind", "order_id", "state", "placed_at",
                                     "alerting_s", "reason"}  # fmt: skip
            assert alerting["state"] == "alerting" and alerting["placed_at"].endswith("Z")
            status, _ = await d.request("POST", "/v1/orders/B-ops-1/ack")
            assert status == 200
            acknowledged = await ops.event(
                "order", lambda e: e["order_id"] == "B-ops-1" and e["state"] == "acknowledged"
            )
            assert isinstance(acknowledged["alerting_s"], float)
        # The broker goes away: both links are down, and after 1 s (FAST) the shop is deaf.
        # The operations centre hears of it once the broker is back: deaf, about the shop
        # (no order), then hearing.
        await asyncio.to_thread(broker.stop)
        await d.wait_status(lambda s: s["orders"]["can_alert"] is False, timeout_s=15)
        await asyncio.to_thread(broker.start)
        async with watching(broker, session=SESSION) as ops:
            deaf = await ops.event("order", lambda e: e["state"] == "deaf")
            assert (deaf["order_id"], deaf["placed_at"]) == (None, None)
            assert deaf["reason"].startswith("orders link down for more than 1 s")
            hearing = await ops.event("order", lambda e: e["state"] == "hearing")
            assert hearing["reason"] is None and hearing["id"] != deaf["id"]
            await ops.state(lambda s: s["orders"]["can_alert"] is True)
