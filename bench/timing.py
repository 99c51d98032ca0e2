"""Throughput timing shared by the benchmarks: one timing loop, measured on one core."""

from __future__ import annotations

import time
from collections.abc import Callable

SECONDS = 1.0
# Calls are timed in batches so the clock read does not weigh on a fast call's figure.
_BATCH = 100


def items_per_second(fn: Callable[[], int], seconds: float = SECONDS) -> float:
    """Items per second of ``fn`` (which returns how many it handled), over ``seconds``."""
    items = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        items += fn()
    return items / elapsed


def calls_per_second(fn: Callable[[], object], seconds: float = SECONDS) -> float:
    """Calls per second of ``fn``, timed over batches until ``seconds`` have passed."""

    def batch() -> int:
        for _ in range(_BATCH):
            fn()
        return _BATCH

    return items_per_second(batch, seconds)
