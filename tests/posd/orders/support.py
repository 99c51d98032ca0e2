"""What the order tests share: posd's config for a test broker, short timings, and the hub's
events collected as they come."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from posd.mqtt import LinkSettings
from posd.orders import Tuning
from posd.runtime import EventHub
from tests.helpers.daemon import RunningDaemon, running_daemon
from tests.helpers.mosquitto import Mosquitto

WAIT_S = 15.0
# Short enough for a test, in the config's order: repeat < escalate < missed.
REPEAT_S = 0.25
ESCALATE_S = 1.0
MISSED_S = 2.5


def fast_link(settings: LinkSettings) -> LinkSettings:
    return replace(settings, backoff_initial_s=0.05, backoff_max_s=0.3, timeout_s=5.0)


FAST = Tuning(deaf_after_s=1.0, audio_check_s=0.2, link=fast_link)


def sections(
    broker: Mosquitto,
    *,
    protocol: str = "5",
    orders: Mapping[str, object] | None = None,
    audio: Mapping[str, object] | None = None,
) -> dict[str, Mapping[str, object]]:
    """running_daemon's overrides: the orders link to `broker`, aplay on ALSA's null device."""
    return {
        "mqtt": {"enabled": False, "host": broker.host, "port": broker.port, "protocol": protocol},
        "orders": {
            "enabled": True,
            "repeat_s": 60.0,
            "escalate_after_s": 120.0,
            "missed_after_s": 300.0,
            **(orders or {}),
        },
        "audio": {"output": "alsa", "device": "null", **(audio or {})},
        "logging": {"level": "info"},
    }


SHORT = {"repeat_s": REPEAT_S, "escalate_after_s": ESCALATE_S, "missed_after_s": MISSED_S}


@contextlib.asynccontextmanager
async def posd(
    tmp_path: Path,
    broker: Mosquitto,
    *,
    tuning: Tuning = FAST,
    wait_link: bool = True,
    **options: Any,
) -> AsyncIterator[RunningDaemon]:
    """posd with its order alerts on `broker`; once its orders link is up, unless told not to."""
    async with running_daemon(tmp_path, order_tuning=tuning, **sections(broker, **options)) as d:
        if wait_link:
            await d.wait_status(lambda s: s["orders"]["link"] == "up", WAIT_S)
        yield d


class Events:
    """Everything posd's hub publishes from now on, for `next` to wait on."""

    def __init__(self, hub: EventHub) -> None:
        self._subscription = hub.subscribe()
        self.seen: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for event in self._subscription:
            async with self._changed:
                self.seen.append(event)
                self._changed.notify_all()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e[kind] for e in self.seen if e["type"] == kind]

    async def next(
        self, kind: str, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = WAIT_S
    ) -> dict[str, Any]:
        """The first `kind` event (body) that `predicate` holds for, past or coming."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: any(predicate(b) for b in self.of(kind)))
        except TimeoutError:
            raise AssertionError(f"no matching {kind} event; seen: {self.seen}") from None
        return next(b for b in self.of(kind) if predicate(b))

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._subscription.aclose()


@contextlib.asynccontextmanager
async def events(d: RunningDaemon) -> AsyncIterator[Events]:
    collected = Events(d.daemon.runtime.events)
    try:
        yield collected
    finally:
        await collected.close()


def state(order_id: str, value: str) -> Callable[[dict[str, Any]], bool]:
    """`GET /v1/orders` predicate: `order_id` is listed in state `value`."""
    return lambda body: any(
        o["order_id"] == order_id and o["state"] == value for o in body["orders"]
    )


def chimes(body: dict[str, Any]) -> int:
    return int(body["alert"]["chimes"])
