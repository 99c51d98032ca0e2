"""The console's broker side: `MqttFleetLink`, the FleetLink of `posd fleet serve` on posd.mqtt.

One `MqttLink` (a clean session; the client id is unique per console instance, so two consoles
never take each other's session over) subscribes, after every connect, to

- `{base}/+/availability`, `{base}/+/state`, `{base}/+/event/#` at QoS 0: the snapshot comes as
  retained messages in one burst right after SUBACK, and a broker drops what it cannot queue
  for a slow subscriber (Mosquitto's `max_queued_messages`, 1000 by default, counts queued QoS 0
  packets too: measured on Mosquitto 2.0.11 with 10,000 retained states of 1.1 KB, a QoS 1
  subscription received 1,020 and a QoS 0 one about 5,000; with `max_queued_messages 20000`
  both received all). QoS 0 costs no PUBACK per message and gets the most through; the README
  says which broker settings a fleet needs. Availability comes first, alone: its burst is small;
- `{base}/+/response/#` at QoS 1: the answers to this console's commands, matched by `id`.

Every message goes to `console.feed(topic, payload, retain, time.time())`: the retain flag
splits the snapshot (the broker's current values) from live messages. The link's status goes
to `console.set_broker`. A command (`console.transport`) is published at QoS 1 on
`{base}/{terminal_id}/request/{command}` and waits for the response whose `id` is its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Final

from posd.fleet.cli import ServeOptions
from posd.fleet.commands import MAX_RESPONSE_BYTES, CommandUnavailable
from posd.fleet.console import Console
from posd.fleet.payloads import subscriptions
from posd.mqtt import (
    InboundMessage,
    LinkDown,
    LinkSettings,
    LinkState,
    MaybeSent,
    MqttLink,
    Subscription,
)

log = logging.getLogger(__package__)

CLIENT_ID_PREFIX: Final = "posd-fleet-"
KEEPALIVE_S: Final = 30
# Commands waiting for their response at once; more are refused (each holds a future).
MAX_PENDING_COMMANDS: Final = 256


def console_client_id() -> str:
    """Unique per console instance: a second console (a spare, a laptop) must not take the
    first one's connection over, which a fixed id would do at every connect."""
    return CLIENT_ID_PREFIX + secrets.token_hex(6)


def link_settings(options: ServeOptions, client_id: str | None = None) -> LinkSettings:
    return LinkSettings(
        name="fleet",
        host=options.broker_host,
        port=options.broker_port,
        client_id=client_id or console_client_id(),
        tls=options.tls,
        ca_file=options.tls_ca,
        cert_file=options.tls_cert,
        key_file=options.tls_key,
        username=options.username,
        password=options.password,
        keepalive_s=KEEPALIVE_S,
    )


class MqttFleetLink:
    """`posd fleet serve`'s FleetLink (posd.fleet.cli) over one posd.mqtt link."""

    def __init__(self, settings: LinkSettings, base_topic: str) -> None:
        self.settings = settings
        self.base_topic = base_topic
        self._prefix = base_topic + "/"
        availability, state, events = subscriptions(base_topic)
        self.link = MqttLink(
            settings,
            subscriptions=[
                Subscription(availability, 0),
                Subscription(state, 0),
                Subscription(events, 0),
                Subscription(f"{base_topic}/+/response/#", 1),
            ],
            handler=self._message,
        )
        self._console: Console | None = None
        self._pending: dict[str, tuple[str, str, asyncio.Future[bytes]]] = {}

    @classmethod
    def from_options(cls, options: ServeOptions) -> MqttFleetLink:
        """The LinkFactory `posd fleet serve` passes to `posd.fleet.run`."""
        return cls(link_settings(options), options.base_topic)

    async def run(self, console: Console) -> None:
        self._console = console
        console.transport = self.send_command
        remove = self.link.add_listener(self._link_changed)
        try:
            await self.link.run()
        finally:
            remove()
            console.transport = None
            console.set_broker(False, "the console is stopping")
            for _, _, future in self._pending.values():
                future.cancel()

    def _link_changed(self, state: LinkState) -> None:
        if self._console is not None:
            up = state.status == "up"
            self._console.set_broker(up, None if up else state.last_error)

    async def _message(self, message: InboundMessage) -> None:
        topic = message.topic
        if self._response(topic, message.payload):
            return
        if self._console is not None:
            self._console.feed(topic, message.payload, message.retain, time.time())

    def _response(self, topic: str, payload: bytes) -> bool:
        """Whether the topic is a response; resolves the command waiting for it."""
        if not topic.startswith(self._prefix):
            return False
        levels = topic[len(self._prefix) :].split("/")
        if len(levels) != 3 or levels[1] != "response":
            return False
        if not self._pending or len(payload) > MAX_RESPONSE_BYTES:
            return True
        try:
            answer = json.loads(payload)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return True  # not ours to judge: no waiting command can be matched
        command_id = answer.get("id") if isinstance(answer, dict) else None
        waiting = self._pending.get(command_id) if isinstance(command_id, str) else None
        if waiting is None:
            return True  # another console's, or one that came after its wait ended
        terminal_id, command, future = waiting
        if (levels[0], levels[2]) == (terminal_id, command) and not future.done():
            future.set_result(payload)
        return True

    async def send_command(
        self, terminal_id: str, command: str, command_id: str, payload: bytes, timeout_s: float
    ) -> bytes:
        """commands.CommandTransport: publish the request, wait for the matching response."""
        if len(self._pending) >= MAX_PENDING_COMMANDS:
            raise CommandUnavailable(f"{MAX_PENDING_COMMANDS} commands are already waiting")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = (terminal_id, command, future)
        try:
            async with asyncio.timeout(timeout_s):
                topic = f"{self.base_topic}/{terminal_id}/request/{command}"
                try:
                    await self.link.send(topic, payload, qos=1)
                except LinkDown as exc:
                    raise CommandUnavailable(str(exc)) from None
                except MaybeSent:
                    log.info(
                        "command %s to %s: no PUBACK; waiting for its answer", command, terminal_id
                    )
                return await future
        finally:
            del self._pending[command_id]
