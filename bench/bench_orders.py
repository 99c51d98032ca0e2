"""배달서구 orders: from the platform's publish to the chime's playback start, and posd's RSS.

`posd run` as a process of its own, its orders link on a Mosquitto of the bench's own, the
chime through `aplay -D null`. For each of ORDERS orders, one at a time: the platform
(posd.sim's OrderFeed) publishes it at QoS 1; posd journals it, acknowledges it to the broker
and starts the chime; the playback start is the moment aplay says it plays, stamped by posd
(`GET /v1/orders` → alert.last_chime_at, wall clock, the same machine's); then the POS
acknowledges it. The target is 250 ms from the order's arrival at posd to playback start;
posd's own log says that part (arrival → start) for each chime, printed too. RSS is read once
the orders link is up and again after the orders (target < 60 MB).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_payment import _rss_mb
from posd.config import load_config
from posd.sim import OrderFeed
from tests.helpers.configs import write_config
from tests.helpers.daemon import PosClient, daemon_process
from tests.helpers.mosquitto import Mosquitto, mosquitto_binary

ORDERS = 50
_STARTED = re.compile(r"started (\d+) ms after (\S+) arrived")


def _at(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _orders(client: PosClient, predicate: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            status, body = await client.request("GET", "/v1/orders")
            if status == 200 and predicate(body):
                return dict(body)
            await asyncio.sleep(0.005)


async def measure(directory: Path) -> tuple[list[float], list[float], float, float]:
    """(publish → playback start, arrival → start from posd's log, RSS link up, RSS after)."""
    broker = Mosquitto(directory / "mosquitto")
    broker.start()
    try:
        config_path = write_config(
            directory,
            mqtt={"enabled": False, "host": broker.host, "port": broker.port},
            orders={
                "enabled": True,
                "repeat_s": 600,
                "escalate_after_s": 1200,
                "missed_after_s": 3600,
            },
            audio={"output": "alsa", "device": "null"},
            logging={"level": "info"},
        )
        config = load_config(config_path)
        publish_to_start: list[float] = []
        async with (
            daemon_process(config_path) as process,
            OrderFeed(broker.host, broker.port) as platform,
        ):
            client = PosClient(config.api.socket)
            try:
                await client.wait_status(lambda s: s["orders"]["link"] == "up", timeout_s=30)
                rss_up = _rss_mb(process.pid)
                for n in range(ORDERS):
                    before = (await _orders(client, lambda b: True))["alert"]["chimes"]
                    order = platform.order(f"bench-{n}")
                    sent = time.time()
                    await platform.send(order)
                    body = await _orders(client, lambda b, c=before: b["alert"]["chimes"] > c)
                    publish_to_start.append(_at(body["alert"]["last_chime_at"]) - sent)
                    status, _ = await client.request("POST", f"/v1/orders/bench-{n}/ack")
                    assert status == 200
                    await _orders(client, lambda b: b["alert"]["waiting"] == 0)
                rss_after = _rss_mb(process.pid)
            finally:
                await client.session.close()
        log = (directory / "posd-process.log").read_text(errors="replace")
        in_posd = [int(m.group(1)) / 1000 for m in _STARTED.finditer(log)]
        return publish_to_start, in_posd, rss_up, rss_after
    finally:
        broker.kill()


def _ms(samples: list[float]) -> str:
    p95 = statistics.quantiles(samples, n=20)[18]
    return f"median {statistics.median(samples) * 1000:6.1f} ms, p95 {p95 * 1000:6.1f} ms"


def main() -> None:
    if shutil.which("aplay") is None:
        print("orders: skipped, aplay (alsa-utils) is not installed")
        return
    mosquitto_binary()
    with tempfile.TemporaryDirectory(prefix="posd-bench-orders-") as tmp:
        total, in_posd, rss_up, rss_after = asyncio.run(measure(Path(tmp)))
    p95 = statistics.quantiles(total, n=20)[18]
    print(
        f"order publish -> playback started ({len(total)} orders): {_ms(total)}   "
        f"target < 250 ms ({'met' if p95 < 0.25 else 'NOT met'} at p95)"
    )
    if len(in_posd) >= 2:
        print(f"  of which arrival at posd -> playback started: {_ms(in_posd)}")
    print(f"daemon RSS, orders link up:           {rss_up:6.1f} MB   target < 60 MB "
          f"({'met' if rss_up < 60 else 'NOT met'})")  # fmt: skip
    print(f"daemon RSS after {ORDERS} orders:           {rss_after:6.1f} MB   target < 60 MB "
          f"({'met' if rss_after < 60 else 'NOT met'})")  # fmt: skip
