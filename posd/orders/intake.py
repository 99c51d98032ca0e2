"""`OrderIntake`: an order message checked before anything else happens to it.

A message that is no order (protocols.order_payload refuses it) or was placed more than
STALE_DAYS ago is reported, one log line and one `error` event each, and then acknowledged by
the caller so that it never comes back. Under a flood the reports are rate-limited (a burst,
then one every few seconds) and the next report counts what was held back. A report names
the problem and the size, never the payload: it is a stranger's text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from posd.journal import ORDER_KEEP_DAYS
from posd.mqtt import InboundMessage, TokenBucket
from protocols.order_payload import Order, OrderPayloadError, parse_order

log = logging.getLogger(__package__)

STALE_DAYS: Final = ORDER_KEEP_DAYS - 5
"""An order placed longer ago than this is refused: the journal keeps the order ids it has
seen for ORDER_KEEP_DAYS, so anything it accepts is remembered for as long as it could come."""
BURST: Final = 20
REFILL_S: Final = 3.0


@dataclass(frozen=True)
class BadInput:
    """What the `error` event says: `what` (a code) and `detail` (words safe to log)."""

    what: str
    detail: str


class OrderIntake:
    def __init__(
        self,
        topic: str,
        report: Callable[[BadInput], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._topic = topic
        self._report = report
        self._budget = TokenBucket(BURST, REFILL_S, clock)

    def parse(self, message: InboundMessage, now: float) -> Order | None:
        """The order in `message`, or None when it was refused (and reported)."""
        size = len(message.payload)
        try:
            order = parse_order(message.payload)
        except OrderPayloadError as exc:
            self._bad("order_payload", f"an order on {self._topic} does not parse: {exc}", size)
            return None
        age_days = (now - order.placed_at.timestamp()) / 86_400
        if age_days > STALE_DAYS:
            self._bad(
                "stale_order",
                f"order {order.order_id} on {self._topic} was placed {age_days:.0f} days ago "
                f"(over {STALE_DAYS})",
                size,
            )
            return None
        if order.unknown_keys:
            log.debug("order %s has fields posd does not know: %s", order.order_id,
                      ", ".join(order.unknown_keys[:10]))  # fmt: skip
        if not order.total_matches:
            log.info(
                "order %s: total %s won differs from its items' %s won (fees or coupons)",
                order.order_id,
                f"{order.total:,}",
                f"{order.items_total:,}",
            )
        return order

    def _bad(self, what: str, detail: str, size: int) -> None:
        if not self._budget.take():
            return
        held, self._budget.held = self._budget.held, 0
        detail = f"{detail} ({size} bytes; acknowledged, not alerted)"
        if held:
            detail += f"; {held} more bad orders since the last report"
        log.warning("%s", detail)
        self._report(BadInput(what, detail))
