"""Fleet monitoring's cost (issue 11), with a real Mosquitto.

1. `posd run` as its own process on the simulated reader, scanner and ledger, with both MQTT
   links up (monitoring and 배달서구 orders, the chime on ALSA's null device): RSS once
   serving; goal under 60 MB all in. Measured twice: with the ledger on plain TCP (the test
   config's shape) and over mutual TLS with a client certificate, as every box in a shop runs
   (the config check then reads the certificate and key, and the link holds a TLS context).
   Pss beside it: the shared libraries' pages divided among the processes mapping them (here
   the bench's own Python), so less than RSS; threads: the process's task count.
2. Its CPU while idle over IDLE_S, which holds two of the 60 s state ticks; goal under 1 %
   (in the TLS run).
3. Payment latency, from the QR scan to the `approved` event on the local API's stream, with
   the broker up, stopped (events wait in the buffer) and paused (its socket open, nothing
   answered: the worst case, publishes waiting for PUBACKs), side by side.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.bench_payment import _cpu_s, _rss_mb
from posd.config import load_config
from posd.sim import (
    GOOD_QR_ACCOUNT,
    server_ssl_context,
)
from tests.helpers.configs import write_tls_files
from tests.helpers.daemon import (
    PosClient,
    RunningDaemon,
    daemon_process,
    running_daemon,
    shop_peers,
)
from tests.helpers.mosquitto import BrokerOptions, Mosquitto

IDLE_S = 125.0
ROUNDS = 30
GOAL_RSS_MB = 60.0


@dataclass(frozen=True)
class Footprint:
    rss_mb: float
    pss_mb: float
    threads: int
    idle_cpu_percent: float | None


def _pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise LookupError("no Pss")


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


async def footprint(
    directory: Path, broker: Mosquitto, *, tls: bool, idle_s: float | None
) -> Footprint:
    """The daemon's memory once both links are up; its idle CPU over `idle_s` if given."""
    ledger_section: dict[str, object] = {}
    ssl_context = None
    if tls:
        files = write_tls_files(directory / "tls")
        ssl_context = server_ssl_context(
            files.server_cert_file, files.server_key_file, files.ca_file
        )
        ledger_section = {
            "tls": True,
            "host": "localhost",
            "ca_file": str(files.ca_file),
            "cert_file": str(files.client_cert_file),
            "key_file": str(files.client_key_file),
        }
    async with shop_peers(
        directory,
        ledger_tls=ssl_context,
        ledger=ledger_section,
        mqtt={"enabled": True, "host": broker.host, "port": broker.port},
        orders={"enabled": True},
        audio={"output": "alsa", "device": "null"},
    ) as peers:
        config_path = peers.config_path
        config = load_config(config_path)
        async with daemon_process(config_path) as process:
            client = PosClient(config.api.socket)
            try:
                await client.wait_status(
                    lambda s: (
                        s["ledger"]["link"] == "up"
                        and s["devices"]["card_reader"]["state"] == "ready"
                        and s["mqtt"]["link"] == "up"
                        and s["orders"]["link"] == "up"
                    ),
                    timeout_s=30,
                )
            finally:
                await client.session.close()
            await asyncio.sleep(2)  # the first debounced state is out
            rss, pss = _rss_mb(process.pid), _pss_mb(process.pid)
            threads = _threads(process.pid)
            if idle_s is None:
                return Footprint(rss, pss, threads, None)
            cpu_before, wall_before = _cpu_s(process.pid), time.monotonic()
            await asyncio.sleep(idle_s)
            cpu = (_cpu_s(process.pid) - cpu_before) / (time.monotonic() - wall_before)
    return Footprint(rss, pss, threads, cpu * 100)


