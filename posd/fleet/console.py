"""The console's one owner of state: the fleet model, the call list, the watchers, commands.

The MQTT wiring drives it through three entry points:

- `console.feed(topic, payload, retain, received_at)` for every message of the three
  subscriptions (`payloads.subscriptions(base)`), synchronous and cheap: it never waits;
- `console.set_broker(up, detail)` when the broker link comes up or goes down;
- `console.transport = send` with a `commands.CommandTransport`, to send signed commands.

`Console.open(...)` runs the rest in the background while it is open: call-list writes (to
SQLite, in order, off the event loop), stale boxes as time passes, the day's rollover.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Final, NoReturn

from posd.fleet.calls import CALLED_KEPT_S, Call, CallStore
from posd.fleet.commands import (
    COMMAND_TIMEOUT_S,
    CommandError,
    CommandTransport,
    CommandUnavailable,
    Operator,
    check_response,
)
from posd.fleet.hub import MAX_STREAMS, Hub
from posd.fleet.model import CallSignal, Change, DeafChanged, FleetModel, MissedOrder
from posd.fleet.payloads import format_rfc3339

log = logging.getLogger(__package__)

TICK_S: Final = 1.0
# Call signals waiting for their SQLite write; more means a flood of forged missed orders.
MAX_PENDING_CALLS: Final = 10_000


def local_day(epoch: float) -> datetime.date:
    """The console machine's calendar day (in the operations centre: Seoul's)."""
    return datetime.datetime.fromtimestamp(epoch).date()


def _report_failure(task: asyncio.Task[NoReturn]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("the console's background stopped", exc_info=task.exception())


class Console:
    def __init__(
        self,
        model: FleetModel,
        store: CallStore,
        calls: list[Call],
        *,
        operator: Operator | None = None,
        transport: CommandTransport | None = None,
        clock: Callable[[], float] = time.time,
        day: Callable[[float], datetime.date] = local_day,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.model = model
        self.store = store
        self.operator = operator
        self.transport = transport
        self.clock = clock
        self._day = day
        self.hub = Hub(max_streams)
        self.calls: dict[int, Call] = {call.id: call for call in calls}
        self._missed: set[tuple[str, str]] = {
            (c.terminal_id, c.order_id) for c in calls if c.order_id is not None
        }
        self._signals: asyncio.Queue[CallSignal] = asyncio.Queue()
        self.dropped_calls = 0
        self.broker_up = False
        self.broker_since = clock()
        self.broker_detail: str | None = "not connected yet"
        self._today = day(clock())
        self._missed_uncalled = self._count_missed_uncalled()
        self._last_counts = model.summary_counts()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        db_path: Path,
        model: FleetModel,
        *,
        clock: Callable[[], float] = time.time,
        operator: Operator | None = None,
        transport: CommandTransport | None = None,
        day: Callable[[float], datetime.date] = local_day,
        max_streams: int = MAX_STREAMS,
    ) -> AsyncIterator[Console]:
        """The console with its background (`run`) going until the block ends."""
        store = await CallStore.open(db_path)
        try:
            calls = await store.current(clock())
            console = cls(
                model,
                store,
                calls,
                operator=operator,
                transport=transport,
                clock=clock,
                day=day,
                max_streams=max_streams,
            )
            # Not a TaskGroup around the body: that would wrap every error of the caller's
            # block in an ExceptionGroup. The background only ends by cancellation; should it
            # fail, it says so at once and again when the block ends.
            background = asyncio.create_task(console.run())
            background.add_done_callback(_report_failure)
            try:
                yield console
            finally:
                background.cancel()
                await asyncio.wait({background})  # keeps a cancellation of our own
        finally:
            await store.close()

    # -- the wiring's entry points -----------------------------------------------------------

    def feed(self, topic: str, payload: bytes, retain: bool, received_at: float) -> None:
        """One broker message; never raises on its content, never waits."""
        change = self.model.ingest(topic, payload, retain, received_at)
        if change is not None:
            self._publish(change)

    def set_broker(self, up: bool, detail: str | None = None) -> None:
        if up == self.broker_up and detail == self.broker_detail:
            return
        if up != self.broker_up:
            self.broker_since = self.clock()
        self.broker_up, self.broker_detail = up, detail
        self.hub.console()

    # -- reading -----------------------------------------------------------------------------

    def summary(self) -> dict[str, object]:
        """fleet-console.md's `GET /api/summary`."""
        counts = self.model.summary_counts()
        return {
            "boxes": counts["boxes"],
            "online": counts["online"],
            "offline": counts["offline"],
            "stale": counts["stale"],
            "deaf": counts["deaf"],
            "missed_uncalled": self._missed_uncalled,
            "saf_old": counts["saf_old"],
            "readers_disconnected": counts["readers_disconnected"],
            "as_of": format_rfc3339(self.clock()),
        }

    def call_list(self) -> list[Call]:
        return sorted(self.calls.values(), key=lambda call: (call.at, call.id))

    def console_state(self) -> dict[str, object]:
        """The console's own health (an extension of fleet-console.md): is the view current?"""
        return {
            "broker": {
                "up": self.broker_up,
                "since": format_rfc3339(self.broker_since),
                "detail": self.broker_detail,
            },
            "base_topic": self.model.base_topic,
            "messages": self.model.messages,
            "refused": dict(self.model.bad.counts),
            "duplicate_events": self.model.duplicates,
            "late_wills": self.model.late_wills,
            "old_states": self.model.old_states,
            "dropped_calls": self.dropped_calls,
            "commands": self.operator is not None,
        }

    # -- acting ------------------------------------------------------------------------------

    async def mark_called(self, call_id: int, note: str) -> Call:
        """Raises calls.UnknownCall for an id that is not on file."""
        call = await self.store.mark_called(call_id, note, self.clock())
        self.calls[call.id] = call
        self.hub.call(call.id)
        self._calls_changed()
        return call

    async def command(
        self, terminal_id: str, command: str, args: Mapping[str, object]
    ) -> dict[str, object]:
        """Sign, send and wait for the box's response; CommandError says why not."""
        if self.operator is None:
            raise CommandError(
                503,
                "no_operator_key",
                "this console has no operator key: start it with --operator-key FILE "
                "(an Ed25519 key whose public half is in the boxes' mqtt.operator_keys)",
            )
        if terminal_id not in self.model.boxes:
            raise CommandError(404, "not_found", f"no box {terminal_id!r} is known")
        command_id, payload = self.operator.request(command, args, int(self.clock()))
        if self.transport is None:
            raise CommandError(503, "broker_unavailable", "the broker link is not up")
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                answer = await self.transport(
                    terminal_id, command, command_id, payload, COMMAND_TIMEOUT_S
                )
        except TimeoutError:
            raise CommandError(
                504, "command_timeout", f"the box did not answer within {COMMAND_TIMEOUT_S:g} s"
            ) from None
        except CommandUnavailable as exc:
            raise CommandError(503, "broker_unavailable", str(exc) or "cannot send now") from None
        log.info("command %s to %s answered", command, terminal_id)
        return check_response(command_id, answer)

    # -- background --------------------------------------------------------------------------

    async def run(self) -> NoReturn:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._write_calls())
            tasks.create_task(self._tick())
        raise AssertionError("unreachable")  # both tasks run until cancelled

    async def settle(self) -> None:
        """Wait until every call signal fed so far is written (tests, orderly stop)."""
        await self._signals.join()

    def _publish(self, change: Change) -> None:
        if change.rows:
            self.hub.rows(change.rows)
        if change.removed:
            self.hub.removed(change.removed)
        for signal in change.calls:
            self._queue_call(signal)
        counts = self.model.summary_counts()
        if counts != self._last_counts:
            self._last_counts = counts
            self.hub.summary()

    def _queue_call(self, signal: CallSignal) -> None:
        if isinstance(signal, MissedOrder):
            if (signal.terminal_id, signal.order_id) in self._missed:
                return  # on the list already: a redelivery
            self._missed.add((signal.terminal_id, signal.order_id))
        if self._signals.qsize() >= MAX_PENDING_CALLS:
            self.dropped_calls += 1
            if self.dropped_calls == 1 or self.dropped_calls % 1000 == 0:
                log.error(
                    "%d call signals dropped: more than %d wait for the database",
                    self.dropped_calls,
                    MAX_PENDING_CALLS,
                )
            return
        self._signals.put_nowait(signal)

    async def _write_calls(self) -> NoReturn:
        while True:
            signal = await self._signals.get()
            try:
                await self._write_call(signal)
            except Exception:
                # The signal is lost, the console goes on: a disk error must not stop the view.
                # A redelivery of the same missed order may try again.
                log.exception("could not write a call for %s", signal.terminal_id)
                if isinstance(signal, MissedOrder):
                    self._missed.discard((signal.terminal_id, signal.order_id))
            finally:
                self._signals.task_done()

    async def _write_call(self, signal: CallSignal) -> None:
        now = self.clock()
        if isinstance(signal, DeafChanged):
            call = await self.store.deaf_changed(signal, now)
        else:
            call = await self.store.add_missed(signal, now)
        if call is None:
            return
        log.info("call %d: %s at %s", call.id, call.kind, call.terminal_id)
        self.calls[call.id] = call
        self.hub.call(call.id)
        self._calls_changed()

    async def _tick(self) -> NoReturn:
        while True:
            await asyncio.sleep(TICK_S)
            now = self.clock()
            change = self.model.tick(now)
            if change is not None:
                self._publish(change)
            expired = [
                call_id
                for call_id, call in self.calls.items()
                if call.called_at is not None and call.called_at < now - CALLED_KEPT_S
            ]
            for call_id in expired:
                call = self.calls.pop(call_id)
                if call.order_id is not None:
                    self._missed.discard((call.terminal_id, call.order_id))
            today = self._day(now)
            if expired or today != self._today:
                self._today = today
                self._calls_changed()

    def _count_missed_uncalled(self) -> int:
        return sum(
            1
            for call in self.calls.values()
            if call.kind == "missed_order" and not call.called and self._day(call.at) == self._today
        )

    def _calls_changed(self) -> None:
        count = self._count_missed_uncalled()
        if count != self._missed_uncalled:
            self._missed_uncalled = count
            self.hub.summary()
