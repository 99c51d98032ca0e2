"""Property: whatever the order of payments, answers, reversals, day changes and counter
positions, the journal never hands out a STAN that is pending or already used that UTC day."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from posd.journal import CardSecrets
from posd.journal.store import JournalCore

NOW = 1_795_600_000.0
DAY = 86_400.0
# One key for every example, so the redactor learns one secret rather than one per example;
# random, not bytes(range(32)), which the fuzz targets use as their own key.
KEY = os.urandom(32)
OPS = st.lists(
    st.tuples(
        st.sampled_from(["begin", "answer", "reverse", "complete", "alloc", "rewind", "day"]),
        st.integers(min_value=0, max_value=1000),
    ),
    max_size=40,
)
# tmpfs where there is one: fsync there is free, and this test is about logic, not disks.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


@settings(max_examples=100)
@given(ops=OPS, start=st.sampled_from([0, 999_990, 999_998]))
@example(ops=[("begin", 0), ("rewind", 0), ("begin", 0)], start=0)
@example(ops=[("begin", 0), ("reverse", 0), ("day", 0), ("rewind", 0), ("alloc", 0)], start=0)
@example(ops=[("begin", 0)] * 3 + [("day", 0), ("rewind", 0), ("begin", 0)], start=999_998)
def test_no_pending_or_same_day_stan_is_handed_out(ops: list[tuple[str, int]], start: int) -> None:
    state_dir = Path(tempfile.mkdtemp(dir=SCRATCH))
    key_file = state_dir / "journal.key"
    key_file.touch(mode=0o600)  # never readable by others, not even before the write
    key_file.write_bytes(KEY)
    core = JournalCore(state_dir)
    try:
        run(core, state_dir, ops, start)
    finally:
        core.close()
        shutil.rmtree(state_dir)


def set_last_stan(state_dir: Path, value: int) -> None:
    with sqlite3.connect(state_dir / "journal.db", timeout=5) as db:
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('last_stan', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(value),),
        )


def run(core: JournalCore, state_dir: Path, ops: list[tuple[str, int]], start: int) -> None:
    set_last_stan(state_dir, start)
    now = NOW
    authorizing: dict[str, int] = {}  # payment id -> its STAN
    queued: dict[int, tuple[int, int]] = {}  # SAF entry -> (payment STAN, 0400 STAN)
    used_today: set[int] = set()
    seen: list[int] = []

    def pending() -> set[int]:
        return set(authorizing.values()) | {s for pair in queued.values() for s in pair}

    def check(stan: int) -> None:
        assert 1 <= stan <= 999_999
        assert stan not in pending(), f"STAN {stan} handed out while pending"
        assert stan not in used_today, f"STAN {stan} handed out twice in one day"
        used_today.add(stan)
        seen.append(stan)

    for serial, (op, arg) in enumerate(ops):
        if op == "begin":
            record, _ = core.create_payment(
                amount=100,
                charged=100,
                method="any",
                idempotency_key=f"k{serial}",
                now=now,
            )
            record = core.begin_authorization(
                record.payment_id, CardSecrets("chip", "9410123456789012"), now
            )
            assert record.stan is not None
            check(record.stan)
            authorizing[record.payment_id] = record.stan
        elif op == "alloc":
            check(core.allocate_stan(now))
        elif op in ("answer", "reverse") and authorizing:
            pid = sorted(authorizing)[arg % len(authorizing)]
            stan = authorizing.pop(pid)
            if op == "answer":
                core.record_answer(pid, response_code="00", now=now)
            else:
                reversal_stan = core.allocate_stan(now)
                check(reversal_stan)
                _, entry = core.start_reversal(
                    pid,
                    fields={"11": f"{reversal_stan:06d}"},
                    stan=reversal_stan,
                    now=now,
                    decline_reason="ledger_timeout",
                )
                queued[entry.entry_id] = (stan, reversal_stan)
        elif op == "complete" and queued:
            entry_id = sorted(queued)[arg % len(queued)]
            core.saf.complete(entry_id, response_code="00", now=now)
            del queued[entry_id]
        elif op == "rewind" and seen:
            # Put the counter just before an earlier STAN, as a wrap eventually would.
            set_last_stan(state_dir, seen[arg % len(seen)] - 1)
        elif op == "day":
            now += DAY
            used_today.clear()
