"""Journal durability cost: this machine's fsync latency beside the journal's durable writes.

Every journal write is one committed transaction in WAL mode with synchronous=FULL, so its
floor is one fdatasync of journal.db-wal (strace shows one per commit). Set POSD_BENCH_DIR
to measure another disk (the journal's real state_dir, say); the default is the temp dir.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from posd.journal import CardSecrets, Journal

ROUNDS = 50
CARD = CardSecrets("chip", "9410123456789012", expiry="2812", icc=bytes(64))


def fsync_latencies(directory: Path, rounds: int = ROUNDS, *, append: bool) -> list[float]:
    """append: os.fsync after growing the file (a metadata update each time, as the brief's
    probe); otherwise os.fdatasync after rewriting the same 4 KiB in place, which is what
    SQLite does to a WAL file that has been reset and is being reused."""
    fd = os.open(directory / "fsync-probe", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        samples = []
        os.write(fd, bytes(4096))
        os.fsync(fd)
        for _ in range(rounds):
            if append:
                os.write(fd, b"x" * 128)
            else:
                os.pwrite(fd, os.urandom(4096), 0)
            start = time.perf_counter()
            (os.fsync if append else os.fdatasync)(fd)
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        os.close(fd)


async def journal_latencies(directory: Path, rounds: int = ROUNDS) -> dict[str, list[float]]:
    journal = await Journal.open(directory)
    samples: dict[str, list[float]] = {"create": [], "authorize": [], "answer": [], "payment": []}
    try:
        for n in range(rounds):
            now = time.time()
            t0 = time.perf_counter()
            record, _ = await journal.create_payment(
                amount=10_000,
                charged=10_000,
                method="any",
                idempotency_key=f"b{n}",
                now=now,
            )
            t1 = time.perf_counter()
            await journal.begin_authorization(record.payment_id, CARD, now)
            t2 = time.perf_counter()
            await journal.record_answer(record.payment_id, response_code="00", now=now)
            t3 = time.perf_counter()
            samples["create"].append(t1 - t0)
            samples["authorize"].append(t2 - t1)
            samples["answer"].append(t3 - t2)
            samples["payment"].append(t3 - t0)
    finally:
        await journal.close()
    return samples


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"median {statistics.median(ordered) * 1000:7.2f} ms   p90 {p90 * 1000:7.2f} ms"


def main() -> None:
    directory = Path(
        tempfile.mkdtemp(prefix="posd-bench-journal-", dir=os.environ.get("POSD_BENCH_DIR"))
    )
    try:
        fsync = fsync_latencies(directory, append=True)
        datasync = fsync_latencies(directory, append=False)
        journal = asyncio.run(journal_latencies(directory / "state"))
    finally:
        shutil.rmtree(directory)
    print(f"directory: {directory.parent} ({ROUNDS} rounds each)")
    print(f"  os.fsync, 128 B append                 {_ms(fsync)}")
    print(f"  os.fdatasync, 4 KiB rewrite in place   {_ms(datasync)}")
    print(f"  journal create (waiting_for_card)      {_ms(journal['create'])}")
    print(f"  journal begin_authorization (+STAN)    {_ms(journal['authorize'])}")
    print(f"  journal record_answer (approved)       {_ms(journal['answer'])}")
    print(f"  journal whole payment, 3 durable steps {_ms(journal['payment'])}")
    print(
        "  journal step / fdatasync               "
        f"{statistics.median(journal['authorize']) / statistics.median(datasync):7.2f} x"
    )


if __name__ == "__main__":
    main()
