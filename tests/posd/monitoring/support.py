"""What the monitoring tests share: the operations centre's side of the broker (a watcher that
records every message under the box's base topic, and an operator that signs commands), and a
box (the in-process daemon) whose monitoring link points at a fixture broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocols.command_payload import sign_command
from tests.helpers.configs import TERMINAL_ID, public_key_b64
from tests.helpers.daemon import RunningDaemon, running_daemon
from tests.helpers.mosquitto import Mosquitto

BASE = f"posd/{TERMINAL_ID}"
WAIT_S = 15.0
OPERATOR = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
STRANGER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
_ids = itertools.count(1)


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool
    expiry_s: int | None
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass(eq=False)
class Watcher:
    """A client subscribed to the box's topics (QoS 1, MQTT 5: it sees message expiry)."""

    client: aiomqtt.Client
    seen: list[Seen] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, suffix: str) -> list[Seen]:
        return [m for m in self.seen if m.topic == f"{BASE}/{suffix}"]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        prefix = f"{BASE}/event/" + (kind or "")
        return [m.json() for m in self.seen if m.topic.startswith(prefix)]

    async def wait_for(
        self,
        predicate: Callable[[Seen], bool],
        what: str,
        timeout_s: float = WAIT_S,
        since: int = 0,
    ) -> Seen:
        """The first message (from index `since`) that `predicate` takes, waiting for it."""
        position = since
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    for message in self.seen[position:]:
                        if predicate(message):
                            return message
                    position = len(self.seen)
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            shown = "\n".join(f"  {m.topic} {m.payload[:200]!r}" for m in self.seen[-30:])
            raise AssertionError(f"no {what} in {timeout_s} s; last seen:\n{shown}") from None

    async def event(
        self,
        kind: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _e: True,
        since: int = 0,
    ) -> dict[str, Any]:
        found = await self.wait_for(
            lambda m: m.topic == f"{BASE}/event/{kind}" and predicate(m.json()),
            f"{kind} event",
            since=since,
        )
        return dict(found.json())

    async def state(
        self, predicate: Callable[[dict[str, Any]], bool] = lambda _s: True, since: int = 0
    ) -> dict[str, Any]:
        found = await self.wait_for(
            lambda m: m.topic == f"{BASE}/state" and predicate(m.json()), "state", since=since
        )
        return dict(found.json())

    async def response(self, command: str, command_id: str | None) -> dict[str, Any]:
        found = await self.wait_for(
            lambda m: m.topic == f"{BASE}/response/{command}" and m.json().get("id") == command_id,
            f"response to {command} {command_id}",
        )
        return dict(found.json())

    async def request(
        self,
        command: str,
        args: Mapping[str, object] | None = None,
        *,
        key: Ed25519PrivateKey = OPERATOR,
        ts: int | None = None,
        command_id: str | None = None,
    ) -> str:
        """Sign and publish a request; its id."""
        command_id = command_id or uuid.uuid4().hex
        payload = sign_command(
            command, command_id, int(time.time()) if ts is None else ts, args or {}, key
        )
        await self.client.publish(f"{BASE}/request/{command}", payload, qos=1)
        return command_id

    async def raw_request(self, command: str, payload: bytes, *, retain: bool = False) -> None:
        await self.client.publish(f"{BASE}/request/{command}", payload, qos=1, retain=retain)


@contextlib.asynccontextmanager
async def watching(
    broker: Mosquitto,
    *,
    subscribe: str = f"{BASE}/#",
    session: str | None = None,
    **client_options: Any,
) -> AsyncIterator[Watcher]:
    """`session`: a persistent session of that client id (on a broker with persistence, what
    comes while the watcher is away waits for it). `client_options`: more aiomqtt.Client
    arguments (TLS, credentials)."""
    properties = None
    if session is not None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
    client_options.setdefault("hostname", broker.host)
    async with aiomqtt.Client(
        port=broker.port,
        identifier=session or f"ops-centre-{next(_ids)}",
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=session is None,
        properties=properties,
        **client_options,
    ) as client:
        watcher = Watcher(client)
        await client.subscribe(subscribe, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                props = message.properties
                expiry = getattr(props, "MessageExpiryInterval", None) if props else None
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                watcher.seen.append(
                    Seen(str(message.topic), bytes(payload), message.retain, expiry, time.time())
                )
                watcher.changed.set()

        task = asyncio.create_task(collect())
        try:
            yield watcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


def mqtt_section(broker: Mosquitto, **more: object) -> dict[str, object]:
    return {
        "enabled": True,
        "host": broker.host,
        "port": broker.port,
        "operator_keys": [public_key_b64(OPERATOR)],
        **more,
    }


@contextlib.asynccontextmanager
async def box(
    tmp_path: Path,
    broker: Mosquitto,
    *,
    mqtt: Mapping[str, object] | None = None,
    **options: Any,
) -> AsyncIterator[RunningDaemon]:
    """The in-process daemon with its monitoring link to `broker` (see running_daemon)."""
    async with running_daemon(
        tmp_path, mqtt=mqtt_section(broker, **(mqtt or {})), **options
    ) as daemon:
        yield daemon


def monitoring(d: RunningDaemon) -> Any:
    """The running Monitoring component of a box."""
    component = d.daemon.supervisor.component("monitoring")
    return getattr(component, "inner", component)
