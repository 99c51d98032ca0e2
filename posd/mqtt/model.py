"""The values the link hands out and takes: messages, subscriptions, the connect notice, state."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from aiomqtt import Topic

from posd.mqtt.settings import check_filter

LinkStatus = Literal["up", "down", "disabled"]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A topic filter the link subscribes to after every connect."""

    topic_filter: str
    qos: int = 1

    def __post_init__(self) -> None:
        check_filter(self.topic_filter)
        if self.qos not in (0, 1):
            raise ValueError("subscription qos must be 0 or 1")


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message from the broker, as the handler gets it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    def matches(self, topic_filter: str) -> bool:
        """Whether this message's topic matches `topic_filter` (`+` and `#` wildcards)."""
        return Topic(self.topic).matches(topic_filter)


@dataclass(frozen=True, slots=True)
class Connection:
    """What the on_connect hook learns about the connection just made."""

    connects: int
    """This link's successful connects since it was built, this one included."""
    session_present: bool
    """The broker kept a session for this client id (always False for a clean session)."""
    dropped: int
    """Messages the outbox dropped (oldest first, full) since the previous connect."""


@dataclass(frozen=True, slots=True)
class LinkState:
    """A snapshot of one link, for the status object and for logs."""

    name: str
    status: LinkStatus
    since: float
    """Wall-clock time (time.time()) of the last change of `status`."""
    connects: int
    last_error: str | None
    """Why the link last failed or went down, in words safe to log; None before any failure."""
    session_present: bool | None
    """The last CONNACK's flag; None before the first connect."""
    queued: int
    """Messages in the outbox waiting for the broker."""
    dropped: int
    """Messages the outbox dropped since the link was built."""
    unconfirmed: int
    """QoS 1 publishes handed to paho whose PUBACK never came (the connection dropped or the
    wait timed out). Each was maybe sent: paho sends it again on the next connect of the same
    client, the link never does."""
    since_monotonic: float = field(default=0.0, repr=False, compare=False)

    @classmethod
    def disabled(cls, name: str, now: float, now_monotonic: float = 0.0) -> LinkState:
        """The state a link that is switched off in the config reports."""
        return cls(name, "disabled", now, 0, None, None, 0, 0, 0, now_monotonic)

    def seconds_in_status(self, now_monotonic: float) -> float:
        """How long `status` has held, given time.monotonic() now."""
        return max(0.0, now_monotonic - self.since_monotonic)

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "since": dt.datetime.fromtimestamp(self.since, dt.UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "connects": self.connects,
            "last_error": self.last_error,
            "session_present": self.session_present,
            "queued": self.queued,
            "dropped": self.dropped,
            "unconfirmed": self.unconfirmed,
        }


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message waiting in the outbox."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    expiry_s: int | None
