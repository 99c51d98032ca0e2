"""`OrderAlerts`: the 배달서구 order alerts as a component (mqtt.md "배달서구 orders").

    order on `orders.topic` → validated (protocols.order_payload) → journal (fsync) → the
    handler returns and the link PUBACKs → chime at once → status `alerting` (retained) and an
    `order` event → chimes every repeat_s, louder after escalate_after_s → acknowledged (POS or
    `{orders.topic}/{order_id}/ack`) or, after missed_after_s, missed → status and event.

Rules:
- An order is journaled before the handler returns, so a crash before then makes the broker
  deliver it again; each order_id alerts once, however often it comes (the journal's row).
- An order that does not parse (not JSON, missing fields, wrong types, over 64 KiB) or was
  placed more than STALE_DAYS ago is acknowledged, never alerted: one log line and an `error`
  event each, rate-limited under a flood.
- A journal that cannot write makes the handler fail: the link reconnects and the broker
  delivers the order again; meanwhile the shop counts as deaf.
- On start, every order still alerting in the journal alerts again on its own timeline.
- Acknowledging a missed order is refused (OrderEnded): the call centre was told already.
- On every connect the statuses of the last day's orders are published again (retained), so a
  status lost with a crash is put right.

Status payloads and events are in views.py; the chime loop in alarm.py; deafness in hearing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from typing import Final

from drivers.audio import AudioError, OutputChange, Playback, Player, build_player
from posd.config import Config, read_mqtt_password
from posd.journal import (
    JournalError,
    JournalHolder,
    JournalNotOpen,
    JournalStorageError,
    OrderRecord,
    OrderStore,
)
from posd.logs import register_secret
from posd.mqtt import (
    Connection,
    InboundMessage,
    MqttLink,
    Subscription,
    Throttle,
    orders_link_settings,
)
from posd.orders.alarm import Alarm
from posd.orders.hearing import Hearing, can_alert
from posd.orders.intake import BadInput, OrderIntake
from posd.orders.service import OrderEnded, OrdersUnavailable, Tuning, UnknownOrder
from posd.orders.views import hearing_event, order_event, order_object, status_payload
from posd.runtime import EventHub, failpoint

log = logging.getLogger(__package__)

STATUS_EXPIRY_S: Final = 2 * 86_400
"""MQTT 5: the broker forgets a retained status after this (3.1.1 keeps it until replaced)."""
REPUBLISH_S: Final = 86_400


AudioReport = Callable[[str, str | None, str], None]
"""The audio device's changes (its state, a detail, the output in use) as `device` events: the
stack gives posd.monitoring's DeviceReporter.report, the reporter of every device."""


def player_from_config(
    config: Config,
    *,
    tuning: Tuning | None = None,
    on_change: Callable[[OutputChange], None] | None = None,
) -> Player:
    """The chime's player for `[audio]`."""
    audio, tuning = config.audio, tuning or Tuning()
    return build_player(
        audio.output,
        audio.device,
        audio.volume,
        escpos_form=audio.escpos_form,
        printer_port=audio.printer_port,
        printer_baudrate=audio.printer_baudrate,
        consoles=tuning.consoles,
        find_printers=tuning.find_printers,
        on_change=on_change,
    )


def _local_midnight(now: float) -> float:
    today = dt.datetime.fromtimestamp(now).date()
    return dt.datetime.combine(today, dt.time.min).timestamp()


def sections_without_alerts(config: Config) -> tuple[dict[str, object], dict[str, object]]:
    """The state object's `orders` and `devices.audio` while no OrderAlerts runs (starting,
    restarting after a crash, replaced by a reload): a shop that takes orders cannot alert
    one then, so it is deaf, with the reason; one that takes none is not (`can_alert`).
    What is not known now is null."""
    enabled = config.orders.enabled
    orders: dict[str, object] = {
        "alerting": None,
        "missed_today": None,
        "link": "down" if enabled else "disabled",
        "can_alert": can_alert(enabled, deaf=True),
        "reason": "the order alerts are not running (starting or restarting)" if enabled else None,
    }
    audio_state = "disabled" if config.audio.output == "none" else None
    return orders, {"state": audio_state, "output": config.audio.output}


