"""What one MQTT link connects to and how: `LinkSettings`, and the two links posd's config makes.

`orders_link_settings` and `monitoring_link_settings` build them from `posd.config.Config`
(the orders link shares the [mqtt] broker's TLS files and credentials). The password is an
argument: the caller reads it (`posd.config.read_mqtt_password`) and registers it with the log
redaction; nothing here opens a file. A console or a tool builds `LinkSettings` directly.

The protocol version comes from the config (`mqtt.protocol`, and `orders.protocol` defaulting to
it); a builder's `protocol` argument overrides it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from posd.config import MqttProtocol

if TYPE_CHECKING:
    from posd.config import Config

ProtocolVersion = MqttProtocol
PROTOCOL_VERSIONS: tuple[ProtocolVersion, ...] = get_args(MqttProtocol)

ORDERS_SESSION_EXPIRY_S = 7 * 24 * 3600
"""The orders session outlives a box that is off for a long holiday weekend (mqtt.md: >= 24 h);
what to do with an order that comes days late is the orders module's call (placed_at)."""

MAX_PAYLOAD_BYTES = 1 << 20
"""Outgoing payloads above this are refused at publish: a status object is a few KB."""

_MAX_UINT16 = 0xFFFF
_MAX_UINT32 = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes when the link dies without a clean DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True

    def __post_init__(self) -> None:
        check_topic(self.topic, "will topic")
        if self.qos not in (0, 1):
            raise ValueError("will qos must be 0 or 1")
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"will payload is larger than {MAX_PAYLOAD_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """One link's broker, identity, session and timings. Tests shorten the backoff."""

    name: str
    """Names the link in log lines and its state ("orders", "monitoring", "fleet")."""
    host: str
    port: int
    client_id: str
    protocol: ProtocolVersion = "3.1.1"
    tls: bool = False
    ca_file: Path | None = None
    """PEM CA bundle the broker's certificate must chain to; None: the system's CAs."""
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    persistent_session: bool = False
    """3.1.1: clean session off. 5: clean start off and `session_expiry_s`."""
    session_expiry_s: int = 0
    """MQTT 5 Session Expiry Interval, sent only with a persistent session (then > 0)."""
    keepalive_s: int = 60
    will: Will | None = None
    manual_ack: bool = False
    """PUBACK a QoS 1 message only once its handler returned (see posd.mqtt.link)."""
    outbox_size: int = 1000
    """Messages `publish` keeps while the broker is away; the oldest goes first when full."""
    max_in_flight: int = 10
    """QoS 1 publishes from the outbox awaiting their PUBACK at once."""
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    healthy_after_s: float = 60.0
    """A connection that lasted this long starts the backoff over; a shorter one (a broker
    that accepts and drops, another client taking the same client id) keeps it growing."""
    timeout_s: float = 10.0
    """Waits for CONNACK, SUBACK and a `send`'s PUBACK."""
    stop_timeout_s: float = 2.0
    """An orderly stop's budget: outbox drain, the on_stop hook, DISCONNECT."""
    log_interval_s: float = 60.0
    """Repeated connection failures are logged at most once per this, with a count."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("link name must not be empty")
        if not self.host:
            raise ValueError(f"mqtt {self.name}: host must not be empty")
        if not 0 < self.port <= _MAX_UINT16:
            raise ValueError(f"mqtt {self.name}: port must be 1-65535")
        if not self.client_id or len(self.client_id.encode()) > _MAX_UINT16:
            raise ValueError(f"mqtt {self.name}: client id must be 1-65535 bytes")
        if self.protocol not in PROTOCOL_VERSIONS:
            raise ValueError(f"mqtt {self.name}: protocol must be one of {PROTOCOL_VERSIONS}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(f"mqtt {self.name}: cert_file and key_file go together")
        if not self.tls and (self.ca_file or self.cert_file):
            raise ValueError(f"mqtt {self.name}: TLS files given with tls off")
        if self.password is not None and self.username is None:
            raise ValueError(f"mqtt {self.name}: a password needs a username")
        if self.persistent_session and self.protocol == "5":
            if not 0 < self.session_expiry_s <= _MAX_UINT32:
                raise ValueError(
                    f"mqtt {self.name}: a persistent MQTT 5 session needs session_expiry_s > 0"
                )
        elif self.session_expiry_s:
            raise ValueError(
                f"mqtt {self.name}: session_expiry_s is for a persistent MQTT 5 session only"
            )
        if not 0 <= self.keepalive_s <= _MAX_UINT16:
            raise ValueError(f"mqtt {self.name}: keepalive_s must be 0-65535")
        if self.outbox_size < 1 or self.max_in_flight < 1:
            raise ValueError(f"mqtt {self.name}: outbox_size and max_in_flight must be >= 1")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError(f"mqtt {self.name}: backoff needs 0 < initial <= max")
        for key in ("healthy_after_s", "timeout_s", "stop_timeout_s", "log_interval_s"):
            if not getattr(self, key) > 0:
                raise ValueError(f"mqtt {self.name}: {key} must be positive")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def tls_context(settings: LinkSettings) -> ssl.SSLContext:
    """TLS 1.2+, the broker checked against ca_file (or the system's CAs) and its host name,
    with the client certificate when one is set. Reads the files: run it off the event loop."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_file) if settings.ca_file else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert_file is not None:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    return context


def check_topic(topic: str, what: str = "topic") -> None:
    """ValueError unless `topic` is a topic one may publish to (no wildcards, MQTT 4.7.3)."""
    if not topic or len(topic.encode()) > _MAX_UINT16:
        raise ValueError(f"{what} must be 1-65535 bytes")
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError(f"{what} {topic!r} must not hold a wildcard or NUL")


def check_filter(topic_filter: str) -> None:
    """ValueError unless `topic_filter` is a valid subscription filter (MQTT 4.7.1)."""
    if not topic_filter or len(topic_filter.encode()) > _MAX_UINT16 or "\x00" in topic_filter:
        raise ValueError(f"topic filter {topic_filter!r} must be 1-65535 bytes without NUL")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic filter {topic_filter!r}: '#' only as the whole last level")
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {topic_filter!r}: '+' only as a whole level")


def _config_link(
    config: Config,
    password: str | None,
    *,
    name: str,
    host: str,
    port: int,
    client_id: str,
    protocol: ProtocolVersion,
    persistent_session: bool = False,
    keepalive_s: int = 60,
    will: Will | None = None,
    manual_ack: bool = False,
) -> LinkSettings:
    """A link to a broker with the [mqtt] section's TLS files and credentials."""
    mqtt = config.mqtt
    return LinkSettings(
        name=name,
        host=host,
        port=port,
        client_id=client_id,
        protocol=protocol,
        tls=mqtt.tls,
        ca_file=mqtt.ca_file,
        cert_file=mqtt.cert_file,
        key_file=mqtt.key_file,
        username=mqtt.username,
        password=password,
        persistent_session=persistent_session,
        session_expiry_s=ORDERS_SESSION_EXPIRY_S if persistent_session and protocol == "5" else 0,
        keepalive_s=keepalive_s,
        will=will,
        manual_ack=manual_ack,
    )


def orders_link_settings(
    config: Config, password: str | None, *, protocol: ProtocolVersion | None = None
) -> LinkSettings:
    """The 배달서구 orders link (mqtt.md): fixed client id, persistent session, manual ack;
    MQTT `protocol`, or else the config's `orders_protocol`."""
    host, port = config.orders_broker
    return _config_link(
        config,
        password,
        name="orders",
        host=host,
        port=port,
        client_id=f"posd-{config.terminal.id}-orders",
        protocol=protocol or config.orders_protocol,
        persistent_session=True,
        # A half-open connection is noticed within two keepalives: well inside the 60 s after
        # which a shop without its orders link counts as deaf.
        keepalive_s=30,
        manual_ack=True,
    )


def monitoring_link_settings(
    config: Config, password: str | None, *, protocol: ProtocolVersion | None = None
) -> LinkSettings:
    """The monitoring link (mqtt.md): client id `posd-{terminal_id}`, clean session, and the
    will `offline` retained at QoS 1 on `…/availability`; MQTT `protocol`, or else
    `mqtt.protocol`."""
    return _config_link(
        config,
        password,
        name="monitoring",
        host=config.mqtt.host,
        port=config.mqtt.port,
        client_id=f"posd-{config.terminal.id}",
        protocol=protocol or config.mqtt.protocol,
        will=Will(f"{config.monitoring_topic}/availability", b"offline", qos=1, retain=True),
    )
