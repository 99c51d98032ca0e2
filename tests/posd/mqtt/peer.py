"""The tests' own MQTT client: a plain aiomqtt session beside the link under test, to publish
to it and to see what it published. Plus `fast_settings`, a link's settings with test timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace

import aiomqtt

from posd.mqtt import LinkSettings, LinkState, MqttLink
from tests.helpers.mosquitto import Mosquitto

_ids = itertools.count(1)


def fast_settings(broker: Mosquitto, **changes: object) -> LinkSettings:
    """Settings for `broker` with backoff and timeouts short enough for tests."""
    base = LinkSettings(
        name="test",
        host=broker.host,
        port=broker.port,
        client_id=f"posd-test-{next(_ids)}",
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        timeout_s=5.0,
        stop_timeout_s=3.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass(eq=False)
class Peer:
    client: aiomqtt.Client
    received: asyncio.Queue[aiomqtt.Message] = field(default_factory=asyncio.Queue)

    async def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> None:
        await self.client.publish(topic, payload, qos=qos, retain=retain)

    async def next(self, timeout_s: float = 10.0) -> aiomqtt.Message:
        async with asyncio.timeout(timeout_s):
            return await self.received.get()

    async def payloads(self, count: int, timeout_s: float = 10.0) -> list[bytes]:
        return [(await self.next(timeout_s)).payload for _ in range(count)]


@contextlib.asynccontextmanager
async def peer(
    broker: Mosquitto, *, subscribe: Sequence[str] = (), **client_options: object
) -> AsyncIterator[Peer]:
    """A connected client that collects what arrives on `subscribe` (QoS 1)."""
    client_options.setdefault("identifier", f"peer-{next(_ids)}")
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        **client_options,  # type: ignore[arg-type]
    ) as client:
        me = Peer(client)
        for topic_filter in subscribe:
            await client.subscribe(topic_filter, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                me.received.put_nowait(message)

        task = asyncio.create_task(collect())
        try:
            yield me
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


@contextlib.asynccontextmanager
async def running(link: MqttLink, *, wait_up: bool = True) -> AsyncIterator[MqttLink]:
    """`link.run()` as a task for the body; an orderly stop after it."""
    task = asyncio.create_task(link.run())
    try:
        if wait_up:
            async with asyncio.timeout(10):
                await link.wait_up()
        yield link
    finally:
        link.stop()
        async with asyncio.timeout(10):
            await task


async def until_state(
    link: MqttLink, predicate: Callable[[LinkState], bool], timeout_s: float = 15.0
) -> LinkState:
    """Wait (on the link's state notices) until `predicate(link.state)` holds."""
    changed = asyncio.Event()
    remove = link.add_listener(lambda _state: changed.set())
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate(link.state):
                changed.clear()
                await changed.wait()
    finally:
        remove()
    return link.state


def up_with(connects: int) -> Callable[[LinkState], bool]:
    """The predicate "up, after exactly `connects` connects"."""
    return lambda state: state.status == "up" and state.connects == connects