async def _approved(stream: aiohttp.ClientResponse, buffer: bytearray, payment_id: str) -> None:
    while True:
        for line in bytes(buffer).split(b"\n"):
            if line.startswith(b"data: "):
                event = json.loads(line[6:])
                payment = event.get("payment") or {}
                if payment.get("payment_id") == payment_id and payment.get("state") in (
                    "approved",
                    "declined",
                ):
                    return
        chunk = await stream.content.readany()
        if not chunk:
            raise RuntimeError("the event stream ended")
        buffer += chunk


async def scan_to_approved(d: RunningDaemon, rounds: int) -> list[float]:
    samples: list[float] = []
    unbounded = aiohttp.ClientTimeout(total=None)
    async with d.session.get("http://posd/v1/events", timeout=unbounded) as stream:
        for _ in range(rounds):
            created = await d.create(1_000, "qr")
            buffer = bytearray()
            token = d.issuer.valid(GOOD_QR_ACCOUNT)
            started = time.perf_counter()
            await d.scanner.scan(token)
            await asyncio.wait_for(_approved(stream, buffer, str(created["payment_id"])), 20)
            samples.append(time.perf_counter() - started)
            await d.wait_final(str(created["payment_id"]))
    return samples


async def latencies(directory: Path, broker: Mosquitto) -> dict[str, list[float]]:
    mqtt = {"enabled": True, "host": broker.host, "port": broker.port}
    figures: dict[str, list[float]] = {}
    # The production link (backoff 1 s doubling to 60 s), not the tests' quick reconnects.
    link = {"backoff_initial_s": 1.0, "backoff_max_s": 60.0, "timeout_s": 10.0}
    async with running_daemon(
        directory, mqtt=mqtt, logging={"level": "warning"}, monitoring_link=link
    ) as d:
        await d.wait_status(lambda s: s["mqtt"]["link"] == "up")
        await scan_to_approved(d, 3)  # warm up
        figures["broker up"] = await scan_to_approved(d, ROUNDS)
        await asyncio.to_thread(broker.stop)
        await d.wait_status(lambda s: s["mqtt"]["link"] == "down")
        figures["broker stopped"] = await scan_to_approved(d, ROUNDS)
        await asyncio.to_thread(broker.start)
        await d.wait_status(lambda s: s["mqtt"]["link"] == "up", timeout_s=30)
        broker.pause()
        try:
            figures["broker paused"] = await scan_to_approved(d, ROUNDS)
        finally:
            broker.resume()
    return figures


def _ms(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] * 1000 if q < 100 else max(samples)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="posd-bench-mon-") as tmp:
        directory = Path(tmp)
        broker = Mosquitto(directory / "broker", BrokerOptions())
        broker.start()
        try:
            figures = asyncio.run(latencies(Path(tempfile.mkdtemp(dir=directory)), broker))
            plain = asyncio.run(
                footprint(Path(tempfile.mkdtemp(dir=directory)), broker, tls=False, idle_s=None)
            )
            tls = asyncio.run(
                footprint(Path(tempfile.mkdtemp(dir=directory)), broker, tls=True, idle_s=IDLE_S)
            )
        finally:
            broker.kill()
    for name, shape in (("ledger on plain TCP", plain), ("ledger over TLS", tls)):
        print(
            f"daemon RSS, both MQTT links up, {name + ':':<21}{shape.rss_mb:6.1f} MB   "
            f"goal < {GOAL_RSS_MB:.0f} MB ({'met' if shape.rss_mb < GOAL_RSS_MB else 'NOT met'}); "
            f"Pss {shape.pss_mb:.1f} MB, {shape.threads} threads"
        )
    idle = tls.idle_cpu_percent or 0.0
    print(
        f"daemon idle CPU over {IDLE_S:.0f} s (2 ticks): {idle:8.2f} %    goal < 1 % "
        f"({'met' if idle < 1 else 'NOT met'})"
    )
    print(f"QR scan -> approved event ({ROUNDS} payments each, median / p90):")
    for name, samples in figures.items():
        print(
            f"  {name:<16} {statistics.median(samples) * 1000:8.2f} ms / {_ms(samples, 90):8.2f} ms"
        )
