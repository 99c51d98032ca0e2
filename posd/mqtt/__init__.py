"""The reconnecting MQTT link that the orders alerts, fleet monitoring and the console share.

Modules:
- settings: `LinkSettings` and `Will` (what a link connects to and how), the builders
  `orders_link_settings` and `monitoring_link_settings` from posd's Config, `tls_context`,
  topic and filter checks.
- link: `MqttLink`, the long-lived task: reconnects forever with full-jitter backoff,
  resubscribes and calls on_connect after every connect, delivers messages one at a time
  (PUBACK after the handler with manual ack), the bounded outbox (`publish`), `send`, the
  orderly stop (`stop`, on_stop), and its `LinkState`.
- model: the values it hands out: `Subscription`, `InboundMessage`, `Connection`, `LinkState`.
- errors: `LinkError`, `LinkDown`, `MaybeSent`, `SessionFailed`, and `describe` (a failure in
  words safe to log).
- pacing: `Backoff` (capped exponential, full jitter), `Throttle` (rate-limited log lines)
  and `TokenBucket` (how much of a peer's traffic is answered).
- reach: the one module that knows aiomqtt's and paho's insides (manual ack, re-entering a
  Client, the CONNACK session flag, MQTT 5 properties).
"""

from posd.mqtt.errors import LinkDown, LinkError, MaybeSent, SessionFailed, describe
from posd.mqtt.link import Handler, MqttLink, OnConnect, OnStop, StateListener
from posd.mqtt.model import Connection, InboundMessage, LinkState, LinkStatus, Subscription
from posd.mqtt.pacing import Backoff, Throttle, TokenBucket
from posd.mqtt.settings import (
    ORDERS_SESSION_EXPIRY_S,
    LinkSettings,
    ProtocolVersion,
    Will,
    monitoring_link_settings,
    orders_link_settings,
)

__all__ = [
    "ORDERS_SESSION_EXPIRY_S",
    "Backoff",
    "Connection",
    "Handler",
    "InboundMessage",
    "LinkDown",
    "LinkError",
    "LinkSettings",
    "LinkState",
    "LinkStatus",
    "MaybeSent",
    "MqttLink",
    "OnConnect",
    "OnStop",
    "ProtocolVersion",
    "SessionFailed",
    "StateListener",
    "Subscription",
    "Throttle",
    "TokenBucket",
    "Will",
    "describe",
    "monitoring_link_settings",
    "orders_link_settings",
]
