"""배달서구 order alerts: orders from the platform's MQTT topic, journaled, chimed until the
shop acknowledges them (POS or platform) or they are missed, and the alarm of a deaf shop.

Modules:
- `alerts`: `OrderAlerts`, the component (the orders link, the handler, acknowledgements, the
  status sections), `sections_without_alerts` (the sections while none runs), `AudioReport`
  (where the audio device's changes go) and `player_from_config`, the chime's player.
- `alarm`: `Alarm`, the one chime loop for every waiting order (repeat, escalate, missed).
- `hearing`: `Hearing`, whether an order arriving now would be heard (deaf / hearing);
  `can_alert`, the state's `orders.can_alert` (null where orders are disabled).
- `intake`: `OrderIntake`, an order message checked, a bad one reported (rate-limited).
- `views`: the order as the API, the hub's events and the platform's status topic show it.
- `service`: `OrderDesk`, what the local API and monitoring call; its errors (`UnknownOrder`,
  `OrderEnded`, `OrdersUnavailable`); `Tuning`, the timings tests shorten.
"""

from posd.orders.alerts import (
    STATUS_EXPIRY_S,
    AudioReport,
    OrderAlerts,
    player_from_config,
    sections_without_alerts,
)
from posd.orders.service import (
    AUDIO_CHECK_S,
    DEAF_AFTER_S,
    OrderDesk,
    OrderEnded,
    OrderError,
    OrdersLookup,
    OrdersUnavailable,
    Tuning,
    UnknownOrder,
)

__all__ = [
    "AUDIO_CHECK_S",
    "DEAF_AFTER_S",
    "STATUS_EXPIRY_S",
    "AudioReport",
    "OrderAlerts",
    "OrderDesk",
    "OrderEnded",
    "OrderError",
    "OrdersLookup",
    "OrdersUnavailable",
    "Tuning",
    "UnknownOrder",
    "player_from_config",
    "sections_without_alerts",
]