class OrderAlerts:
    """The order alerts component, and the `OrderDesk` of the local API and monitoring."""

    name = "orders"
    config_sections = ("terminal", "mqtt", "orders", "audio")

    def __init__(
        self,
        config: Config,
        journal: JournalHolder,
        hub: EventHub,
        *,
        tuning: Tuning | None = None,
        report_audio: AudioReport | None = None,
    ) -> None:
        """`hub`: posd's event hub (Runtime.events), for the `order` and `error` events;
        `report_audio`: where the audio device's changes go (none: not reported)."""
        self._config = config
        self._journal = journal
        self._hub = hub
        self._report_audio = report_audio
        self._tuning = tuning or Tuning()
        self._topic = config.orders_topic
        self.player = player_from_config(config, tuning=self._tuning, on_change=self._audio_changed)
        self._hearing = Hearing(
            enabled=config.orders.enabled,
            deaf_after_s=self._tuning.deaf_after_s,
            tell=self._tell_hearing,
        )
        self._intake = OrderIntake(self._topic, self._report_bad)
        self._link: MqttLink | None = None
        self._alarm: Alarm | None = None
        self._missed: list[int] = []
        self._journal_error: str | None = None
        self._poke = asyncio.Event()
        self._unknown_acks = Throttle(60.0)
        # A redelivery is one line; a platform sending copies in a loop is one a second.
        self._repeats = Throttle(1.0)

    # ---- component -----------------------------------------------------------------------

    async def run(self, started: Callable[[], None]) -> None:
        store = (await self._journal.wait()).orders
        orders = self._config.orders
        await self.player.prepare()
        alarm = Alarm(
            self.player,
            repeat_s=orders.repeat_s,
            escalate_after_s=orders.escalate_after_s,
            missed_after_s=orders.missed_after_s,
            on_missed=lambda order_id: self._end_missed(store, order_id),
            on_played=self._played,
        )
        resumed = await self._load(store, alarm)
        link = await self._make_link(store) if orders.enabled else None
        self._alarm, self._link = alarm, link
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(alarm.run(), name="orders-alarm")
                if link is not None:
                    tasks.create_task(link.run(), name="orders-link")
                tasks.create_task(self._watch(link), name="orders-watch")
                if resumed:
                    log.warning(
                        "%d order%s still alerting from before the restart: alerting again",
                        resumed,
                        "" if resumed == 1 else "s",
                    )
                started()
        finally:
            self._alarm = self._link = None

    async def _load(self, store: OrderStore, alarm: Alarm) -> int:
        now = time.time()
        alerting = await store.alerting()
        for record in alerting:
            alarm.add(record.order_id, record.received_at)
        since = await store.since(_local_midnight(now))
        self._missed = [r.ended_at for r in since if r.state == "missed" and r.ended_at]
        return len(alerting)

    async def _make_link(self, store: OrderStore) -> MqttLink:
        password = await asyncio.to_thread(read_mqtt_password, self._config)
        if password is not None:
            with contextlib.suppress(ValueError):  # too short to mask: the daemon warned
                register_secret(password)
        settings = self._tuning.link(orders_link_settings(self._config, password))

        async def on_connect(connection: Connection) -> None:
            await self._republish(store)

        return MqttLink(
            settings,
            subscriptions=[Subscription(self._topic, 1), Subscription(f"{self._topic}/+/ack", 1)],
            handler=lambda message: self._on_message(store, message),
            on_connect=on_connect,
        )

    async def _watch(self, link: MqttLink | None) -> None:
        """Looks at the audio outputs now and then, and at the link on each of its changes."""
        if link is not None:
            link.add_listener(lambda _state: self._poke.set())
        next_check = 0.0
        while True:
            now = time.monotonic()
            if now >= next_check:
                await self.player.check()
                self._tell_audio()
                next_check = time.monotonic() + self._tuning.audio_check_s
            self._evaluate()
            state = link.state if link is not None else None
            wait = min(next_check - time.monotonic(), self._hearing.link_deadline(state, now))
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait) if math.isfinite(wait) else None):
                    await self._poke.wait()

    def _evaluate(self) -> None:
        link = self._link.state if self._link is not None else None
        self._hearing.update(link, self.player.status(), self._journal_error, time.monotonic())

    # ---- arriving messages ---------------------------------------------------------------

    async def _on_message(self, store: OrderStore, message: InboundMessage) -> None:
        if message.topic == self._topic:
            await self._take_order(store, message)
        elif message.matches(f"{self._topic}/+/ack"):
            await self._take_ack(store, message)
        else:
            log.debug("orders: a message on %s is not for posd", message.topic)

    async def _take_order(self, store: OrderStore, message: InboundMessage) -> None:
        arrived = time.monotonic()
        order = self._intake.parse(message, time.time())
        if order is None:
            return
        failpoint("orders.before_journal")
        try:
            record, created = await store.record(
                order.order_id,
                placed_at=order.placed_at.timestamp(),
                total=order.total,
                payload=message.payload.decode(),
                now=time.time(),
            )
        except JournalError as exc:
            self._journal_failed(exc)
            raise  # not acknowledged: the broker delivers it again
        self._journal_ok()
        failpoint("orders.after_journal")
        if not created:
            allowed, held = self._repeats.allow(time.monotonic())
            if allowed:
                more = f" ({held} more orders came again since the last such line)" if held else ""
                log.info(
                    "order %s came again (%s): not alerted again%s",
                    order.order_id,
                    record.state,
                    more,
                )
            return
        log.info(
            "order %s arrived: %d item%s, %s won, placed %s",
            record.order_id,
            len(order.items),
            "" if len(order.items) == 1 else "s",
            f"{order.total:,}",
            order.placed_at.isoformat(timespec="seconds"),
        )
        if self._alarm is not None:
            self._alarm.add(record.order_id, record.received_at, arrived=arrived)
        self._changed(record)

    async def _take_ack(self, store: OrderStore, message: InboundMessage) -> None:
        order_id = message.topic[len(self._topic) + 1 : -len("/ack")]
        try:
            await self._end_acknowledged(store, order_id, "mqtt")
        except (UnknownOrder, OrderEnded) as exc:
            allowed, held = self._unknown_acks.allow(time.monotonic())
            if allowed:
                more = f" ({held} more since the last such line)" if held else ""
                log.info("orders: acknowledgement on %s ignored: %s%s", message.topic, exc, more)

    def _report_bad(self, bad: BadInput) -> None:
        self._hub.publish("error", "error", {"what": bad.what, "detail": bad.detail})

    # ---- ending orders -------------------------------------------------------------------

    async def _end_acknowledged(self, store: OrderStore, order_id: str, by: str) -> OrderRecord:
        try:
            result = await store.end(
                order_id,
                "acknowledged",
                time.time(),
                acked_by="pos" if by == "pos" else "mqtt",
            )
        except JournalError as exc:
            self._journal_failed(exc)
            raise
        if result is None:
            raise UnknownOrder(f"no order {order_id} arrived at this terminal")
        record, changed = result
        if record.state == "missed":
            raise OrderEnded(
                f"order {order_id} was missed after {self._config.orders.missed_after_s:g} s "
                "and the call centre was told; take it up in the 배달서구 app"
            )
        if changed:
            if self._alarm is not None:
                self._alarm.remove(order_id)
            log.info(
                "order %s acknowledged by %s after %.0f s",
                order_id,
                "the POS" if by == "pos" else "the platform",
                (record.ended_at or record.received_at) / 1000 - record.received_at / 1000,
            )
            self._changed(record)
        return record

    async def _end_missed(self, store: OrderStore, order_id: str) -> bool:
        try:
            result = await store.end(order_id, "missed", time.time())
        except JournalError as exc:
            log.error("order %s could not be recorded missed: %s; trying again", order_id, exc)
            return False
        if result is None:
            return True
        record, changed = result
        if changed:
            assert record.ended_at is not None
            self._missed.append(record.ended_at)
            log.warning(
                "order %s missed: nobody acknowledged it in %g s; the call centre is told",
                order_id,
                self._config.orders.missed_after_s,
            )
            self._changed(record)
        return True

    def _changed(self, record: OrderRecord) -> None:
        now_ms = round(time.time() * 1000)
        self._hub.publish("order", "order", order_event(record, now_ms))
        self._publish_status(record, now_ms)

    def _publish_status(self, record: OrderRecord, now_ms: int) -> None:
        if self._link is not None:
            self._link.publish(
                f"{self._topic}/{record.order_id}/status",
                status_payload(record, now_ms),
                qos=1,
                retain=True,
                expiry_s=STATUS_EXPIRY_S,
            )

    async def _republish(self, store: OrderStore) -> None:
        try:
            recent = await store.since(time.time() - REPUBLISH_S, limit=500)
        except JournalError as exc:
            log.warning("orders: the statuses could not be published again: %s", exc)
            return
        now_ms = round(time.time() * 1000)
        for record in reversed(recent):
            self._publish_status(record, now_ms)

    # ---- health --------------------------------------------------------------------------

    def _played(self, played: Playback | None, error: AudioError | None) -> None:
        self._evaluate()

    def _audio_changed(self, change: OutputChange) -> None:
        self._tell_audio()
        self._poke.set()

    def _tell_audio(self) -> None:
        """The player's status as a whole to the reporter, which passes on a change of its
        state or of the output in use only (an output's change is told per output; the first
        look at start tells how it starts). No output at all (`none`) is no device."""
        if self._report_audio is None or not self.player.outputs:
            return
        status = self.player.status()
        if status.state in ("ready", "busy"):
            more = f" ({status.detail})" if status.detail else ""
            detail = f"the chime plays on {status.output}{more}"
        else:
            detail = status.detail or status.state
        self._report_audio(status.state, detail, status.output)

    def _tell_hearing(self, deaf: bool, reason: str | None) -> None:
        self._hub.publish("order", "order", hearing_event(deaf, reason))

    def _journal_failed(self, exc: JournalError) -> None:
        if isinstance(exc, JournalStorageError):
            self._journal_error = str(exc)
            self._evaluate()

    def _journal_ok(self) -> None:
        if self._journal_error is not None:
            self._journal_error = None
            self._evaluate()

    # ---- OrderDesk -----------------------------------------------------------------------

    def _store(self) -> OrderStore:
        try:
            return self._journal().orders
        except JournalNotOpen as exc:
            raise OrdersUnavailable(str(exc)) from None

    async def orders(self) -> dict[str, object]:
        store = self._store()
        now = time.time()
        try:
            alerting = await store.alerting()
            today = await store.since(_local_midnight(now))
        except JournalError as exc:
            raise OrdersUnavailable(f"the journal cannot be read: {exc}") from None
        now_ms = round(now * 1000)
        shown = {r.order_id for r in alerting}
        listed = alerting + [r for r in today if r.order_id not in shown]
        orders, audio = self.status_sections()
        alarm = self._alarm
        return {
            **orders,
            "audio": audio,
            "alert": alarm.summary() if alarm is not None else None,
            "orders": [order_object(r, now_ms) for r in listed],
        }

    async def acknowledge(self, order_id: str) -> dict[str, object]:
        store = self._store()
        try:
            record = await self._end_acknowledged(store, order_id, "pos")
        except JournalError as exc:
            raise OrdersUnavailable(f"the journal cannot take the acknowledgement: {exc}") from None
        return order_object(record, round(time.time() * 1000))

    def status_sections(self) -> tuple[dict[str, object], dict[str, object]]:
        today = _local_midnight(time.time()) * 1000
        if not self._config.orders.enabled:
            link = "disabled"
        else:
            link = self._link.state.status if self._link is not None else "down"
        orders: dict[str, object] = {
            "alerting": self._alarm.waiting if self._alarm is not None else 0,
            "missed_today": sum(1 for at in self._missed if at >= today),
            "link": link,
            "can_alert": self._hearing.can_alert,
            "reason": self._hearing.reason,
        }
        status = self.player.status()
        return orders, {"state": status.state, "output": status.output}

    async def chime_test(self) -> dict[str, object]:
        try:
            played = await self.player.play(False)
        finally:
            self._evaluate()
        return {"output": played.output, "failures": list(played.failures)}
