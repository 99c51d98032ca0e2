"""The local API's answer time with idle clients connected.

`posd run` as a process of its own, on the simulated scanner and ledger: `GET /v1/status` on
the Unix socket ROUNDS times over one keep-alive connection and ROUNDS times on a new
connection each, first with no other client, then with IDLE_CLIENTS connected and sending
nothing (below the connection cap, and measured within REQUEST_TIMEOUT_S of their connecting,
before posd closes them). Median and 95th percentile; target: the idle clients cost the median
less than 1 ms. Also posd's RSS with them connected.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.bench_payment import _rss_mb
from posd.api import REQUEST_TIMEOUT_S
from posd.config import load_config
from posd.sim import LedgerSimulator, SimulatedSerialScanner
from tests.helpers.configs import MAC_KEY_HEX, write_config
from tests.helpers.daemon import PosClient, daemon_process

ROUNDS = 200
IDLE_CLIENTS = 1000
BATCH = 100


async def _times(socket: Path, *, fresh: bool) -> list[float]:
    samples: list[float] = []
    connector = aiohttp.UnixConnector(path=str(socket), force_close=fresh)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(ROUNDS):
            started = time.perf_counter()
            async with session.get("http://posd/v1/status") as response:
                await response.read()
                assert response.status == 200
            samples.append(time.perf_counter() - started)
    return samples


async def _idle_clients(socket: Path, count: int) -> list[asyncio.StreamWriter]:
    """`count` connections that send nothing, opened in batches: a connect that finds the
    listen backlog full fails (asyncio reports it only when the socket is used), and is
    made again."""
    writers: list[asyncio.StreamWriter] = []
    while len(writers) < count:
        for _ in range(min(BATCH, count - len(writers))):
            _, writer = await asyncio.open_unix_connection(str(socket))
            writers.append(writer)
        await asyncio.sleep(0.05)
        writers = [w for w in writers if not w.transport.is_closing()]
    return writers


async def measure(directory: Path) -> dict[str, object]:
    with SimulatedSerialScanner() as scanner:
        async with LedgerSimulator(mac_key=bytes.fromhex(MAC_KEY_HEX)) as ledger:
            config_path = write_config(
                directory,
                ledger={"port": ledger.port},
                qr_scanner={"kind": "serial", "port": scanner.port},
                logging={"level": "warning"},
            )
            socket = load_config(config_path).api.socket
            async with daemon_process(config_path) as process:
                client = PosClient(socket)
                try:
                    state = await client.wait_status(
                        lambda s: s["ledger"]["link"] == "up", timeout_s=30
                    )
                finally:
                    await client.session.close()
                cap = state["api"]["max_connections"]
                figures: dict[str, object] = {"cap": cap}
                figures["alone keep-alive"] = await _times(socket, fresh=False)
                figures["alone new"] = await _times(socket, fresh=True)
                rss_alone = _rss_mb(process.pid)
                opened_at = time.monotonic()
                idle = await _idle_clients(socket, min(IDLE_CLIENTS, cap - 2))
                figures["idle keep-alive"] = await _times(socket, fresh=False)
                figures["idle new"] = await _times(socket, fresh=True)
                figures["rss"] = (rss_alone, _rss_mb(process.pid))
                figures["idle open"] = sum(1 for w in idle if not w.transport.is_closing())
                counter = PosClient(socket)
                try:
                    seen = await counter.wait_status(lambda s: True)
                finally:
                    await counter.session.close()
                figures["posd counted"] = seen["api"]["connections"]
                figures["in window"] = time.monotonic() - opened_at < REQUEST_TIMEOUT_S
                for writer in idle:
                    writer.close()
    return figures


def _line(name: str, samples: object) -> str:
    assert isinstance(samples, list)
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return f"{name:<42} median {statistics.median(ms):7.3f} ms   p95 {p95:7.3f} ms"


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        with tempfile.TemporaryDirectory(prefix="posd-bench-") as tmp:
            figures = asyncio.run(measure(Path(tmp)))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    idle = figures["idle open"]
    print(
        f"connection cap: {figures['cap']}; idle clients held open while measuring: {idle} "
        f"(posd counted {figures['posd counted']} connections)"
        f"{'' if figures['in window'] else '; NOT all within the request timeout'}"
    )
    print(_line("GET /v1/status, no other client, keep-alive", figures["alone keep-alive"]))
    print(_line("GET /v1/status, no other client, new conn", figures["alone new"]))
    print(_line(f"GET /v1/status, {idle} idle clients, keep-alive", figures["idle keep-alive"]))
    print(_line(f"GET /v1/status, {idle} idle clients, new conn", figures["idle new"]))
    alone = statistics.median(figures["alone keep-alive"])  # type: ignore[arg-type]
    crowded = statistics.median(figures["idle keep-alive"])  # type: ignore[arg-type]
    cost = (crowded - alone) * 1000
    print(
        f"cost of the idle clients (median):         {cost:7.3f} ms   target < 1 ms "
        f"({'met' if cost < 1 else 'NOT met'})"
    )
    rss_alone, rss_idle = figures["rss"]  # type: ignore[misc]
    print(f"daemon RSS alone / with them:              {rss_alone:7.1f} MB / {rss_idle:.1f} MB")
