"""What posd.mqtt.reach assumes of aiomqtt's and paho's insides, checked without a broker.

The behaviour is checked against Mosquitto elsewhere (the crash-before-ack, re-entry and TLS
tests); these name the attribute that moved when an upgrade of aiomqtt breaks them.
"""

from __future__ import annotations

import asyncio
import socket

import aiomqtt
import paho.mqtt.client as paho

from posd.mqtt import LinkSettings
from posd.mqtt.reach import _SocketGuard, build

SETTINGS = LinkSettings(name="t", host="127.0.0.1", port=1883, client_id="posd-T1", manual_ack=True)


async def test_the_client_has_what_reach_uses() -> None:
    reached = build(SETTINGS, None, pending_calls=10)
    client = reached.client
    assert isinstance(client._client, paho.Client)
    assert client._client._manual_ack is True  # set before any __aenter__
    for name in ("_connected", "_disconnected"):
        assert isinstance(getattr(client, name), asyncio.Future)
    assert isinstance(client._queue, asyncio.Queue)
    assert callable(client._client.ack)
    assert isinstance(client._loop, _SocketGuard)


async def test_mqtt_5_persistent_sessions_never_start_clean() -> None:
    settings = LinkSettings(
        name="t",
        host="127.0.0.1",
        port=1883,
        client_id="posd-T1",
        protocol="5",
        persistent_session=True,
        session_expiry_s=86_400,
    )
    client = build(settings, None, pending_calls=10).client
    assert client._clean_start is False
    assert client._properties is not None
    assert getattr(client._properties, "SessionExpiryInterval", None) == 86_400
    assert client._client._protocol == paho.MQTTv5


async def test_a_3_1_1_persistent_session_turns_clean_session_off() -> None:
    settings = LinkSettings(
        name="t", host="127.0.0.1", port=1883, client_id="posd-T1", persistent_session=True
    )
    client = build(settings, None, pending_calls=10).client
    assert client._client._clean_session is False


async def test_the_socket_guard_lets_only_pahos_current_socket_through() -> None:
    loop = asyncio.get_running_loop()
    client = aiomqtt.Client("127.0.0.1", identifier="x")
    guard = _SocketGuard(loop, client._client)
    calls: list[str] = []
    left, right = socket.socketpair()
    with left, right:
        guard.add_writer(left.fileno(), lambda: calls.append("write"))  # paho has no socket
        guard.add_reader(left.fileno(), lambda: calls.append("read"))
        assert not loop.remove_writer(left.fileno())
        assert not loop.remove_reader(left.fileno())
        client._client._sock = left  # as paho's connect leaves it
        try:
            guard.add_writer(left.fileno(), lambda: calls.append("write"))
            assert loop.remove_writer(left.fileno())
            guard.add_writer(right.fileno(), lambda: calls.append("write"))  # not paho's
            assert not loop.remove_writer(right.fileno())
        finally:
            client._client._sock = None
    assert guard.call_soon_threadsafe == loop.call_soon_threadsafe  # the rest is the loop's
