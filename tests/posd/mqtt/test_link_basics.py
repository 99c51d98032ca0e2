"""The link against a real Mosquitto: connect, subscribe, receive, publish, hooks, stop."""

from __future__ import annotations

import asyncio

import pytest

from posd.mqtt import Connection, InboundMessage, MqttLink, Subscription
from tests.helpers.mosquitto import Mosquitto
from tests.posd.mqtt.peer import fast_settings, peer, running


async def test_connects_subscribes_and_receives(mosquitto: Mosquitto) -> None:
    got: asyncio.Queue[InboundMessage] = asyncio.Queue()

    async def handler(message: InboundMessage) -> None:
        got.put_nowait(message)

    link = MqttLink(
        fast_settings(mosquitto), subscriptions=[Subscription("shop/+/orders")], handler=handler
    )
    async with running(link), peer(mosquitto) as p:
        assert link.state.status == "up"
        assert link.state.connects == 1
        await p.publish("shop/M1/orders", b"hello")
        async with asyncio.timeout(10):
            message = await got.get()
        assert (message.topic, message.payload, message.qos) == ("shop/M1/orders", b"hello", 1)
        assert message.matches("shop/+/orders")
    final = link.state
    assert final.status == "down"


async def test_a_failing_handler_or_hook_is_logged_and_the_link_carries_on(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[bytes] = []
    second = asyncio.Event()

    async def handler(message: InboundMessage) -> None:
        got.append(message.payload)
        if message.payload == b"bad":
            raise ValueError("a bug in the handler")
        second.set()

    async def on_connect(connection: Connection) -> None:
        raise RuntimeError("a bug in the hook")

    link = MqttLink(
        fast_settings(mosquitto),
        subscriptions=[Subscription("t/#")],
        handler=handler,
        on_connect=on_connect,
    )
    async with running(link), peer(mosquitto) as p:
        await p.publish("t/1", "bad")
        await p.publish("t/2", "good")
        async with asyncio.timeout(10):
            await second.wait()
        assert (got, link.state.connects) == ([b"bad", b"good"], 1)  # no reconnect for it
    messages = [r.getMessage() for r in caplog.records if r.name == "posd.mqtt"]
    assert any("on_connect failed" in m for m in messages), messages
    assert any("the handler failed on a message on t/1" in m for m in messages), messages
