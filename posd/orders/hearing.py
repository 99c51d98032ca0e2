"""`Hearing`: whether an order arriving now would be heard, and the alarm when it would not.

The shop is deaf (mqtt.md: `orders.can_alert` false, with a reason) while the orders link has
been down for more than `deaf_after_s`, while no audio output works (or there is none), or while
the journal cannot store orders. Going deaf is a WARNING and an `order` event with state
`deaf`; recovering, a line and `hearing`. A box that takes no orders (`orders.enabled` false)
is neither: `can_alert` is null there (`can_alert`), and it sends no such events.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from drivers.audio import AudioStatus
from posd.mqtt import LinkState

log = logging.getLogger(__package__)


def can_alert(enabled: bool, deaf: bool) -> bool | None:
    """mqtt.md's `orders.can_alert`, decided here only. False "whenever an order could arrive
    unheard"; with `orders.enabled` false no order can arrive at all, so it is not false but
    null (the link is `disabled`): such a shop is not deaf, and the operations centre's
    console counts only `false` as deaf."""
    return None if not enabled else not deaf


class Hearing:
    def __init__(
        self,
        *,
        enabled: bool,
        deaf_after_s: float,
        tell: Callable[[bool, str | None], None],
    ) -> None:
        """`tell(deaf, reason)` is called on each change between deaf and hearing."""
        self.enabled = enabled
        self._deaf_after_s = deaf_after_s
        self._tell = tell
        self.deaf = False
        self.reason: str | None = None
        self._causes: frozenset[str] = frozenset()

    @property
    def can_alert(self) -> bool | None:
        return can_alert(self.enabled, self.deaf)

    def link_deadline(self, link: LinkState | None, now_monotonic: float) -> float:
        """Seconds until a link that is down now makes the shop deaf (inf: it will not)."""
        if not self.enabled or link is None or link.status != "down":
            return math.inf
        return max(0.0, self._deaf_after_s - link.seconds_in_status(now_monotonic))

    def update(
        self,
        link: LinkState | None,
        audio: AudioStatus,
        journal_error: str | None,
        now_monotonic: float,
    ) -> None:
        if not self.enabled:
            return
        reasons: dict[str, str] = {}
        down_s = link.seconds_in_status(now_monotonic) if link and link.status == "down" else 0.0
        if link is not None and down_s >= self._deaf_after_s:
            why = link.last_error or "it has not connected yet"
            reasons["link"] = f"orders link down for more than {self._deaf_after_s:g} s ({why})"
        if audio.state in ("error", "disconnected", "disabled"):
            reasons["audio"] = f"no working audio output ({audio.detail or audio.state})"
        if journal_error is not None:
            reasons["journal"] = f"orders cannot be stored ({journal_error})"
        reason = "; ".join(reasons.values()) or None
        was_deaf, was_reason, was_causes = self.deaf, self.reason, self._causes
        self.deaf, self.reason, self._causes = bool(reasons), reason, frozenset(reasons)
        if self.deaf and not was_deaf:
            log.warning("orders could arrive unheard, the shop is deaf: %s", reason)
            self._tell(True, reason)
        elif was_deaf and not self.deaf:
            log.warning("orders are heard again (was deaf: %s)", was_reason)
            self._tell(False, None)
        elif self._causes != was_causes:
            # A new cause, or one of two gone; a failure merely worded anew is not news.
            log.warning("the shop is still deaf: %s", reason)
