"""`Monitoring`: the component that keeps the operations centre informed over the monitoring
link (mqtt.md), and takes its signed commands.

- Availability as Zigbee2MQTT and Home Assistant expect it: `online` retained at QoS 1 on
  `…/availability` on every connect (a broker restarted without persistence, or with its
  consumers, must not leave the box looking offline), the will `offline`, and `offline`
  published by the orderly stop itself (a clean DISCONNECT sends no will). Client id
  `posd-{terminal_id}` (posd.mqtt.monitoring_link_settings).
- The state (posd.monitoring.state), retained at QoS 1: on every connect; on every change,
  at most once a second (a change is any event on posd's hub; an unchanged state is not
  sent again); and every STATE_INTERVAL_S. Under MQTT 5 it expires after STATE_EXPIRY_S.
  While the link is down it is not queued: the next connect sends a fresh one.
- Events: every hub event of a monitoring kind (posd.monitoring.events), QoS 1, through the
  link's bounded outbox: while the broker is away they wait there, oldest dropped first; the
  count dropped is reported on the next connect as an `error` event (what `events_dropped`),
  sent before the backlog. An event the link handed to paho without a PUBACK is never sent
  again by posd ("maybe sent"; ids let consumers drop duplicates).
- Commands (posd.monitoring.commands) on `…/request/+`.
- Optional Home Assistant discovery (posd.monitoring.discovery), on every connect.

Stopping: the hub events not yet passed on go into the outbox, the link drains it, says
`offline`, then DISCONNECT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping

from posd.config import Config
from posd.monitoring.commands import CommandDesk, CommandHandlers
from posd.monitoring.diagnostics import Diagnostics, RecentProblems
from posd.monitoring.discovery import discovery_payload, discovery_topic
from posd.monitoring.events import event_payload, mqtt_event
from posd.monitoring.sources import ComponentWatch, SafThresholds
from posd.monitoring.state import (
    STATE_EXPIRY_S,
    STATE_INTERVAL_S,
    STATE_MIN_GAP_S,
    StateBuilder,
    connects,
    same_state,
)
from posd.mqtt import (
    Connection,
    LinkDown,
    LinkSettings,
    MaybeSent,
    MqttLink,
    Subscription,
    Throttle,
)
from posd.runtime import Runtime
from posd.runtime import Subscription as HubSubscription
from protocols.command_payload import ReplayWindow

log = logging.getLogger(__package__)


def encode(payload: Mapping[str, object]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class Monitoring:
    """The monitoring component; see the module doc."""

    name = "monitoring"
    config_sections: tuple[str, ...] = ("terminal", "mqtt")

    def __init__(
        self,
        config: Config,
        runtime: Runtime,
        state: StateBuilder,
        settings: LinkSettings,
        handlers: CommandHandlers,
        *,
        diagnostics: Diagnostics,
        problems: RecentProblems,
        replay: ReplayWindow | None = None,
        interval_s: float = STATE_INTERVAL_S,
        min_gap_s: float = STATE_MIN_GAP_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`config` is the one this component is built from: during a reload it is the new
        one, while `runtime.config` is still the old. `state` is shared (the stack's one
        builder) and is only read here: an instance built for a reload may be discarded
        unused. `replay`: the command ids seen, kept across reloads by the caller."""
        self._runtime = runtime
        self._connects = connects(runtime)
        self._state = state
        self._settings = settings
        self._problems = problems
        self._interval_s = interval_s
        self._min_gap_s = min_gap_s
        self._clock = clock
        self._base = config.monitoring_topic
        self._discovery = (
            (discovery_topic(config), encode(discovery_payload(config)))
            if config.mqtt.homeassistant_discovery
            else None
        )
        self._expiry_s = STATE_EXPIRY_S if settings.protocol == "5" else None
        self.desk = CommandDesk(
            self._base,
            config.mqtt.operator_keys,
            runtime.events,
            handlers,
            self._respond,
            replay=replay,
        )
        self.link = self._new_link()
        self._link_used = False
        diagnostics.link = lambda: self.link.state
        self._thresholds = SafThresholds(runtime.events)
        self._dirty = asyncio.Event()
        self._state_lock = asyncio.Lock()
        self._last_state: dict[str, object] | None = None
        self._last_try = -math.inf
        self._build_failures = Throttle(60.0)
        self.events_sent = 0

    def _new_link(self) -> MqttLink:
        return MqttLink(
            self._settings,
            subscriptions=[Subscription(self.desk.request_filter)],
            handler=self.desk.on_message,
            on_connect=self._on_connect,
            on_stop=self._on_stop,
        )

    # ---- the component -------------------------------------------------------------------

    async def run(self, started: Callable[[], None]) -> None:
        if self._link_used:
            # A stopped link stays stopped: after a crash, the supervisor's next run gets a
            # new one.
            self.link = self._new_link()
            self._last_state, self._last_try = None, -math.inf
        self._link_used = True
        runtime = self._runtime
        events = runtime.events.subscribe()
        watch = ComponentWatch(runtime.events, runtime.supervisor)
        runtime.supervisor.add_listener(watch)
        root = logging.getLogger()
        root.addHandler(self._problems)
        link = asyncio.create_task(self.link.run(), name="mqtt-monitoring")
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._watch(link))
                tasks.create_task(self._forward(events))
                tasks.create_task(self._state_loop())
                started()
        finally:
            # What the hub gave and was not passed on yet goes out before `offline`.
            for event in events.pending():
                self._pass_on(event)
            await self.desk.stop()
            self.link.stop()
            done, _ = await asyncio.wait({link}, timeout=self._settings.stop_timeout_s + 1)
            if not done:
                link.cancel()
                await asyncio.wait({link})  # keeps a cancellation of our own
            runtime.supervisor.remove_listener(watch)
            root.removeHandler(self._problems)
            await events.aclose()

    async def _watch(self, link: asyncio.Task[None]) -> None:
        await asyncio.wait({link})
        error = link.exception()
        if error is not None:
            raise error
        raise RuntimeError("the monitoring link stopped by itself")

    # ---- events ---------------------------------------------------------------------------

    async def _forward(self, events: HubSubscription) -> None:
        while True:
            async for event in events:
                self._pass_on(event)
            # Only a subscriber that fell 1000 events behind is ended; never expected here.
            log.error("monitoring fell behind posd's events; some were not published")
            events = self._runtime.events.subscribe()

    def _pass_on(self, event: Mapping[str, object]) -> None:
        self._dirty.set()
        mapped = mqtt_event(event, self._runtime.boot_id, self._clock())
        if mapped is None:
            return
        kind, payload = mapped
        self.link.publish(f"{self._base}/event/{kind}", encode(payload), qos=1)
        self.events_sent += 1

    def _respond(self, topic: str, payload: bytes) -> None:
        self.link.publish(topic, payload, qos=1)

    # ---- state ----------------------------------------------------------------------------

    async def _state_loop(self) -> None:
        while True:
            wait_s = max(0.0, self._last_try + self._interval_s - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._dirty.wait()
            gap_s = self._last_try + self._min_gap_s - time.monotonic()
            if gap_s > 0:
                await asyncio.sleep(gap_s)
            self._dirty.clear()
            await self._publish_state(connect=False)

    async def _publish_state(self, *, connect: bool) -> None:
        """Build the state and send it if it changed, if it is due (STATE_INTERVAL_S since the
        last try), or on connect. Tries are STATE_MIN_GAP_S apart, whatever their outcome,
        so that a link that is down costs one build per change at most once a second."""
        async with self._state_lock:
            now = time.monotonic()
            if not connect and now < self._last_try + self._min_gap_s:
                self._dirty.set()  # a connect just sent one: this change waits its turn
                return
            due = connect or now >= self._last_try + self._interval_s
            self._last_try = now
            try:
                state = await self._state.build()
            except Exception as exc:
                allowed, held = self._build_failures.allow(now)
                if allowed:
                    log.error("the state could not be built (%d more): %s", held, exc)
                return
            saf = state.get("saf")
            if isinstance(saf, Mapping):
                self._thresholds.see(saf, self._runtime.config.offline)
            if not due and same_state(self._last_state, state):
                return
            try:
                await self.link.send(
                    f"{self._base}/state",
                    encode(state),
                    qos=1,
                    retain=True,
                    expiry_s=self._expiry_s,
                )
            except LinkDown:
                return  # the next connect sends a fresh one
            except MaybeSent as exc:
                log.debug("%s", exc)
            self._last_state = state

    # ---- the link's hooks -----------------------------------------------------------------

    async def _on_connect(self, connection: Connection) -> None:
        self._connects.count += 1
        await self.link.send(f"{self._base}/availability", b"online", qos=1, retain=True)
        await self._publish_state(connect=True)
        if self._discovery is not None:
            topic, payload = self._discovery
            await self.link.send(topic, payload, qos=1, retain=True)
        if connection.dropped:
            size = self._settings.outbox_size
            report = event_payload(
                "error",
                {
                    "what": "events_dropped",
                    "detail": (
                        f"{connection.dropped} events were dropped while the broker was "
                        f"away or slow: the buffer keeps the newest {size}"
                    ),
                    "dropped": connection.dropped,
                },
                f"{self._runtime.boot_id}-dropped-{self._connects.count}",
                self._clock(),
            )
            log.warning("monitoring: %s", report["detail"])
            await self.link.send(f"{self._base}/event/error", encode(report), qos=1)

    async def _on_stop(self) -> None:
        await self.link.send(f"{self._base}/availability", b"offline", qos=1, retain=True)
