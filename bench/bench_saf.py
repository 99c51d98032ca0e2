"""Store-and-forward: a full offline backlog forwarded once the ledger comes back.

`offline.max_count` advices (the most posd approves offline) queued in the journal, posd
running with the reference ledger away; then the ledger takes connections again. Timed on
the daemon's event hub: from the ledger accepting connections, and from the link being up
(sign-on answered), to the last advice settled (the queue empty), on loopback and with
LATENCY_S added to every answer (a WAN round trip). The reconnect backoff is the tests'
(50 ms to 200 ms), not the field's (1 s to 60 s, jittered): what is timed is the forwarding.
Median over ROUNDS runs; each run's journal writes are fsynced, one per advice settled.

Beside it, a QR payment made while the backlog is being forwarded (once a window of advices is
at the ledger): from the scanner's last byte to the 0200 arriving at the ledger, and the same
for a payment made after the queue is empty. Everything (posd, the ledger, the scanner) runs in
one process on one event loop, so the figures include the simulators' share of the CPU.
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
from posd.sim.ledger_accounts import GOOD_QR_ACCOUNT
from tests.helpers.backlog import queue_advices
from tests.helpers.configs import write_config
from tests.helpers.daemon import RunningDaemon, running_daemon

ROUNDS = 3
LATENCY_S = 0.020


async def scan_to_0200(d: RunningDaemon) -> tuple[float, int]:
    """Seconds from a QR code scanned to its payment's 0200 at the ledger, and how many
    advices the ledger had answered when it arrived."""
    loop = asyncio.get_running_loop()
    seen = sum(1 for s in d.ledger.seen if s.mti == "0200")
    created = await d.create(5_000, "qr")
    token = d.issuer.valid(GOOD_QR_ACCOUNT)
    scanned = loop.time()
    await d.scanner.scan(token)
    await d.ledger.wait_seen(
        lambda s: s.mti == "0200" and sum(1 for x in d.ledger.seen if x.mti == "0200") > seen
    )
    took = loop.time() - scanned
    answered = sum(1 for e in d.ledger.events if e.kind == "answered" and e.mti == "0230")
    await d.wait_final(str(created["payment_id"]))
    return took, answered


async def drain(
    directory: Path, latency_s: float
) -> tuple[int, float, float, tuple[float, int], tuple[float, int]]:
    """(advices, s from the ledger back and from the link up to the queue empty, s from a
    scan to its 0200 while the queue drains and once it is empty) for one full backlog."""
    count = load_config(write_config(directory)).offline.max_count
    ids = set(await queue_advices(directory / "state", count, now=time.time()))
    loop = asyncio.get_running_loop()
    async with running_daemon(directory, ledger_up=False, logging={"level": "error"}) as d:
        d.ledger.latency_s = latency_s
        events = d.daemon.runtime.events.subscribe(kinds={"payment", "ledger"})
        try:
            back = loop.time()
            await d.ledger.refuse_connections(False)
            up: float | None = None
            await d.ledger.wait_seen(
                lambda _: sum(1 for s in d.ledger.seen if s.mti == "0220") >= WINDOW
            )
            during = asyncio.create_task(scan_to_0200(d))
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
        busy = await during
        _, status = await d.request("GET", "/v1/status")
        assert status["saf"]["pending"] == 0, status["saf"]
        idle = await scan_to_0200(d)
    assert up is not None
    return count, done - back, done - up, busy, idle


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="posd-bench-") as tmp:
        for name, latency in (("loopback", 0.0), (f"+{LATENCY_S * 1000:.0f} ms", LATENCY_S)):
            runs = [
                asyncio.run(drain(Path(tempfile.mkdtemp(dir=tmp)), latency)) for _ in range(ROUNDS)
            ]
            count = runs[0][0]
            from_back = statistics.median(r[1] for r in runs)
            from_up = statistics.median(r[2] for r in runs)
            busy = statistics.median(r[3][0] for r in runs)
            idle = statistics.median(r[4][0] for r in runs)
            answered = max(r[3][1] for r in runs)
            print(
                f"{count} advices, ledger back -> queue empty, {name:>8}: "
                f"{from_back * 1000:7.1f} ms   (from sign-on {from_up * 1000:7.1f} ms, "
                f"{count / from_up:4.0f} advices/s, {WINDOW} in flight; median of {ROUNDS})"
            )
            print(
                f"  QR scan -> 0200 at the ledger, {name:>8}: while the queue drains "
                f"{busy * 1000:6.1f} ms (at most {answered} of {count} advices answered by"
                f" then), queue empty {idle * 1000:6.1f} ms"
            )
        fsync = statistics.median(fsync_latencies(Path(tmp), append=True))
        print(f"fsync (append) median, one per advice settled: {fsync * 1000:7.3f} ms")
