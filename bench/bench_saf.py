"""Store-and-forward: a full offline backlog forwarded once the ledger comes back.

`offline.max_count` advices (the most posd approves offline) queued in the journal, posd
running with the reference ledger away; then the ledger takes connections again. Timed on
the daemon's event hub: from the ledger accepting connections, and from the link being up
(sign-on answered), to the last advice settled (the queue empty), on loopback and with
LATENCY_S added to every answer (a WAN round trip). The reconnect backoff is the tests'
(50 ms to 200 ms), not the field's (1 s to 60 s, jittered): what is timed is the forwarding.
Median over ROUNDS runs; each run's journal writes are fsynced, one per advice settled.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_journal import fsync_latencies
from posd.config import load_config
from posd.payments.saf import WINDOW
from tests.helpers.backlog import queue_advices
from tests.helpers.configs import write_config
from tests.helpers.daemon import running_daemon

ROUNDS = 3
LATENCY_S = 0.020


async def drain(directory: Path, latency_s: float) -> tuple[int, float, float]:
    """(advices, s from the ledger back, s from the link up) for one full backlog."""
    count = load_config(write_config(directory)).offline.max_count
    ids = set(await queue_advices(directory / "state", count, now=time.time()))
    loop = asyncio.get_running_loop()
    async with running_daemon(directory, ledger_up=False, logging={"level": "info"}) as d:
        d.ledger.latency_s = latency_s
        events = d.daemon.runtime.events.subscribe(kinds={"payment", "ledger"})
        try:
            back = loop.time()
            await d.ledger.refuse_connections(False)
            up: float | None = None
            async with asyncio.timeout(60):
                async for event in events:
                    body = event[str(event["type"])]
                    assert isinstance(body, dict)
                    if event["type"] == "ledger" and body["link"] == "up" and up is None:
                        up = loop.time()
                    elif body.get("state") == "forwarded":
                        ids.discard(str(body["payment_id"]))
                        if not ids:
                            break
            done = loop.time()
        finally:
            await events.aclose()
        _, status = await d.request("GET", "/v1/status")
        assert status["saf"]["pending"] == 0, status["saf"]
    assert up is not None
    return count, done - back, done - up


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="posd-bench-") as tmp:
        for name, latency in (("loopback", 0.0), (f"+{LATENCY_S * 1000:.0f} ms", LATENCY_S)):
            runs = [
                asyncio.run(drain(Path(tempfile.mkdtemp(dir=tmp)), latency)) for _ in range(ROUNDS)
            ]
            count = runs[0][0]
            from_back = statistics.median(r[1] for r in runs)
            from_up = statistics.median(r[2] for r in runs)
            print(
                f"{count} advices, ledger back -> queue empty, {name:>8}: "
                f"{from_back * 1000:7.1f} ms   (from sign-on {from_up * 1000:7.1f} ms, "
                f"{count / from_up:4.0f} advices/s, {WINDOW} in flight; median of {ROUNDS})"
            )
        fsync = statistics.median(fsync_latencies(Path(tmp), append=True))
        print(f"fsync (append) median, one per advice settled: {fsync * 1000:7.3f} ms")
