"""Log lines that a flood could repeat without end (a hostile client, a faulty device) are let
through at a bounded rate; the next one let through counts those held back, so the log stays
readable and still says how much happened."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Throttle:
    """At most `burst` lines per `interval_s`; `allow()` says whether this one goes out."""

    def __init__(
        self,
        interval_s: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0 or burst < 1:
            raise ValueError("a throttle needs interval_s > 0 and burst >= 1")
        self._interval_s = interval_s
        self._burst = burst
        self._clock = clock
        self._window_end = -math.inf
        self._sent = 0
        self._held = 0

    def allow(self) -> int | None:
        """None: hold this line back; else how many were held back since the last one sent."""
        now = self._clock()
        if now >= self._window_end:
            self._window_end = now + self._interval_s
            self._sent = 0
        if self._sent >= self._burst:
            self._held += 1
            return None
        self._sent += 1
        held, self._held = self._held, 0
        return held


def held_note(held: int) -> str:
    """The tail of a throttled line: how many like it were held back."""
    return f" ({held} more like this not logged)" if held else ""
