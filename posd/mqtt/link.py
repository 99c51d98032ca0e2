"""`MqttLink`: one reconnecting MQTT session, a long-lived task under the daemon's TaskGroup.

    link = MqttLink(settings, subscriptions=[Subscription(topic)], handler=on_message,
                    on_connect=republish, on_stop=say_offline)
    tg.create_task(link.run())        # until cancelled, or link.stop()
    link.publish(topic, payload)      # never blocks; sent when the broker is there

Connecting. One aiomqtt Client per `run()`, re-entered on every reconnect (aiomqtt's Client is
reusable, not reentrant; see posd.mqtt.reach for the one fix it needs), so paho's in-flight
QoS 1 publishes survive a reconnect. Forever: full-jitter backoff from `backoff_initial_s`
doubling to `backoff_max_s`, started over by a connection that lasted `healthy_after_s`. A
refused CONNACK (credentials), a TLS failure, a refused subscription: each is `last_error` in
the state and a log line, and is retried like any other failure. Failures are logged at once
the first time, then at most once per `log_interval_s` with a count.

After each CONNACK: every subscription again (a refused one fails the connection), status
"up", then `on_connect(Connection)` (monitoring republishes `online` and its state there, with
`send`, before the outbox), then the outbox drains while messages are delivered.

Receiving. `handler(message)` is awaited for one message at a time, in arrival order. With
`manual_ack` the PUBACK of a QoS 1 message goes out when the handler returns (the handler
returns once the message is durable, or once it has rejected it: a message it will never take
must still be acked, or it comes back forever and Mosquitto stops delivering at 20 unacked);
acks therefore follow arrival order (MQTT 4.6.0-2). A handler that raises on a manual-ack link
has not taken the message: the link drops the connection and comes back after the backoff, and
the broker delivers it again. Without manual ack paho acked it on arrival, and the error is
logged. Messages left in aiomqtt's queue when a connection drops are still handed to the
handler before the next connect, never acked (the broker delivers them again on a persistent
session: handlers must take a message twice without harm).

Sending. `publish` puts a message in the bounded outbox and returns (dropping the oldest when
full, counted); the outbox drains while connected, `max_in_flight` QoS 1 publishes at a time. A
publish handed to paho whose PUBACK does not come (the connection dropped, or `timeout_s`
passed) is counted `unconfirmed` and never re-queued: paho keeps a QoS 1 message and sends it
again on the next connect of the same Client, so it is "maybe sent" (a consumer drops what it
has seen by the payload's id). `send` publishes at once on the live connection and
waits for the PUBACK (LinkDown without a connection, MaybeSent when the PUBACK never came).

Stopping. `stop()` or cancelling `run()`: the outbox is drained and `on_stop()` awaited (where
monitoring sends `offline`: a clean DISCONNECT sends no will), then DISCONNECT, all within
`stop_timeout_s`. Everything here runs on the event loop's thread; `publish` is not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

import aiomqtt

from posd.mqtt import reach
from posd.mqtt.errors import LinkDown, MaybeSent, SessionFailed, describe
from posd.mqtt.model import (
    Connection,
    InboundMessage,
    LinkState,
    Outgoing,
    Subscription,
)
from posd.mqtt.pacing import Backoff, Throttle
from posd.mqtt.settings import MAX_PAYLOAD_BYTES, LinkSettings, check_topic, tls_context

log = logging.getLogger(__package__)

Handler = Callable[[InboundMessage], Awaitable[None]]
OnConnect = Callable[[Connection], Awaitable[None]]
OnStop = Callable[[], Awaitable[None]]
StateListener = Callable[[LinkState], None]


class MqttLink:
    """One broker session that reconnects forever; see the module docstring."""

    def __init__(
        self,
        settings: LinkSettings,
        *,
        subscriptions: Iterable[Subscription] = (),
        handler: Handler | None = None,
        on_connect: OnConnect | None = None,
        on_stop: OnStop | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._subscriptions = tuple(subscriptions)
        if self._subscriptions and handler is None:
            raise ValueError(f"mqtt {self.name}: subscriptions need a handler")
        self._handler = handler
        self._on_connect = on_connect
        self._on_stop = on_stop
        self._backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, uniform)
        self._outbox: deque[Outgoing] = deque()
        self._outbox_ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._listeners: list[StateListener] = []
        self._stop = asyncio.Event()
        self._up = asyncio.Event()
        self._live: reach.Reached | None = None
        self._running = False
        self._problems = Throttle(settings.log_interval_s)
        self._connect_lines = Throttle(settings.log_interval_s)
        self._handler_errors = Throttle(settings.log_interval_s)
        self._failed_attempts = 0
        self._told_down = False
        self._up_since: float | None = None
        self._dropped_mark = 0
        self._state = LinkState(
            self.name, "down", time.time(), 0, None, None, 0, 0, 0, time.monotonic()
        )

    # ---- what callers see --------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return replace(self._state, queued=len(self._outbox))

    def add_listener(self, listener: StateListener) -> Callable[[], None]:
        """Call `listener(state)` on every change of status, connects, last_error or
        unconfirmed (not on every publish or drop). Returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def wait_up(self) -> None:
        """Return once the link is up (subscribed, on_connect done)."""
        await self._up.wait()

    async def flushed(self) -> None:
        """Return once the outbox is empty and no publish from it awaits its PUBACK."""
        await self._idle.wait()

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> None:
        """Queue a message for the broker and return at once; see the module docstring.
        `expiry_s` is the MQTT 5 Message Expiry Interval (ignored under 3.1.1)."""
        message = self._outgoing(topic, payload, qos, retain, expiry_s)
        if len(self._outbox) >= self.settings.outbox_size:
            self._outbox.popleft()
            self._state = replace(self._state, dropped=self._state.dropped + 1)
        self._outbox.append(message)
        self._outbox_ready.set()
        self._idle.clear()

    async def send(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> None:
        """Publish on the live connection now and wait for the broker's PUBACK (QoS 1).
        LinkDown: not connected, nothing sent. MaybeSent: handed over, PUBACK never came."""
        message = self._outgoing(topic, payload, qos, retain, expiry_s)
        live = self._live
        if live is None:
            raise LinkDown(f"mqtt {self.name}: not connected to {self.settings.address}")
        await self._publish(live, message)

    def stop(self) -> None:
        """Ask `run()` for an orderly stop; it returns once the link is closed. A stopped link
        stays stopped: a later `run()` returns at once."""
        self._stop.set()

    # ---- the task ----------------------------------------------------------------------------

    async def run(self, started: Callable[[], None] | None = None) -> None:
        """Connect and keep connecting until `stop()` or cancellation."""
        if self._running:
            raise RuntimeError(f"mqtt {self.name}: run() is already running")
        self._running = True
        if started is not None:
            started()
        reached: reach.Reached | None = None
        failures = 0
        try:
            while not self._stop.is_set():
                self._up_since = None
                try:
                    if reached is None:
                        reached = await self._build()
                    else:
                        reached.prepare_entry()
                    await self._session(reached)
                except (aiomqtt.MqttError, OSError, SessionFailed) as exc:
                    self._failed(exc)
                finally:
                    self._went_down()
                if reached is not None:
                    await self._deliver_leftovers(reached)
                if self._stop.is_set():
                    break
                failures = 1 if self._healthy() else failures + 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._backoff.delay(failures)):
                        await self._stop.wait()
        finally:
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            if reached is not None:
                reached.settle()
            self._running = False

    # ---- one connection ----------------------------------------------------------------------

    async def _build(self) -> reach.Reached:
        context = None
        if self.settings.tls:
            try:
                context = await asyncio.to_thread(tls_context, self.settings)
            except (OSError, ValueError) as exc:
                s = self.settings
                raise SessionFailed(
                    f"cannot load the TLS files (ca_file {s.ca_file}, cert_file {s.cert_file}, "
                    f"key_file {s.key_file}): {getattr(exc, 'strerror', None) or exc}"
                ) from None
        return reach.build(self.settings, context, pending_calls=self.settings.max_in_flight + 16)

    async def _session(self, reached: reach.Reached) -> None:
        """One connection, from CONNECT to its end. Returns after an orderly stop; raises
        when the connection failed or dropped. Cancellation stops in order, then propagates."""
        client = reached.client
        async with asyncio.timeout(None) as budget:
            try:
                async with client:
                    await self._subscribe_all(client)
                    connection = self._came_up(reached)
                    try:
                        if self._on_connect is not None:
                            await self._run_hook("on_connect", self._on_connect(connection))
                        await self._serve(reached)
                    except asyncio.CancelledError:
                        self._stop.set()
                        budget.reschedule(asyncio.get_running_loop().time() + self._stop_s)
                        await self._orderly_stop(reached)
                        raise
                    budget.reschedule(asyncio.get_running_loop().time() + self._stop_s)
                    await self._orderly_stop(reached)
            except TimeoutError:
                if not budget.expired():
                    raise
                log.warning(
                    "mqtt %s: the orderly stop took longer than %.1f s; closed anyway",
                    self.name,
                    self._stop_s,
                )

    @property
    def _stop_s(self) -> float:
        return self.settings.stop_timeout_s

    async def _subscribe_all(self, client: aiomqtt.Client) -> None:
        for sub in self._subscriptions:
            codes = await client.subscribe(sub.topic_filter, sub.qos)
            code = codes[0] if codes else None
            granted = reach.granted_qos(code)
            if granted is None:
                raise SessionFailed(
                    f"broker {self.settings.address} refused the subscription to "
                    f"{sub.topic_filter!r} ({code}): check the broker's ACL for "
                    f"{self.settings.username or 'anonymous'}"
                )
            if granted < sub.qos:
                log.warning(
                    "mqtt %s: broker granted QoS %d for %r, not %d",
                    self.name,
                    granted,
                    sub.topic_filter,
                    sub.qos,
                )

    async def _serve(self, reached: reach.Reached) -> None:
        """Receive and drain until the connection ends (raises) or stop() (returns)."""
        receiver = asyncio.create_task(self._receive(reached), name=f"mqtt-{self.name}-receive")
        drainer = asyncio.create_task(self._drain(reached), name=f"mqtt-{self.name}-drain")
        stopper = asyncio.create_task(self._stop.wait(), name=f"mqtt-{self.name}-stop")
        watcher = asyncio.create_task(reached.wait_disconnected(), name=f"mqtt-{self.name}-watch")
        tasks = {receiver, drainer, stopper, watcher}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if done == {watcher}:
                # Down now, in the state too, though the handler may still be busy with a
                # message: the receiver ends when it returns.
                self._went_down()
                drainer.cancel()
                done, _ = await asyncio.wait(
                    {receiver, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in (receiver, drainer):
            error = task.exception() if task in done else None
            if error is not None:
                raise error

    async def _orderly_stop(self, reached: reach.Reached) -> None:
        """Drain the outbox, then on_stop, on the live connection; DISCONNECT follows."""
        if self._live is None:
            return  # the connection ended under a busy handler: nothing can go out now
        if self._outbox or self._in_flight:
            drainer = asyncio.create_task(self._drain(reached))
            try:
                await self._idle.wait()
            finally:
                drainer.cancel()
                await asyncio.gather(drainer, return_exceptions=True)
        if self._on_stop is not None:
            await self._run_hook("on_stop", self._on_stop())
        self._live = None

    async def _run_hook(self, which: str, hook: Awaitable[None]) -> None:
        try:
            await hook
        except (LinkDown, MaybeSent) as exc:
            log.info("mqtt %s: %s during %s", self.name, exc, which)
        except Exception:
            log.exception("mqtt %s: %s failed", self.name, which)

    # ---- receiving ---------------------------------------------------------------------------

    async def _receive(self, reached: reach.Reached) -> None:
        async for message in reached.client.messages:
            await self._deliver(reached, message, live=True)

    async def _deliver(
        self, reached: reach.Reached, message: aiomqtt.Message, *, live: bool
    ) -> None:
        inbound = InboundMessage(str(message.topic), message.payload, message.qos, message.retain)
        if self._handler is None:
            # A persistent session subscribed by an earlier program: nothing here takes it.
            log.debug("mqtt %s: no handler for a message on %s", self.name, inbound.topic)
            if live:
                reached.ack(message.mid, message.qos)
            return
        try:
            await self._handler(inbound)
        except Exception as exc:
            allowed, held = self._handler_errors.allow(time.monotonic())
            if allowed:
                log.error(
                    "mqtt %s: the handler failed on a message on %s%s",
                    self.name,
                    inbound.topic,
                    f" ({held} more failures since the last line)" if held else "",
                    exc_info=exc,
                )
            if live and reached.manual_ack and message.qos == 1:
                raise SessionFailed(
                    f"the handler could not take a message on {inbound.topic}: reconnecting "
                    "so that the broker delivers it again"
                ) from None
            return
        if live:
            reached.ack(message.mid, message.qos)

    async def _deliver_leftovers(self, reached: reach.Reached) -> None:
        """Hand the handler what aiomqtt queued before the connection ended; acked never."""
        if self._stop.is_set():
            return
        for message in reached.leftovers():
            with contextlib.suppress(SessionFailed):
                await self._deliver(reached, message, live=False)

    # ---- sending -----------------------------------------------------------------------------

    def _outgoing(
        self, topic: str, payload: bytes | str, qos: int, retain: bool, expiry_s: int | None
    ) -> Outgoing:
        check_topic(topic)
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(data) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload for {topic} is larger than {MAX_PAYLOAD_BYTES} bytes")
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if expiry_s is not None and not 0 < expiry_s <= 0xFFFF_FFFF:
            raise ValueError("expiry_s must be 1 to 2**32-1 seconds")
        return Outgoing(topic, data, qos, retain, expiry_s)

    async def _drain(self, reached: reach.Reached) -> None:
        window = asyncio.Semaphore(self.settings.max_in_flight)
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                if not self._in_flight:
                    self._idle.set()
                await self._outbox_ready.wait()
                continue
            await window.acquire()
            if not self._outbox:
                window.release()
                continue
            message = self._outbox.popleft()
            task = asyncio.create_task(self._publish_released(reached, message, window))
            self._in_flight.add(task)
            task.add_done_callback(self._published)

    async def _publish_released(
        self, reached: reach.Reached, message: Outgoing, window: asyncio.Semaphore
    ) -> None:
        try:
            await self._publish(reached, message)
        except MaybeSent as exc:
            log.debug("%s", exc)
        except Exception:
            log.exception("mqtt %s: publishing on %s failed", self.name, message.topic)
        finally:
            window.release()

    def _published(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not self._outbox and not self._in_flight:
            self._idle.set()

    async def _publish(self, reached: reach.Reached, message: Outgoing) -> None:
        properties = reach.publish_properties(self.settings, message.expiry_s)
        try:
            await reached.client.publish(
                message.topic,
                message.payload,
                message.qos,
                message.retain,
                properties,
                timeout=self.settings.timeout_s,
            )
        except (aiomqtt.MqttError, asyncio.CancelledError) as exc:
            self._set(unconfirmed=self._state.unconfirmed + 1)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise MaybeSent(
                f"mqtt {self.name}: no PUBACK for a message on {message.topic} "
                f"({describe(exc, self.settings.address)}); it may still arrive"
            ) from None

    # ---- state and logs ----------------------------------------------------------------------

    def _set(self, **changes: object) -> None:
        if "status" in changes and changes["status"] != self._state.status:
            changes["since"] = time.time()
            changes["since_monotonic"] = time.monotonic()
        self._state = replace(self._state, **changes)  # type: ignore[arg-type]
        snapshot = self.state
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                log.exception("mqtt %s: a state listener failed", self.name)

    def _came_up(self, reached: reach.Reached) -> Connection:
        self._live = reached
        self._up_since = time.monotonic()
        connects = self._state.connects + 1
        present = reached.connack.session_present
        s = self.settings
        allowed, held = self._connect_lines.allow(time.monotonic())
        if allowed or self._told_down:
            after = (
                f" after {self._failed_attempts} failed attempts" if self._failed_attempts else ""
            )
            more = f" ({held} more connects since the last such line)" if held else ""
            session = ""
            if s.persistent_session:
                session = ", session present" if present else ", new session"
            log.info(
                "mqtt %s: connected to %s as %s (MQTT %s%s)%s%s",
                self.name, s.address, s.client_id, s.protocol, session, after, more,
            )  # fmt: skip
        if s.persistent_session and not present and connects > 1:
            log.warning(
                "mqtt %s: the broker kept no session for %s: messages queued for it while it "
                "was away are lost (broker restarted without persistence, or session expired)",
                self.name,
                s.client_id,
            )
        self._failed_attempts = 0
        self._told_down = False
        self._set(status="up", connects=connects, session_present=present)
        self._up.set()
        dropped, self._dropped_mark = self._state.dropped - self._dropped_mark, self._state.dropped
        return Connection(connects, present, dropped)

    def _healthy(self) -> bool:
        """Whether the connection that just ended had served for healthy_after_s."""
        up_since = self._up_since
        return up_since is not None and (
            time.monotonic() - up_since >= self.settings.healthy_after_s
        )

    def _failed(self, exc: BaseException) -> None:
        text = describe(exc, self.settings.address)
        was_up = self._up_since is not None
        if self._healthy():
            self._problems.reset()  # a connection that served well: its loss is news
        if not was_up:
            self._failed_attempts += 1
        allowed, held = self._problems.allow(time.monotonic())
        if allowed:
            self._told_down = True
            if was_up:
                more = f" ({held} more failures since the last such line)" if held else ""
                log.warning("mqtt %s: connection lost: %s%s", self.name, text, more)
            elif self._failed_attempts > 1:
                log.warning(
                    "mqtt %s: still cannot connect after %d attempts: %s",
                    self.name,
                    self._failed_attempts,
                    text,
                )
            else:
                log.warning(
                    "mqtt %s: cannot connect: %s; retrying in the background", self.name, text
                )
        self._set(last_error=text)

    def _went_down(self) -> None:
        self._live = None
        self._up.clear()
        if self._state.status != "down":
            self._set(status="down")
