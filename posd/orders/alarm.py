"""`Alarm`: the chime for every order still alerting, one at a time.

One loop plays the chime at once when an order arrives, then every `repeat_s` while any order
waits; the escalated chime once the oldest waiting order has alerted `escalate_after_s`; and
ends each order that reaches `missed_after_s` (the caller records it missed). Several orders
waiting make one alert: one chime per round, whose log line says how many. An order that
arrives while a chime plays is chimed for right after it. The last acknowledgement stops a
chime mid-way (the player's process is killed).

Timelines are on the monotonic clock, anchored at each order's arrival at posd (its journal
`received_at`), so that an order still alerting when posd stopped keeps its age, and escalates
or is missed on time, after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from drivers.audio import AudioDisabled, AudioError, Playback, Player
from posd.mqtt import Throttle
from posd.orders.views import rfc3339

log = logging.getLogger(__package__)

MISSED_RETRY_S: Final = 5.0
"""An order whose missed state the journal could not take is tried again after this."""

OnMissed = Callable[[str], Awaitable[bool]]
"""Records the order missed; False when that failed and should be tried again."""
OnPlayed = Callable[[Playback | None, AudioError | None], None]


@dataclass
class _Alert:
    order_id: str
    since: float
    """Monotonic time the order started alerting."""
    retry_at: float | None = None


class Alarm:
    def __init__(
        self,
        player: Player,
        *,
        repeat_s: float,
        escalate_after_s: float,
        missed_after_s: float,
        on_missed: OnMissed,
        on_played: OnPlayed,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._player = player
        self._repeat_s = repeat_s
        self._escalate_after_s = escalate_after_s
        self._missed_after_s = missed_after_s
        self._on_missed = on_missed
        self._on_played = on_played
        self._clock = clock
        self._wall = wall
        self._pending: dict[str, _Alert] = {}
        self._wake = asyncio.Event()
        self._due = math.inf
        self._playing: asyncio.Task[Playback] | None = None
        self._arrived: tuple[str, float] | None = None
        self._failures = Throttle(60.0)
        self.chimes = 0
        """Chimes that started to sound (the output said so), since this alarm was made."""
        self.failed = 0
        self.last_chime_at: float | None = None
        self.last_loud = False
        self.last_output: str | None = None

    # ---- what the orders component tells it ---------------------------------------------

    def add(self, order_id: str, received_at_ms: int, *, arrived: float | None = None) -> None:
        """An order to alert for, at once; `received_at_ms` places it on its timeline.
        `arrived`: when (monotonic) its message reached posd, for the chime's log line."""
        now = self._clock()
        age = max(0.0, self._wall() - received_at_ms / 1000)
        self._pending[order_id] = _Alert(order_id, now - age)
        self._due = now
        if arrived is not None:
            self._arrived = (order_id, arrived)
        self._wake.set()

    def remove(self, order_id: str) -> bool:
        """The order was acknowledged: no more chimes for it (none at all if it was the last,
        the one playing included). False when it was not alerting here."""
        gone = self._pending.pop(order_id, None) is not None
        if not self._pending and self._playing is not None:
            self._playing.cancel()
        self._wake.set()
        return gone

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def summary(self) -> dict[str, object]:
        """What the alert is doing, for `GET /v1/orders`."""
        last = self.last_chime_at
        return {
            "waiting": len(self._pending),
            "chimes": self.chimes,
            "failed": self.failed,
            "last_chime_at": rfc3339(round(last * 1000)) if last is not None else None,
            "last_loud": self.last_loud,
            "output": self.last_output,
        }

    # ---- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self._miss_due()
            now = self._clock()
            if not self._pending:
                self._due = math.inf
                await self._sleep(math.inf)
            elif now >= self._due:
                await self._chime(now)
            else:
                await self._sleep(min(self._due, self._next_missed()) - now)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(None if math.isinf(seconds) else max(0.0, seconds)):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _deadline(self, alert: _Alert) -> float:
        return alert.retry_at if alert.retry_at is not None else alert.since + self._missed_after_s

    def _next_missed(self) -> float:
        return min((self._deadline(a) for a in self._pending.values()), default=math.inf)

    async def _miss_due(self) -> None:
        for alert in list(self._pending.values()):
            if self._clock() < self._deadline(alert) or alert.order_id not in self._pending:
                continue
            if await self._on_missed(alert.order_id):
                self._pending.pop(alert.order_id, None)
            else:
                alert.retry_at = self._clock() + MISSED_RETRY_S

    async def _chime(self, now: float) -> None:
        loud = any(now - a.since >= self._escalate_after_s for a in self._pending.values())
        self._due = now + self._repeat_s
        waiting = len(self._pending)
        oldest = min(self._pending.values(), key=lambda a: a.since)
        arrived, self._arrived = self._arrived, None
        started: list[float] = []

        def on_started() -> None:
            started.append(self._clock())
            self.chimes += 1
            self.last_chime_at = self._wall()
            self.last_loud = loud

        task = asyncio.create_task(self._player.play(loud, on_started=on_started))
        self._playing = task
        try:
            await asyncio.wait({task})
        finally:
            self._playing = None
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            log.info("order alert: the chime stopped, no order is waiting any more")
            return
        error = task.exception()
        if error is not None:
            self._failed(error, waiting)
            return
        played = task.result()
        self.last_output = played.output
        late = ""
        if arrived is not None and started:
            late = f", started {(started[0] - arrived[1]) * 1000:.0f} ms after {arrived[0]} arrived"
        log.info(
            "order alert: chime %d%s on %s for %d order%s waiting (oldest %s, alerting %.0f s)%s",
            self.chimes,
            " (loud)" if loud else "",
            played.output,
            waiting,
            "" if waiting == 1 else "s",
            oldest.order_id,
            now - oldest.since,
            late,
        )
        self._on_played(played, None)

    def _failed(self, error: BaseException, waiting: int) -> None:
        self.failed += 1
        if not isinstance(error, AudioError):
            # A bug must not stop the alert: the next round tries again.
            log.error("order alert: the chime failed unexpectedly", exc_info=error)
            error = AudioError(f"internal error ({type(error).__name__})")
        allowed, held = self._failures.allow(self._clock())
        if allowed and not isinstance(error, AudioDisabled):
            log.error(
                "order alert: %d order%s waiting and no chime could play: %s%s",
                waiting,
                "" if waiting == 1 else "s",
                error,
                f" ({held} more failed chimes since the last such line)" if held else "",
            )
        assert isinstance(error, AudioError)
        self._on_played(None, error)
