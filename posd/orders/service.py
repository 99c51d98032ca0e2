"""What the rest of posd sees of the order alerts: `OrderDesk` (the local API's and
monitoring's interface), its refusals, and `Tuning`, the timings tests and the demo shorten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, Protocol

from drivers.audio import CONSOLES, find_printer_ports
from posd.mqtt import LinkSettings

DEAF_AFTER_S: Final = 60.0
"""mqtt.md: an orders link down for longer than this makes the shop deaf."""
AUDIO_CHECK_S: Final = 30.0
"""How often the audio outputs are looked at (cheaply, without a sound) between chimes."""


class OrderError(Exception):
    """A request about an order that is refused; `code` is the API's snake_case error code."""

    code: ClassVar[str] = "order_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownOrder(OrderError):
    """No order with this id arrived here (HTTP 404)."""

    code = "unknown_order"


class OrderEnded(OrderError):
    """The order was missed: its alert ended without an acknowledgement, the call centre has
    been told, and a late acknowledgement here would change nothing it did (HTTP 409)."""

    code = "wrong_state"


class OrdersUnavailable(OrderError):
    """The order alerts cannot answer now: posd is starting, or the journal failed (HTTP 503)."""

    code = "device_not_ready"


@dataclass(frozen=True)
class Tuning:
    """Timings and devices the config does not set: tests and the demo shorten the timings
    and keep the outputs off the machine's own console and printers."""

    deaf_after_s: float = DEAF_AFTER_S
    audio_check_s: float = AUDIO_CHECK_S
    link: Callable[[LinkSettings], LinkSettings] = field(default=lambda settings: settings)
    """The orders link's settings as the config makes them → as used (shorter backoff)."""
    consoles: Sequence[str] = CONSOLES
    find_printers: Callable[[], list[str]] = find_printer_ports


class OrderDesk(Protocol):
    """The order alerts as the local API and monitoring use them."""

    async def orders(self) -> dict[str, object]:
        """`GET /v1/orders`: `{"alerting", "missed_today", "link", "can_alert", "reason",
        "alert": {...}, "orders": [order, ...]}`; the orders still alerting (oldest first),
        then today's others (newest first). Raises OrdersUnavailable."""
        ...

    async def acknowledge(self, order_id: str) -> dict[str, object]:
        """Acknowledge from the POS: the chime stops. The order; an order acknowledged already
        is answered as it is. Raises UnknownOrder, OrderEnded (missed), OrdersUnavailable."""
        ...

    def status_sections(self) -> tuple[dict[str, object], dict[str, object]]:
        """The state object's `orders` and `devices.audio` (mqtt.md), every key present."""
        ...

    async def chime_test(self) -> dict[str, object]:
        """Plays the chime once (monitoring's chime_test), after any chime playing now:
        `{"output": name, "failures": [...]}`. Raises drivers.audio.AudioError when no
        output played it."""
        ...


OrdersLookup = Callable[[], OrderDesk | None]
"""The order alerts running now (they are rebuilt on a reload), or None when there are none."""
