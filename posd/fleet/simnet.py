"""The simulated boxes' MQTT connections: paho-mqtt clients driven by one asyncio loop.

Why not posd.mqtt's MqttLink, as posd itself uses: a link is built to be one long-lived
session of one daemon (an outbox, in-flight accounting, a state with listeners, four tasks per
connection, aiomqtt's one-second misc task per client); ten thousand of them in one process
cost tens of kilobytes and several tasks each, and ten thousand wake-ups a second. A simulated
box needs less: connect with its will, subscribe to its requests, publish, and die in the ways
a box dies. Here each connection is one paho Client (about 8 KB) whose socket the loop watches
(`add_reader`/`add_writer`, paho's external-loop callbacks), with one ticker for every
client's keepalive. This is the only module of posd.fleet that touches paho.

How a connection ends, as the tests and the benchmark need it:
- `drop()`: the socket is closed with no DISCONNECT, as when the box's process dies (SIGKILL)
  or its cable is pulled and the kernel says so: the broker publishes the will at once;
- `freeze()`: the connection stays open and goes silent (a hung box, a cable cut without a
  word): the broker publishes the will only after one and a half keepalives;
- `close()`: posd's orderly stop: a clean DISCONNECT, no will (posd publishes `offline` itself).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from posd.fleet.simbox import Message

log = logging.getLogger(__package__)

TICK_S: Final = 1.0
CONNECT_TIMEOUT_S: Final = 15.0

OnMessage = Callable[[str, bytes], None]
OnLost = Callable[[], None]


class ConnectFailed(Exception):
    pass


class Network:
    """What the connections share: the broker's address, the loop, the keepalive ticker, and
    the few threads paho's blocking TCP connect runs on (as aiomqtt runs it)."""

    def __init__(self, host: str, port: int, *, keepalive_s: int = 60, threads: int = 8) -> None:
        self.host, self.port, self.keepalive_s = host, port, keepalive_s
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.executor = concurrent.futures.ThreadPoolExecutor(threads, "posd-sim-connect")
        self.live: set[BoxConnection] = set()
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="posd-sim-keepalive")

    async def aclose(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.wait({self._ticker})  # keeps a cancellation of our own
        for connection in list(self.live):
            connection.drop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def in_loop(self, callback: Callable[..., object], *args: Any) -> None:
        """Run on the loop's thread: paho calls back from the connect thread too."""
        if threading.get_ident() == self._loop_thread:
            callback(*args)
            return
        # paho closes a dropped client's socket again when the client is collected, calling
        # back from whichever thread collects it, maybe after the loop closed: the network is
        # gone then, and with it all the callback would tidy.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback, *args)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for connection in list(self.live):
                connection.client.loop_misc()


class BoxConnection:
    """One connection of one box; a box that reconnects makes a new one."""

    __slots__ = (
        "_acked",
        "_connack",
        "_done",
        "_fd",
        "_suback",
        "client",
        "client_id",
        "net",
        "on_lost",
        "on_message",
        "up",
    )

    def __init__(
        self,
        net: Network,
        client_id: str,
        will: Message,
        on_message: OnMessage,
        on_lost: OnLost,
    ) -> None:
        self.net = net
        self.client_id = client_id
        self.on_message = on_message
        self.on_lost = on_lost
        self.up = False
        self._fd = -1
        loop = net.loop
        self._connack: asyncio.Future[ReasonCode] = loop.create_future()
        self._suback: asyncio.Future[None] = loop.create_future()
        self._done: asyncio.Future[None] = loop.create_future()
        self._acked: dict[int, asyncio.Future[None]] = {}
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._written
        client.on_connect = self._connected
        client.on_subscribe = self._subscribed
        client.on_message = self._message
        client.on_publish = self._published
        client.on_disconnect = self._disconnected
        self.client = client

    # -- life --------------------------------------------------------------------------------

    async def open(self, request_filter: str) -> None:
        """Connect (CONNACK) and subscribe to the box's requests (SUBACK); ConnectFailed."""
        net = self.net
        self.client.connect_async(net.host, net.port, net.keepalive_s)
        try:
            await net.loop.run_in_executor(net.executor, self.client.reconnect)
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                code = await self._connack
                if code.is_failure:
                    raise ConnectFailed(f"the broker refused the connection: {code}")
                self.client.subscribe(request_filter, 1)
                await self._suback
        except (OSError, TimeoutError) as exc:
            self.drop()
            raise ConnectFailed(f"cannot connect to {net.host}:{net.port}: {exc}") from None
        except BaseException:
            self.drop()
            raise
        self.up = True

    def publish(self, message: Message) -> None:
        if self.up:
            self.client.publish(message.topic, message.payload, message.qos, message.retain)

    def drop(self) -> None:
        """Close the socket now, no DISCONNECT: the broker sees the connection die."""
        self.up = False
        self._detach()
        sock = self.client.socket()
        if isinstance(sock, socket.socket) and sock.fileno() >= 0:
            sock.close()
        if not self._done.done():
            self._done.set_result(None)

    def freeze(self) -> None:
        """Go silent on an open connection: no reads, no writes, no keepalive."""
        self.up = False
        self._detach()

    async def close(self, last: Message | None = None, timeout_s: float = 5.0) -> None:
        """posd's orderly stop: `last` (its own `offline`), then DISCONNECT."""
        if not self.up:
            self.drop()
            return
        self.up = False  # an orderly end: not a lost connection
        try:
            async with asyncio.timeout(timeout_s):
                if last is not None:
                    # As posd does: its PUBACK first. A socket closed right after the
                    # DISCONNECT while the broker still answers earlier publishes makes it
                    # drop the connection unread, `offline` and DISCONNECT with it.
                    info = self.client.publish(last.topic, last.payload, last.qos, last.retain)
                    if last.qos > 0:
                        acked = self._acked[info.mid] = self.net.loop.create_future()
                        await acked
                self.client.disconnect()
                await asyncio.shield(self._done)
        except TimeoutError:
            log.debug("%s: no orderly end within %g s", self.client_id, timeout_s)
        self.drop()

    def _detach(self) -> None:
        self.net.live.discard(self)
        if self._fd >= 0:
            self.net.loop.remove_reader(self._fd)
            self.net.loop.remove_writer(self._fd)
            self._fd = -1

    # -- paho's callbacks --------------------------------------------------------------------

    def _socket_open(self, client: paho.Client, userdata: object, sock: Any) -> None:
        self.net.in_loop(self._watch, sock.fileno())

    def _watch(self, fd: int) -> bool:
        if self._fd == fd:
            return True
        current = self.client.socket()
        if current is None or current.fileno() != fd:
            return False  # closed before the loop got here
        self._fd = fd
        self.net.loop.add_reader(fd, self._readable)
        self.net.live.add(self)
        return True

    def _socket_close(self, client: paho.Client, userdata: object, sock: Any) -> None:
        self.net.in_loop(self._detach)

    def _want_write(self, client: paho.Client, userdata: object, sock: Any) -> None:
        self.net.in_loop(self._add_writer, sock.fileno())

    def _add_writer(self, fd: int) -> None:
        # The CONNECT is queued from the connect thread, maybe before the socket is watched.
        if self._watch(fd):
            self.net.loop.add_writer(fd, self._writable)

    def _written(self, client: paho.Client, userdata: object, sock: Any) -> None:
        if self._fd >= 0:
            self.net.loop.remove_writer(self._fd)

    def _readable(self) -> None:
        self.client.loop_read()

    def _writable(self) -> None:
        self.client.loop_write()

    def _connected(
        self, client: paho.Client, userdata: object, flags: Any, code: ReasonCode, properties: Any
    ) -> None:
        if not self._connack.done():
            self._connack.set_result(code)

    def _subscribed(
        self, client: paho.Client, userdata: object, mid: int, codes: Any, properties: Any
    ) -> None:
        if not self._suback.done():
            self._suback.set_result(None)

    def _published(
        self, client: paho.Client, userdata: object, mid: int, code: Any, properties: Any
    ) -> None:
        acked = self._acked.pop(mid, None)
        if acked is not None and not acked.done():
            acked.set_result(None)

    def _message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        try:
            self.on_message(message.topic, bytes(message.payload))
        except Exception:
            log.exception("%s: a request failed", self.client_id)

    def _disconnected(
        self, client: paho.Client, userdata: object, flags: Any, code: Any, properties: Any
    ) -> None:
        was_up, self.up = self.up, False
        self._detach()
        if not self._done.done():
            self._done.set_result(None)
        for acked in self._acked.values():  # no PUBACK comes on a closed connection
            if not acked.done():
                acked.set_result(None)
        self._acked.clear()
        if not self._connack.done():
            self._connack.set_exception(ConnectFailed(f"connection closed before CONNACK ({code})"))
        if was_up:
            self.on_lost()
