"""Persistent sessions and manual acknowledgement against a real Mosquitto.

The crash tests run tests/posd/mqtt/link_child.py as a subprocess and SIGKILL it: they are the
check that posd.mqtt.reach still reaches paho's manual ack (and that aiomqtt has not started
acking on its own) in the aiomqtt installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable

import pytest

from posd.mqtt import InboundMessage, MqttLink, Subscription
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.unprivileged import REPO_ROOT
from tests.posd.mqtt.peer import fast_settings, peer, running

PROTOCOLS = pytest.mark.parametrize("protocol", ["3.1.1", "5"])
TOPIC = "baedal/M00000000000001/orders"


class Child:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, timeout_s: float = 15.0) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            raw = await self.process.stdout.readline()
        if not raw:
            raise AssertionError(f"the child exited ({await self.process.wait()})")
        return raw.decode().strip()

    async def end(self, signum: int) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signum)
        async with asyncio.timeout(15):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def child(
    broker: Mosquitto, client_id: str, protocol: str, mode: str, *will_topic: str
) -> AsyncIterator[Child]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.posd.mqtt.link_child",
        str(broker.port),
        client_id,
        TOPIC,
        protocol,
        mode,
        *will_topic,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield Child(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@PROTOCOLS
async def test_messages_sent_while_the_client_process_was_stopped_all_arrive(
    mosquitto: Mosquitto, protocol: str
) -> None:
    client_id = f"posd-T0000001-orders-{protocol}"
    async with child(mosquitto, client_id, protocol, "ack") as first:
        assert await first.line() == "up 1 new"
        assert await first.end(signal.SIGTERM) == 0
    async with peer(mosquitto) as p:
        for n in (1, 2, 3):
            await p.publish(TOPIC, f"order-{n}")
    async with child(mosquitto, client_id, protocol, "ack") as second:
        assert await second.line() == "up 1 present"
        assert [await second.line() for _ in range(3)] == [
            "received order-1",
            "received order-2",
            "received order-3",
        ]


@PROTOCOLS
async def test_a_message_not_acked_before_a_crash_comes_again_and_an_acked_one_does_not(
    mosquitto: Mosquitto, protocol: str
) -> None:
    client_id = f"posd-T0000001-orders-{protocol}"
    puback = rf"Received PUBACK from {re.escape(client_id)} \(Mid: \d+"
    async with child(mosquitto, client_id, protocol, "hold") as crashing, peer(mosquitto) as p:
        assert await crashing.line() == "up 1 new"
        await p.publish(TOPIC, "order-1")
        assert await crashing.line() == "received order-1"
        mark = mosquitto.log_mark()
        assert await crashing.end(signal.SIGKILL) == -signal.SIGKILL
    assert not any(re.search(puback, line) for line in mosquitto.log_lines())

    async with child(mosquitto, client_id, protocol, "ack") as restarted:
        assert await restarted.line() == "up 1 present"
        assert await restarted.line() == "received order-1"
        await asyncio.to_thread(mosquitto.wait_for_log, puback, after=mark)
        assert await restarted.end(signal.SIGKILL) == -signal.SIGKILL

    async with child(mosquitto, client_id, protocol, "ack") as again, peer(mosquitto) as p:
        assert await again.line() == "up 1 present"
        await p.publish(TOPIC, "marker")
        # Had order-1 not been acked, the broker would send it before the marker.
        assert await again.line() == "received marker"


def _mids(lines: list[str], pattern: str) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.search(pattern, line))]


@PROTOCOLS
async def test_acks_follow_arrival_order_and_30_in_a_row_do_not_stall(
    mosquitto: Mosquitto, protocol: str
) -> None:
    settings = fast_settings(
        mosquitto,
        protocol=protocol,
        persistent_session=True,
        session_expiry_s=3600 if protocol == "5" else 0,
        manual_ack=True,
    )
    got: list[bytes] = []
    all_in = asyncio.Event()

    async def handler(message: InboundMessage) -> None:
        got.append(message.payload)
        if len(got) == 60:
            all_in.set()

    def link() -> MqttLink:
        return MqttLink(settings, subscriptions=[Subscription(TOPIC)], handler=handler)

    async with running(link()):
        pass  # the session and its subscription now wait for the link
    mark = mosquitto.log_mark()
    async with peer(mosquitto) as p:
        for n in range(30):  # queued while away: Mosquitto sends 20, then one per PUBACK
            await p.publish(TOPIC, f"m{n}")
        async with running(link()):
            for n in range(30, 60):
                await p.publish(TOPIC, f"m{n}")
            async with asyncio.timeout(20):
                await all_in.wait()
            cid = re.escape(settings.client_id)
            await asyncio.to_thread(
                mosquitto.wait_for_log,
                rf"Received PUBACK from {cid} \(Mid: \d+",
                after=mark,
                count=60,
            )
    assert got == [f"m{n}".encode() for n in range(60)]
    lines = mosquitto.log_lines(mark)
    sent = _mids(lines, rf"Sending PUBLISH to {cid} \(d0, q1, r0, m(\d+),")
    acked = _mids(lines, rf"Received PUBACK from {cid} \(Mid: (\d+)")
    assert len(sent) == 60
    assert acked == sent


async def test_a_handler_that_raises_leaves_the_message_unacked_and_it_comes_again(
    mosquitto: Mosquitto,
) -> None:
    settings = fast_settings(mosquitto, persistent_session=True, manual_ack=True)
    seen: list[bytes] = []
    done = asyncio.Event()

    async def handler(message: InboundMessage) -> None:
        seen.append(message.payload)
        if len(seen) == 1:
            raise OSError("journal: disk full")
        done.set()

    link = MqttLink(settings, subscriptions=[Subscription(TOPIC)], handler=handler)
    async with running(link), peer(mosquitto) as p:
        await p.publish(TOPIC, "order-1")
        async with asyncio.timeout(15):
            await done.wait()
        assert seen == [b"order-1", b"order-1"]
        state = link.state
        assert state.connects == 2
        assert state.last_error is not None and "could not take a message" in state.last_error


async def test_messages_queued_when_the_connection_drops_reach_the_handler_unacked(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory(persistence=True)
    settings = fast_settings(broker, persistent_session=True, manual_ack=True)
    cid = re.escape(settings.client_id)
    seen: list[bytes] = []
    first_held, release, twice = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handler(message: InboundMessage) -> None:
        seen.append(message.payload)
        if len(seen) == 1:
            first_held.set()
            await release.wait()
        if len(seen) == 6:
            twice.set()

    link = MqttLink(settings, subscriptions=[Subscription(TOPIC)], handler=handler)
    down = asyncio.Event()
    link.add_listener(lambda state: down.set() if state.status == "down" else None)
    async with running(link):
        mark = broker.log_mark()
        async with peer(broker) as p:
            for n in (1, 2, 3):
                await p.publish(TOPIC, f"order-{n}")
        async with asyncio.timeout(15):
            await first_held.wait()
        sent = rf"Sending PUBLISH to {cid} \(d0, q1, r0, m\d+, '{TOPIC}'"
        await asyncio.to_thread(broker.wait_for_log, sent, after=mark, count=3)
        await asyncio.to_thread(broker.stop)  # saves the session: three messages unacked
        async with asyncio.timeout(15):
            await down.wait()  # the state says down while the handler still holds order-1
        release.set()
        await asyncio.to_thread(broker.start)
        async with asyncio.timeout(15):
            await twice.wait()
    # Before the reconnect: order-1 (acked into a dead socket), then 2 and 3 from aiomqtt's
    # queue, never acked; after it the broker sends all three again.
    assert seen == [b"order-1", b"order-2", b"order-3", b"order-1", b"order-2", b"order-3"]


async def test_a_process_stopped_in_order_leaves_no_will_and_a_killed_one_does(
    mosquitto: Mosquitto,
) -> None:
    client_id, will = "posd-T0000001", "posd/T0000001/availability"
    async with peer(mosquitto, subscribe=[will, "marker"]) as watcher:
        async with child(mosquitto, client_id, "3.1.1", "ack", will) as stopped:
            assert await stopped.line() == "up 1 new"
            mark = mosquitto.log_mark()
            assert await stopped.end(signal.SIGTERM) == 0
        await asyncio.to_thread(
            mosquitto.wait_for_log, rf"Client {client_id} disconnected\.", after=mark
        )
        await watcher.publish("marker", "after the orderly stop")
        assert (await watcher.next()).payload == b"after the orderly stop"  # no will before it

        async with child(mosquitto, client_id, "3.1.1", "ack", will) as killed:
            assert await killed.line() == "up 1 present"
            assert await killed.end(signal.SIGKILL) == -signal.SIGKILL
        message = await watcher.next()
        assert (str(message.topic), message.payload, message.retain) == (will, b"gone", False)
