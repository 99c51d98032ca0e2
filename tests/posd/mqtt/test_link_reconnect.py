"""The link across broker restarts: resubscribed, on_connect every time, the outbox kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from posd.mqtt import Connection, InboundMessage, MqttLink, Subscription
from tests.helpers.mosquitto import Mosquitto
from tests.posd.mqtt.peer import fast_settings, peer, running, until_state, up_with


async def test_after_a_broker_restart_it_resubscribes_and_messages_flow_again(
    mosquitto: Mosquitto,
) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    connects: list[Connection] = []

    async def handler(message: InboundMessage) -> None:
        got.put_nowait(message.payload)

    async def on_connect(connection: Connection) -> None:
        connects.append(connection)

    link = MqttLink(
        fast_settings(mosquitto),
        subscriptions=[Subscription("t/a"), Subscription("t/b", qos=0)],
        handler=handler,
        on_connect=on_connect,
    )
    errors: set[str] = set()
    link.add_listener(lambda state: errors.add(state.last_error) if state.last_error else None)
    async with running(link):
        for round_ in (1, 2, 3):
            async with peer(mosquitto) as p:
                await p.publish("t/a", f"a{round_}")
                await p.publish("t/b", f"b{round_}", qos=0)
                async with asyncio.timeout(10):
                    assert {await got.get(), await got.get()} == {
                        f"a{round_}".encode(),
                        f"b{round_}".encode(),
                    }
            if round_ < 3:
                await asyncio.to_thread(mosquitto.restart)  # no persistence: no session either
                await until_state(link, up_with(round_ + 1))
    assert [c.connects for c in connects] == [1, 2, 3]
    assert all(not c.session_present for c in connects)
    assert any("closed (the broker stopped" in error for error in errors), errors


async def test_publish_while_the_broker_is_down_returns_at_once_and_is_sent_after(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory(persistence=True)
    async with peer(broker, subscribe=["box/#"], identifier="watcher", clean_session=False):
        pass  # the watcher's session keeps what comes for it while it is away
    dropped: list[int] = []

    async def on_connect(connection: Connection) -> None:
        dropped.append(connection.dropped)

    link = MqttLink(fast_settings(broker, outbox_size=3), on_connect=on_connect)
    async with running(link):
        await asyncio.to_thread(broker.stop)
        await until_state(link, lambda s: s.status == "down")
        for i in range(5):
            link.publish("box/event", f"e{i}")  # synchronous: it cannot wait for the broker
        assert (link.state.queued, link.state.dropped) == (3, 2)
        await asyncio.to_thread(broker.start)
        async with asyncio.timeout(15):
            await link.flushed()
        assert (link.state.queued, link.state.dropped, link.state.unconfirmed) == (0, 2, 0)
    assert dropped == [0, 2]
    async with peer(broker, identifier="watcher", clean_session=False) as p:
        assert await p.payloads(3) == [b"e2", b"e3", b"e4"]


async def test_a_broker_that_stops_answering_is_noticed_by_keepalive_and_rejoined(
    mosquitto: Mosquitto,
) -> None:
    link = MqttLink(fast_settings(mosquitto, keepalive_s=1, timeout_s=2.0))
    async with running(link):
        mosquitto.pause()  # the socket stays open: only the missing PINGRESP tells
        try:
            state = await until_state(link, lambda s: s.status == "down")
        finally:
            mosquitto.resume()
        assert state.last_error is not None and "Keep alive timeout" in state.last_error
        await until_state(link, up_with(2))
