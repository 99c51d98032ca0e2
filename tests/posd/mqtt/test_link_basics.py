"""The link against a real Mosquitto: connect, subscribe, receive, publish, hooks, stop."""

from __future__ import annotations

import asyncio

from posd.mqtt import InboundMessage, MqttLink, Subscription
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
