"""Publishing (outbox and send), the orderly stop and its hooks, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest

from posd.mqtt import (
    Connection,
    InboundMessage,
    LinkDown,
    LinkState,
    MaybeSent,
    MqttLink,
    Subscription,
    Will,
)
from tests.helpers.mosquitto import Mosquitto
from tests.posd.mqtt.peer import fast_settings, peer, running, until_state, up_with

AVAILABILITY = "posd/T0000001/availability"


def _availability_link(broker: Mosquitto) -> MqttLink:
    link: MqttLink

    async def online(connection: Connection) -> None:
        await link.send(AVAILABILITY, b"online", retain=True)

    async def offline() -> None:
        await link.send(AVAILABILITY, b"offline", retain=True)

    link = MqttLink(
        fast_settings(broker, will=Will(AVAILABILITY, b"will")),
        on_connect=online,
        on_stop=offline,
    )
    return link


@pytest.mark.parametrize("how", ["stop", "cancel"])
async def test_an_orderly_stop_drains_runs_on_stop_and_sends_no_will(
    mosquitto: Mosquitto, how: str
) -> None:
    link = _availability_link(mosquitto)
    async with peer(mosquitto, subscribe=[AVAILABILITY, "box/#"]) as watcher:
        task = asyncio.create_task(link.run())
        assert (await watcher.next()).payload == b"online"
        for n in range(5):
            link.publish("box/event", f"e{n}")
        mark = mosquitto.log_mark()
        if how == "stop":
            link.stop()
            await asyncio.wait_for(task, 10)
        else:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        assert await watcher.payloads(6) == [b"e0", b"e1", b"e2", b"e3", b"e4", b"offline"]
        cid = re.escape(link.settings.client_id)
        await asyncio.to_thread(mosquitto.wait_for_log, rf"Client {cid} disconnected\.", after=mark)
        await watcher.publish("box/marker", "after")
        assert (await watcher.next()).payload == b"after"  # and no will before it
    assert link.state.status == "down"
    async with peer(mosquitto, subscribe=[AVAILABILITY]) as late:
        retained = await late.next()
        assert (retained.payload, retained.retain) == (b"offline", True)


async def test_online_is_sent_again_on_every_connect(mosquitto: Mosquitto) -> None:
    link = _availability_link(mosquitto)
    async with running(link):
        for connects in (2, 3):
            await asyncio.to_thread(mosquitto.restart)  # a broker that forgot everything
            await until_state(link, up_with(connects))
            async with peer(mosquitto, subscribe=[AVAILABILITY]) as late:
                retained = await late.next()
                assert (retained.payload, retained.retain) == (b"online", True)


async def test_send_without_a_connection_is_link_down(mosquitto: Mosquitto) -> None:
    link = MqttLink(fast_settings(mosquitto))
    with pytest.raises(LinkDown):
        await link.send("t", b"x")
    async with running(link):
        await asyncio.to_thread(mosquitto.stop)
        await until_state(link, lambda s: s.status == "down")
        with pytest.raises(LinkDown):
            await link.send("t", b"x")


async def test_a_publish_whose_puback_does_not_come_is_maybe_sent_and_never_sent_twice(
    mosquitto: Mosquitto,
) -> None:
    link = MqttLink(fast_settings(mosquitto, timeout_s=1.0))
    async with running(link), peer(mosquitto, subscribe=["box/#"]) as watcher:
        mosquitto.pause()
        try:
            with pytest.raises(MaybeSent):
                await link.send("box/sent", b"by send")
            link.publish("box/queued", b"by publish")
            await until_state(link, lambda s: s.unconfirmed == 2)
            assert link.state.queued == 0
        finally:
            mosquitto.resume()
        # Both were on their way: they arrive, once each, and the link sends neither again.
        assert sorted(await watcher.payloads(2)) == [b"by publish", b"by send"]
        await link.send("box/marker", b"marker")
        assert (await watcher.next()).payload == b"marker"


async def test_a_message_expiry_goes_out_under_mqtt_5(mosquitto: Mosquitto) -> None:
    import aiomqtt

    link = MqttLink(fast_settings(mosquitto, protocol="5"))
    async with running(link):
        link.publish("box/state", b"{}", retain=True, expiry_s=3600)
        await link.flushed()
    async with peer(
        mosquitto, subscribe=["box/state"], protocol=aiomqtt.ProtocolVersion.V5
    ) as late:
        message = await late.next()
    assert message.properties is not None
    expiry = getattr(message.properties, "MessageExpiryInterval", None)
    assert expiry is not None and 3590 <= expiry <= 3600


async def test_a_subscription_the_broker_refuses_fails_the_connection_and_is_retried(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory(deny_subscribe=["forbidden/#"])
    seen: list[LinkState] = []

    async def handler(message: InboundMessage) -> None:
        pass

    link = MqttLink(
        fast_settings(broker),
        subscriptions=[Subscription("allowed/x"), Subscription("forbidden/x")],
        handler=handler,
    )
    link.add_listener(lambda s: seen.append(s) if s.last_error else None)
    async with running(link, wait_up=False):
        await until_state(link, lambda s: len(seen) >= 3)
    error = seen[-1].last_error
    assert error is not None and "refused the subscription to 'forbidden/x'" in error, error
    assert all(s.status == "down" for s in seen)
