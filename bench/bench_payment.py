"""Payment latency and the daemon's footprint.

1. From the simulated reader writing its CARD_DATA frame (contactless, so no COMPLETE step)
   to the 0200 arriving on the reference ledger's socket: the journal's `authorizing` write
   with its fsync, the 0200's encoding and MAC, the socket. Median over ROUNDS payments, beside
   this machine's fsync latency in the same run; target < 3 x fsync + 2 ms.
2. `posd run` as a process of its own, on the simulated reader, scanner and ledger: RSS
   once serving (target < 60 MB) and CPU while idle over IDLE_S (target < 1 % of a core).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_journal import fsync_latencies
from posd.config import load_config
from tests.helpers.daemon import PosClient, daemon_process, running_daemon, shop_peers

ROUNDS = 50
IDLE_S = 10.0
STX, CARD_DATA = 0x02, 0xA0


def _card_data_at(transcript: list[tuple[str, float, bytes]]) -> float:
    """When (transcript time) the reader wrote its CARD_DATA frame."""
    for direction, at, data in transcript:
        if direction == "<":
            for i, byte in enumerate(data[:-4]):
                if byte == STX and data[i + 4] == CARD_DATA:
                    return at
    raise LookupError("no CARD_DATA frame in the transcript")


async def card_data_to_0200(directory: Path, rounds: int = ROUNDS) -> list[float]:
    samples: list[float] = []
    loop = asyncio.get_running_loop()
    async with running_daemon(directory, card_reader=True) as d:
        reader = d.reader
        assert reader is not None
        reader.record = True
        for _ in range(rounds):
            created = await d.create(1_000, "card")
            await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "busy")
            seen = sum(1 for s in d.ledger.seen if s.mti == "0200")
            reader.transcript.clear()
            marked_at = loop.time()
            reader.note("present")
            offset = marked_at - reader.transcript[-1][1]
            reader.present("seoroeum-contactless")
            await d.ledger.wait_seen(
                lambda s, n=seen: (
                    s.mti == "0200" and sum(1 for x in d.ledger.seen if x.mti == "0200") > n
                )
            )
            arrived = loop.time()
            samples.append(arrived - (offset + _card_data_at(reader.transcript)))
            await d.wait_final(str(created["payment_id"]))
    return samples


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError("no VmRSS")


async def footprint(directory: Path) -> tuple[float, float]:
    """(RSS in MB once serving, idle CPU in % of a core over IDLE_S)."""
    async with shop_peers(directory) as peers:
        config_path = peers.config_path
        config = load_config(config_path)
        async with daemon_process(config_path) as process:
            client = PosClient(config.api.socket)
            try:
                await client.wait_status(
                    lambda s: (
                        s["ledger"]["link"] == "up"
                        and s["devices"]["card_reader"]["state"] == "ready"
                    ),
                    timeout_s=30,
                )
            finally:
                await client.session.close()
            rss = _rss_mb(process.pid)
            cpu_before, wall_before = _cpu_s(process.pid), time.monotonic()
            await asyncio.sleep(IDLE_S)
            cpu = (_cpu_s(process.pid) - cpu_before) / (time.monotonic() - wall_before)
    return rss, cpu * 100


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="posd-bench-") as tmp:
        directory = Path(tmp)
        fsync = statistics.median(fsync_latencies(directory, append=True))
        samples = asyncio.run(card_data_to_0200(Path(tempfile.mkdtemp(dir=directory))))
        latency = statistics.median(samples)
        p95 = statistics.quantiles(samples, n=20)[18]
        rss, idle_cpu = asyncio.run(footprint(Path(tempfile.mkdtemp(dir=directory))))
    target = 3 * fsync + 0.002
    print(f"fsync (append) median:              {fsync * 1000:8.3f} ms")
    print(
        f"CARD_DATA -> 0200 median ({ROUNDS}):     {latency * 1000:8.3f} ms   "
        f"target < 3 x fsync + 2 ms = {target * 1000:.3f} ms "
        f"({'met' if latency < target else 'NOT met'})"
    )
    print(f"CARD_DATA -> 0200 p95:              {p95 * 1000:8.3f} ms")
    print(
        f"daemon RSS once serving:            {rss:8.1f} MB   target < 60 MB "
        f"({'met' if rss < 60 else 'NOT met'})"
    )
    print(
        f"daemon idle CPU over {IDLE_S:.0f} s:          {idle_cpu:8.2f} %    target < 1 % "
        f"({'met' if idle_cpu < 1 else 'NOT met'})"
    )
