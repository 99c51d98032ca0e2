"""The fleet console's model at 10,000 boxes: messages per second, memory per box, API reads,
and what a call-list write costs (SQLite, synchronous=FULL, on its worker thread) beside how
long the event loop is kept waiting meanwhile.

The messages are mqtt.md's, built before timing; one core, no broker (the broker's side is the
end-to-end benchmark of the MQTT wiring).
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import json
import random
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from posd.fleet.calls import CallStore
from posd.fleet.model import MAX_EVENTS, FleetModel, MissedOrder
from posd.fleet.payloads import compact

BOXES = 10_000
GOAL_BOXES_SHOWN_S = 10.0


def _ts(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(n: int, ts: float, connects: int = 1) -> bytes:
    tid = f"S{n:07d}"
    return compact(
        {
            "terminal_id": tid,
            "merchant_id": f"M{n:014d}",
            "version": "0.1.0",
            "ts": _ts(ts),
            "boot_id": f"{n:032x}",
            "connects": connects,
            "uptime_s": 3600,
            "config_sha256": "ab" * 32,
            "ledger": {"link": "up", "last_rtt_ms": 12.5, "last_error": None, "clock_skew_s": 0.1},
            "devices": {
                "card_reader": {"state": "ready", "port": "/dev/posd-reader", "firmware": "2.1.7"},
                "qr_scanner": {"state": "ready", "kind": "usb-hid"},
                "audio": {"state": "ready", "output": "alsa"},
            },
            "saf": {"pending": 0, "pending_amount": 0, "oldest_age_s": None, "alarm": False},
            "orders": {
                "alerting": 0,
                "missed_today": 0,
                "link": "up",
                "can_alert": True,
                "reason": None,
            },
            "payments_today": {"approved": 41, "declined": 2, "amount": 512_300},
        }
    )


def _payment(rng: random.Random, ts: float) -> bytes:
    """A payment event as posd sends it, with random ids and values (no two alike)."""
    method = rng.choice(("card", "card", "qr"))
    amount = rng.randrange(1_000, 80_000, 100)
    approved = rng.random() < 0.95
    event: dict[str, object] = {
        "id": f"{rng.getrandbits(128):032x}",
        "ts": _ts(ts),
        "kind": "payment",
        "payment_id": f"{rng.getrandbits(96):024x}",
        "state": "approved" if approved else "declined",
        "amount": amount,
        "charged": amount - amount * rng.choice((0, 0, 3, 5, 7)) // 100,
        "method": method,
        "entry_mode": rng.choice(("chip", "contactless", "magstripe"))
        if method == "card"
        else "qr",
        "response_code": "00" if approved else "51",
        "decline_reason": None if approved else "insufficient_funds",
        "offline": rng.random() < 0.02,
    }
    event["card_last4" if method == "card" else "account_last4"] = f"{rng.randrange(10_000):04d}"
    return compact(event)


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} msg/s ({seconds * 1e6 / count:5.1f} µs each)"


def _memory(boxes: int, events_per_box: int, now: float) -> tuple[float, float]:
    """Bytes per box traced by tracemalloc: with its state, and its events on top."""
    rng = random.Random(7)
    states = [(f"posd/S{n:07d}/state", _state(n, now)) for n in range(boxes)]
    events = [
        (f"posd/S{n:07d}/event/payment", _payment(rng, now))
        for _ in range(events_per_box)
        for n in range(boxes)
    ]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model = FleetModel()
    for topic, payload in states:
        model.ingest(topic.replace("/state", "/availability"), b"online", True, now)
        model.ingest(topic, payload, True, now)
    gc.collect()
    with_states = tracemalloc.get_traced_memory()[0] - base
    for topic, payload in events:
        model.ingest(topic, payload, False, now)
    gc.collect()
    with_events = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert all(len(box.recent_events()) == events_per_box for box in model.boxes.values())
    return with_states / boxes, (with_events - with_states) / boxes


def model_figures() -> None:
    now = time.time()
    rng = random.Random(1)
    snapshot = []
    for n in range(BOXES):
        snapshot.append((f"posd/S{n:07d}/availability", b"online"))
        snapshot.append((f"posd/S{n:07d}/state", _state(n, now - 30)))
    live = [(f"posd/S{n:07d}/state", _state(n, now + 60)) for n in range(BOXES)]
    events = [(f"posd/S{n:07d}/event/payment", _payment(rng, now)) for n in range(BOXES)]
    garbage = [(f"posd/S{n:07d}/state", b"{not json") for n in range(BOXES)]

    def timed(messages: list[tuple[str, bytes]], retain: bool, at: float) -> float:
        started = time.perf_counter()
        for topic, payload in messages:
            model.ingest(topic, payload, retain, at)
        return time.perf_counter() - started

    model = FleetModel()
    snapshot_s = timed(snapshot, True, now)
    live_s = timed(live, False, now + 60)
    events_s = timed(events, False, now + 61)
    dup_s = timed(events, False, now + 62)  # the same ids again: QoS 1 duplicates
    bad_s = timed(garbage, False, now + 63)
    assert model.duplicates == BOXES and model.bad.counts["not_json"] == BOXES
    print(f"snapshot (retained availability + state): {_rate(len(snapshot), snapshot_s)}")
    print(f"  {BOXES:,} boxes in the model from the snapshot in {snapshot_s:.2f} s "
          f"(goal for the whole console, broker to page: {GOAL_BOXES_SHOWN_S:g} s)")  # fmt: skip
    print(f"live state:                               {_rate(len(live), live_s)}")
    print(f"payment events (new ids):                 {_rate(len(events), events_s)}")
    print(f"payment events (duplicate ids, dropped):  {_rate(len(events), dup_s)}")
    print(f"malformed (counted, logged rate-limited): {_rate(len(garbage), bad_s)}")

    started = time.perf_counter()
    body = json.dumps([box.row() for box in model.select()]).encode()
    rows_s = time.perf_counter() - started
    started = time.perf_counter()
    found = list(model.select(q="s00099"))
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    offline = list(model.select(status="offline"))
    index_s = time.perf_counter() - started
    started = time.perf_counter()
    model.tick(now + 10_000)
    tick_s = time.perf_counter() - started
    mib = len(body) / 2**20
    print(f"GET /api/boxes of {BOXES:,} rows: {rows_s * 1000:.0f} ms ({mib:.1f} MiB); "
          f"q= search {search_s * 1000:.1f} ms ({len(found)} found); status=offline "
          f"{index_s * 1000:.2f} ms ({len(offline)}, from the index)")  # fmt: skip
    print(f"tick turning {BOXES:,} boxes stale at once: {tick_s * 1000:.0f} ms")

    per_box, _ = _memory(BOXES, 0, now)
    _, per_box_events = _memory(1_000, MAX_EVENTS, now)
    full_mib = (per_box + per_box_events) * BOXES / 2**20
    print(f"memory: {per_box:,.0f} bytes per box with its state ({BOXES:,} boxes: "
          f"{per_box * BOXES / 2**20:.0f} MiB); its last {MAX_EVENTS} payment events add "
          f"{per_box_events:,.0f} bytes (deflated; measured on 1,000 boxes), so {BOXES:,} "
          f"boxes with full event lists: {full_mib:.0f} MiB")  # fmt: skip


async def call_figures(directory: Path, rounds: int = 50) -> None:
    store = await CallStore.open(directory / "fleet.db")
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    writing = True

    async def watch_loop() -> None:
        # How late a 1 ms sleep wakes while writes go on: the loop's own waiting.
        while writing:
            started = loop.time()
            await asyncio.sleep(0.001)
            lags.append(loop.time() - started - 0.001)

    watcher = asyncio.create_task(watch_loop())
    samples = []
    try:
        for n in range(rounds):
            started = time.perf_counter()
            await store.add_missed(
                MissedOrder(f"S{n:07d}", None, f"O{n}", time.time()), time.time()
            )
            samples.append(time.perf_counter() - started)
    finally:
        writing = False
        await watcher
        await store.close()
    samples.sort()
    lags.sort()
    median, p90 = statistics.median(samples), samples[int(rounds * 0.9)]
    print(f"call-list write (INSERT, synchronous=FULL, worker thread): median "
          f"{median * 1000:.2f} ms, p90 {p90 * 1000:.2f} ms; "
          f"event-loop lag meanwhile: median {statistics.median(lags) * 1000:.2f} ms, "
          f"max {lags[-1] * 1000:.2f} ms")  # fmt: skip


def main() -> None:
    model_figures()
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(call_figures(Path(directory)))


if __name__ == "__main__":
    main()
