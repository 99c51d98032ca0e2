"""How often the link retries and how often it says so: `Backoff` and `Throttle`; how much
of a peer's traffic is answered: `TokenBucket`.

Both are pure (the caller passes the time and the random source), so tests check them exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter: the wait before the attempt that follows
    `failures` consecutive failures is uniform over [0, min(max_s, initial_s * 2**(failures-1))].
    Spreading each wait over the whole interval keeps a fleet of boxes that lost the same broker
    from coming back in step."""

    initial_s: float
    max_s: float
    uniform: Callable[[float, float], float] = field(default=random.uniform, compare=False)

    def ceiling(self, failures: int) -> float:
        if failures < 1:
            return 0.0
        # The exponent is capped so that 2**n stays finite however long the broker stays away.
        return min(self.max_s, self.initial_s * 2.0 ** min(failures - 1, 64))

    def delay(self, failures: int) -> float:
        return self.uniform(0.0, self.ceiling(failures))


@dataclass(slots=True)
class Throttle:
    """At most one line per `interval_s` for a repeating condition; counts what it held back.

    `allow(now)` answers whether to log now, and how many occurrences were held back since the
    last line that was allowed. `reset()` when the condition ends, so the next occurrence is
    logged at once."""

    interval_s: float
    _last: float | None = None
    _held: int = 0

    def allow(self, now: float) -> tuple[bool, int]:
        if self._last is None or now - self._last >= self.interval_s:
            held, self._held, self._last = self._held, 0, now
            return True, held
        self._held += 1
        return False, 0

    def reset(self) -> None:
        self._last, self._held = None, 0


class TokenBucket:
    """`burst` at once, then one more every `every_s`; counts in `held` what it refused.

    What a peer on the broker can make posd do (answer refused commands, report bad orders)
    is bounded by one of these, so a flood costs a few lines and events, not a log full."""

    def __init__(self, burst: int, every_s: float, clock: Callable[[], float]) -> None:
        self._burst = burst
        self._every_s = every_s
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self.held = 0

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) / self._every_s)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.held += 1
        return False
