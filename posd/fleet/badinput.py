"""Counting and logging the broker messages the console refuses, readable under a flood.

Every refused message is counted by reason. The first one of a reason is logged at once; after
that at most one line per reason every LOG_INTERVAL_S, saying how many were refused meanwhile.
The time is the messages' own received-at, so this stays pure.
"""

from __future__ import annotations

import logging
from typing import Final

from posd.fleet.payloads import BAD_REASONS, Bad, BadReason

log = logging.getLogger(__package__)

LOG_INTERVAL_S: Final = 10.0
_TOPIC_SHOWN: Final = 80


def _shown_topic(topic: str) -> str:
    # repr() makes control characters and odd spacing visible and keeps the line one line.
    shown = topic[:_TOPIC_SHOWN] + ("…" if len(topic) > _TOPIC_SHOWN else "")
    return repr(shown)


class BadInput:
    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.counts: dict[BadReason, int] = dict.fromkeys(BAD_REASONS, 0)
        self._next_log: dict[BadReason, float] = {}
        self._unlogged: dict[BadReason, int] = dict.fromkeys(BAD_REASONS, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def refuse(self, bad: Bad, topic: str, at: float) -> None:
        """Count one refused message; the payload itself is never logged (it is untrusted and
        may hold anything, card data included)."""
        reason = bad.reason
        self.counts[reason] += 1
        if at < self._next_log.get(reason, float("-inf")):
            self._unlogged[reason] += 1
            return
        self._next_log[reason] = at + self.interval_s
        also = self._unlogged[reason]
        self._unlogged[reason] = 0
        log.warning(
            "refused a broker message (%s: %s) on %s%s",
            reason,
            bad.detail,
            _shown_topic(topic),
            f"; {also} more refused for {reason} since the last line" if also else "",
        )
