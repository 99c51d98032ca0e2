"""`posd run` killed (SIGKILL) while an order is between its arrival and the PUBACK: before
the journal has it, or after. Either way the broker delivers it again and it alerts once.

The instant is a failpoint (POSD_FAILPOINTS, posd.runtime.failpoints): posd kills itself
there, as a power cut would, nothing flushed after it."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
from pathlib import Path

import pytest

from posd.config import load_config
from posd.journal import Journal
from posd.sim import OrderFeed
from tests.helpers.configs import write_config
from tests.helpers.daemon import PosClient, daemon_process
from tests.helpers.mosquitto import Mosquitto
from tests.posd.orders.support import sections

pytestmark = pytest.mark.timeout(60)
PUBACK = r"Received PUBACK from posd-T0000001-orders"


async def serving(client: PosClient) -> None:
    await client.wait_status(lambda s: s["orders"]["link"] == "up", timeout_s=20)


@pytest.mark.parametrize("instant", ["orders.before_journal", "orders.after_journal"])
async def test_killed_between_arrival_and_puback_the_order_comes_again_and_alerts_once(
    tmp_path: Path, mosquitto: Mosquitto, instant: str
) -> None:
    config_path = write_config(tmp_path, **sections(mosquitto, orders={"repeat_s": 0.5}))
    config = load_config(config_path)
    log = tmp_path / "posd-process.log"
    async with OrderFeed(mosquitto.host, mosquitto.port) as platform:
        async with daemon_process(
            config_path, env={"POSD_FAILPOINTS": f"{instant}=kill"}
        ) as process:
            client = PosClient(config.api.socket)
            try:
                await serving(client)
                mark = mosquitto.log_mark()
                await platform.send(platform.order("B-7"))
            finally:
                await client.session.close()
            async with asyncio.timeout(20):
                await process.wait()
            assert process.returncode == -signal.SIGKILL
        assert not any(re.search(PUBACK, line) for line in mosquitto.log_lines(mark))
        journal = await Journal.open(config.storage.state_dir)
        try:
            kept = await journal.orders.get("B-7")
        finally:
            await journal.close()
        assert (kept is None) == (instant == "orders.before_journal")

        config.api.socket.unlink(missing_ok=True)
        restarted = log.stat().st_size
        async with daemon_process(config_path) as process:
            client = PosClient(config.api.socket)
            try:
                await serving(client)
                # The broker delivers it again, and posd acknowledges it this time.
                await asyncio.to_thread(mosquitto.wait_for_log, PUBACK, after=mark)
                status, body = await client.request("GET", "/v1/orders")
                async with asyncio.timeout(20):
                    while status != 200 or body["alert"]["chimes"] < 2:
                        await asyncio.sleep(0.05)
                        status, body = await client.request("GET", "/v1/orders")
                assert [(o["order_id"], o["state"]) for o in body["orders"]] == [
                    ("B-7", "alerting")
                ]
                if kept is not None:
                    # Its timeline is the first arrival's, which the journal kept.
                    shown = body["orders"][0]["received_at"].replace("Z", "+00:00")
                    at = dt.datetime.fromisoformat(shown).timestamp()
                    assert round(at * 1000) == kept.received_at
            finally:
                await client.session.close()
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await process.wait() == 0
        second_run = log.read_bytes()[restarted:].decode(errors="replace")
        arrived = second_run.count("order B-7 arrived")
        again = second_run.count("order B-7 came again")
        # Once in all: taken now, or taken before the crash and only recognised now.
        assert (arrived, again) == ((1, 0) if kept is None else (0, 1)), second_run[-3000:]
