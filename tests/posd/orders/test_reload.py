"""A reload that changes the order alerts' sections rebuilds them alone, on the journal that
stays open, and the API finds the new ones; orders still alerting go on chiming."""

from __future__ import annotations

from pathlib import Path

from posd.sim import OrderFeed
from tests.helpers.configs import write_config
from tests.helpers.mosquitto import Mosquitto
from tests.posd.orders.support import SHORT, chimes, posd, sections


async def test_a_reload_of_audio_rebuilds_the_alerts_and_they_keep_alerting(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    timings = SHORT | {"missed_after_s": 60.0}
    async with (
        posd(tmp_path, mosquitto, orders=timings) as d,
        OrderFeed(mosquitto.host, mosquitto.port) as platform,
    ):
        before = d.alerts
        await platform.send(platform.order("B-reload"))
        await d.wait_orders(lambda b: chimes(b) >= 1)
        overrides = sections(mosquitto, orders=timings, audio={"volume": 50})
        write_config(tmp_path, **(d.overrides | overrides))
        assert await d.daemon.reload()
        assert d.alerts is not before
        assert d.daemon.supervisor.statuses()["payments"].state == "running"
        body = await d.wait_orders(lambda b: b["alerting"] == 1 and chimes(b) >= 1)
        assert body["orders"][0]["order_id"] == "B-reload"
        status, acked = await d.request("POST", "/v1/orders/B-reload/ack")
        assert status == 200 and acked["state"] == "acknowledged"
