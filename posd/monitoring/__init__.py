"""Fleet monitoring over MQTT (mqtt.md): the state object, events, availability and signed
commands from the operations centre, on the monitoring link of posd.mqtt.

Modules:
- `state`: `StateBuilder`, the state object of mqtt.md built in one place (the MQTT state,
  `GET /v1/status`, `posd status`), from the `PaymentsReport` and `OrdersReport` providers;
  `same_state`, `STATE_EXPIRY_S`, `STATE_INTERVAL_S`; `connects`, the link's connection
  count kept across reloads.
- `events`: `mqtt_event`, the one mapping of posd's hub events to mqtt.md's events.
- `sources`: where events arise: `DeviceReporter` (every device's hook: card reader, QR
  scanner, the order alerts' audio), `LedgerReporter`, `ComponentWatch` (crashes),
  `config_event`, `SafThresholds`.
- `commands`: `CommandDesk`, verifying and answering `…/request/{command}`;
  `CommandHandlers`, what each command does; `CommandFailed`.
- `diagnostics`: `Diagnostics`, the `diagnostics` answer; `RecentProblems`, the last
  warnings and errors logged.
- `discovery`: the optional Home Assistant device-discovery config.
- `monitor`: `Monitoring`, the component: availability, state, events, commands.
"""

from posd.monitoring.commands import COMMAND_TIMEOUT_S, CommandDesk, CommandFailed, CommandHandlers
from posd.monitoring.diagnostics import Diagnostics, RecentProblems
from posd.monitoring.discovery import discovery_payload, discovery_topic
from posd.monitoring.events import KINDS, mqtt_event
from posd.monitoring.monitor import Monitoring, encode
from posd.monitoring.sources import (
    ComponentWatch,
    DeviceReporter,
    LedgerReporter,
    SafThresholds,
    config_event,
    saf_level,
)
from posd.monitoring.state import (
    STATE_EXPIRY_S,
    STATE_INTERVAL_S,
    Connects,
    OrdersReport,
    PaymentsReport,
    StateBuilder,
    connects,
    same_state,
)

__all__ = [
    "COMMAND_TIMEOUT_S",
    "KINDS",
    "STATE_EXPIRY_S",
    "STATE_INTERVAL_S",
    "CommandDesk",
    "CommandFailed",
    "CommandHandlers",
    "ComponentWatch",
    "Connects",
    "DeviceReporter",
    "Diagnostics",
    "LedgerReporter",
    "Monitoring",
    "OrdersReport",
    "PaymentsReport",
    "RecentProblems",
    "SafThresholds",
    "StateBuilder",
    "config_event",
    "connects",
    "discovery_payload",
    "discovery_topic",
    "encode",
    "mqtt_event",
    "saf_level",
    "same_state",
]
