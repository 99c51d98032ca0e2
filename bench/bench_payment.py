"""Payment latency: from the customer's code reaching posd to the 0200 on the ledger socket.

The card reader driver had not landed when this was written, so the measured path starts at
the QR scanner's pty (the scanned text written) instead of the reader's CARD_DATA frame; the
rest of the path (journal `authorizing` with fsync, 0200 encode, MAC, TLS-less socket) is the
same. Printed beside this machine's fsync latency in the same run; target < 3 x fsync + 2 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_journal import fsync_latencies
from posd.sim.ledger_accounts import GOOD_QR_ACCOUNT
from tests.helpers.daemon import running_daemon

ROUNDS = 50


async def scan_to_0200(directory: Path, rounds: int = ROUNDS) -> list[float]:
    samples: list[float] = []
    async with running_daemon(directory) as d:
        for _ in range(rounds):
            created = await d.create(1_000, "qr")
            token = d.issuer.valid(GOOD_QR_ACCOUNT)
            seen_before = sum(1 for s in d.ledger.seen if s.mti == "0200")
            start = time.perf_counter()
            await d.scanner.scan(token)
            await d.ledger.wait_seen(
                lambda s, n=seen_before: (
                    s.mti == "0200" and sum(1 for x in d.ledger.seen if x.mti == "0200") > n
                )
            )
            samples.append(time.perf_counter() - start)
            await d.wait_final(str(created["payment_id"]))
    return samples


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="posd-bench-") as tmp:
        directory = Path(tmp)
        fsync = statistics.median(fsync_latencies(directory, append=True))
        latency = statistics.median(
            asyncio.run(scan_to_0200(Path(tempfile.mkdtemp(dir=directory))))
        )
    target = 3 * fsync + 0.002
    print(f"fsync (append) median:          {fsync * 1000:8.3f} ms")
    print(f"QR scan -> 0200 median ({ROUNDS}):   {latency * 1000:8.3f} ms")
    print(
        f"target 3 x fsync + 2 ms:        {target * 1000:8.3f} ms  "
        f"({'met' if latency < target else 'NOT met'})"
    )
