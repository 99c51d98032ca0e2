"""Everything posd knows about aiomqtt 2.x and paho-mqtt 2.x below aiomqtt's public API.

The rest of posd.mqtt uses aiomqtt's public Client, Message, Topic and exceptions only; this
module alone touches private attributes, paho's callbacks and MQTT 5 properties. What it
relies on (read in aiomqtt 2.5.1 and paho-mqtt 2.2.0; tests/posd/mqtt/test_reach.py names the
attributes, and the crash-before-ack, re-entry and TLS tests fail if the behaviour changes):

- Manual acknowledgement. aiomqtt has none: paho PUBACKs a QoS 1 message in `_handle_publish`
  right after `on_message`, which only puts it in aiomqtt's in-memory queue. paho's
  `manual_ack_set(True)` stops that and `ack(mid, qos)` sends the PUBACK. It is set on the
  aiomqtt client's paho object (`Client._client`) right after the Client is built: a persistent
  session's queued messages arrive just after CONNACK, before any code inside `async with`.
- Re-entering a Client. aiomqtt resets its `_connected` future only after a clean exit (or a
  failed `__aenter__`), not after the connection dropped; the next `__aenter__` then returns
  before CONNACK, and a refused CONNACK surfaces as a SUBACK timeout. `prepare_entry` puts a
  fresh future there, so every `__aenter__` waits for its own CONNACK.
- CONNACK's session-present flag: aiomqtt drops it; a wrapper around paho's on_connect keeps it.
- Clean start: paho's `connect()` sets `_mqttv5_first_connect` again on every call, so aiomqtt's
  default MQTT_CLEAN_START_FIRST_ONLY starts clean on every reconnect, not just the first.
  A persistent session passes clean_start=False and a Session Expiry Interval.
- A socket that closes before CONNACK (a TLS 1.3 alert for a missing client certificate comes
  after the handshake, at the first read) is ignored by aiomqtt, which then waits out its
  timeout; paho logs the reason at ERROR and reports "Unspecified error". A wrapper around
  paho's on_disconnect fails the CONNACK wait at once with `ClosedBeforeConnack`, carrying the
  line paho logged (taken with on_log; paho's own logging is off: it logs every failed attempt).
- aiomqtt registers paho's socket with the loop through `call_soon_threadsafe(loop.add_writer,
  sock.fileno(), ...)`, also from the executor thread that runs paho's connect: when the socket
  closes before that runs (a TLS alert right after the handshake), asyncio logs an EBADF
  traceback on every attempt, and a reused fd number could get aiomqtt's callback. The Client's
  `_loop` is wrapped so that these calls go through only for paho's current socket.
- Under 3.1.1 paho refuses any clean_start but the default, and connect properties.
- A refused CONNACK is `aiomqtt.exceptions.MqttConnectError`, which aiomqtt does not export.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from posd.mqtt.settings import LinkSettings

log = logging.getLogger(__package__)


class ClosedBeforeConnack(aiomqtt.MqttError):
    """The socket closed before the broker's CONNACK. `detail` is paho's last error line (a
    TLS alert after the handshake: a broker that wants a client certificate, under TLS 1.3)."""

    def __init__(self, detail: str | None) -> None:
        super().__init__(detail or "connection closed before CONNACK")
        self.detail = detail


class _SocketGuard:
    """The event loop as aiomqtt's Client sees it: add_reader/add_writer only for the fd of
    paho's open socket; everything else goes to the loop itself."""

    def __init__(self, loop: asyncio.AbstractEventLoop, paho_client: paho.Client) -> None:
        self._guarded_loop = loop
        self._paho = paho_client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._guarded_loop, name)

    def _current(self, fd: int) -> bool:
        sock = self._paho.socket()
        return sock is not None and sock.fileno() == fd

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        if self._current(fd):
            self._guarded_loop.add_reader(fd, callback, *args)

    def add_writer(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        if self._current(fd):
            self._guarded_loop.add_writer(fd, callback, *args)


@dataclass(slots=True)
class Connack:
    """The last CONNACK's session flag, and paho's last error line."""

    session_present: bool = False
    paho_error: str | None = None


@dataclass(eq=False, slots=True)
class Reached:
    """An aiomqtt Client and what posd keeps beside it."""

    client: aiomqtt.Client
    connack: Connack
    manual_ack: bool

    def prepare_entry(self) -> None:
        """Call before every `async with client` after the first."""
        client = self.client
        for name in ("_connected", "_disconnected"):
            future: asyncio.Future[None] = getattr(client, name)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "exception was never retrieved" at GC
        if client._connected.done():
            client._connected = asyncio.get_running_loop().create_future()
        self.connack.session_present, self.connack.paho_error = False, None

    def settle(self) -> None:
        """Call once the client is done with: marks a pending disconnect error as seen."""
        for future in (self.client._connected, self.client._disconnected):
            if future.done() and not future.cancelled():
                future.exception()

    def ack(self, mid: int, qos: int) -> None:
        """PUBACK message `mid` now (QoS 1, manual ack only). On a dead connection the packet is
        dropped with paho's out-queue at the next connect, and the broker delivers again."""
        if self.manual_ack and qos == 1:
            self.client._client.ack(mid, qos)

    async def wait_disconnected(self) -> None:
        """Return once paho has seen this connection end (never cancels aiomqtt's future)."""
        await asyncio.wait({self.client._disconnected})

    def leftovers(self) -> list[aiomqtt.Message]:
        """Take what aiomqtt queued and nobody read before the connection ended. aiomqtt keeps
        its queue across reconnects; `messages` cannot be read once disconnected."""
        queue = self.client._queue
        taken = []
        while not queue.empty():
            taken.append(queue.get_nowait())
        return taken


def build(
    settings: LinkSettings, tls_context: ssl.SSLContext | None, *, pending_calls: int
) -> Reached:
    """A Client for `settings`, in the running loop, manual ack already set when asked."""
    v5 = settings.protocol == "5"
    will = settings.will
    kwargs: dict[str, Any] = {}
    if v5:
        kwargs["clean_start"] = not settings.persistent_session
        if settings.persistent_session:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = settings.session_expiry_s
            kwargs["properties"] = properties
    else:
        kwargs["clean_session"] = not settings.persistent_session
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        logger=log,
        identifier=settings.client_id,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        will=(
            aiomqtt.Will(will.topic, will.payload, will.qos, will.retain)
            if will is not None
            else None
        ),
        timeout=settings.timeout_s,
        keepalive=settings.keepalive_s,
        tls_context=tls_context,
        **kwargs,
    )
    # aiomqtt warns about "pending calls" above this; the link bounds them itself.
    client.pending_calls_threshold = pending_calls
    paho_client = client._client
    client._loop = cast(asyncio.AbstractEventLoop, _SocketGuard(client._loop, paho_client))
    if settings.manual_ack:
        paho_client.manual_ack_set(True)
    connack = Connack()
    loop = asyncio.get_running_loop()
    aiomqtt_on_connect = paho_client.on_connect
    aiomqtt_on_disconnect = paho_client.on_disconnect

    def on_connect(
        mqttc: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        connack.session_present = bool(flags.session_present)
        if aiomqtt_on_connect is not None:
            aiomqtt_on_connect(mqttc, userdata, flags, reason_code, properties)  # type: ignore[call-arg, arg-type]

    def closed_before_connack(connected: asyncio.Future[None]) -> None:
        if not connected.done():
            connected.set_exception(ClosedBeforeConnack(connack.paho_error))

    def on_disconnect(
        mqttc: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if aiomqtt_on_disconnect is not None:
            aiomqtt_on_disconnect(mqttc, userdata, flags, reason_code, properties)  # type: ignore[call-arg, arg-type]
        # aiomqtt ignores a close before CONNACK and waits out its timeout: end the wait now.
        loop.call_soon_threadsafe(closed_before_connack, client._connected)

    def on_log(mqttc: paho.Client, userdata: Any, level: int, text: str) -> None:
        # paho logs each failed attempt at ERROR; the link reports them itself, rate-limited.
        if level == paho.MQTT_LOG_ERR:
            connack.paho_error = text
            log.debug("paho: %s", text)
        elif level == paho.MQTT_LOG_WARNING:
            log.warning("paho: %s", text)

    paho_client.on_connect = on_connect
    paho_client.on_disconnect = on_disconnect
    paho_client.disable_logger()
    paho_client.on_log = on_log
    return Reached(client, connack, settings.manual_ack)


def publish_properties(settings: LinkSettings, expiry_s: int | None) -> Properties | None:
    """MQTT 5 Message Expiry Interval for a publish; None under 3.1.1 or without expiry."""
    if expiry_s is None or settings.protocol != "5":
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = expiry_s
    return properties


def reason_failed(code: object) -> bool:
    """True for a SUBACK entry that refuses the subscription (0x80 and up, MQTT 3.9.3)."""
    if isinstance(code, ReasonCode):
        return code.is_failure
    return isinstance(code, int) and code >= 0x80


def granted_qos(code: object) -> int | None:
    """The QoS a SUBACK entry grants, None when it refuses."""
    if reason_failed(code):
        return None
    if isinstance(code, ReasonCode):
        return int(code.value)
    return int(code) if isinstance(code, int) else None


def refusal_code(exc: BaseException) -> int | None:
    """The CONNACK reason code when `exc` is aiomqtt's refused-CONNACK error (MQTT 5 codes:
    paho maps 3.1.1's return codes onto them), else None."""
    if not isinstance(exc, MqttConnectError):
        return None
    value = getattr(exc.rc, "value", exc.rc)
    return value if isinstance(value, int) else None
