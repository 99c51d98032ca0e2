"""The demo's operations centre, on the demo's broker (posd.cli.demo_broker): a line for every
monitoring event posd publishes there (the payments', the devices', the orders' too), a signed
command, and as the shift's last step the box's retained availability and state as the
operations centre sees them (mqtt.md).

`mqtt_config` is the demo config's [mqtt]; `ops_centre_step` the last step.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from posd.api import ApiClient, ApiRequestError, ApiUnavailable
from posd.cli.demo_orders import Steps, step_line
from posd.cli.status import render_status
from posd.mqtt import InboundMessage, LinkDown, LinkSettings, MaybeSent, MqttLink, Subscription
from protocols.command_payload import sign_command

WAIT_S: Final = 10.0
# The demo's link to its own broker comes back at once after a hiccup.
DEMO_MONITORING_LINK: Final[Mapping[str, object]] = {
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.5,
    "stop_timeout_s": 2.0,
}


def mqtt_config(broker_port: int | None, operator_public: str) -> str:
    """The demo config's [mqtt]: monitoring on the demo's broker (which the orders link
    shares), commands signed by the demo operator's key; without a broker, monitoring off."""
    if broker_port is None:
        return "\n[mqtt]\nenabled = false\n"
    return f"""
[mqtt]
enabled = true
host = "127.0.0.1"
port = {broker_port}
operator_keys = ["{operator_public}"]
"""


def operator_key() -> tuple[Ed25519PrivateKey, str]:
    """The demo operator's key, and its public half as `mqtt.operator_keys` takes it."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return key, base64.b64encode(raw).decode()


def describe_event(kind: str, event: Mapping[str, Any]) -> str:
    """One monitoring event as a line: what the operations centre's screen would show."""
    get = event.get
    match kind:
        case "payment":
            last4 = get("card_last4") or get("account_last4")
            shown = f" …{last4}" if last4 else ""
            reason = f" ({get('decline_reason')})" if get("decline_reason") else ""
            return (
                f"{get('payment_id')} {get('state')}{reason} {get('charged') or 0:,} won "
                f"{get('entry_mode') or get('method')}{shown}"
            )
        case "device":
            return f"{get('device')} {get('state')}: {get('detail')}"
        case "ledger":
            return f"link {get('link')}: {get('detail')}"
        case "saf":
            return (
                f"queue {get('threshold') or ''} {get('pending')} pending, "
                f"{get('pending_amount') or 0:,} won"
            ).replace("  ", " ")
        case "config":
            return f"{get('result')} {str(get('config_sha256'))[:12]}"
        case "order":
            # A deaf or hearing event is about the shop: no order.
            about = get("order_id") or "the shop"
            more = f": {get('reason')}" if get("reason") else ""
            ended = get("state") in ("acknowledged", "missed")
            after = f" after {get('alerting_s')} s" if ended else ""
            return f"{about} {get('state')}{after}{more}"
    return f"{get('what')}: {get('detail')}"


class OpsCentre:
    """The operations centre's side of the demo's broker."""

    def __init__(self, port: int, base: str, key: Ed25519PrivateKey, say: Callable[[str], None]):
        self.port = port
        self._base = base
        self._key = key
        self._say = say
        self.events = 0
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._seen = asyncio.Event()
        self.link = MqttLink(
            self._settings("demo-ops-centre"),
            subscriptions=[
                Subscription(f"{base}/event/#"),
                Subscription(f"{base}/response/+"),
                Subscription(f"{base}/state"),
            ],
            handler=self._on_message,
        )
        self.state: dict[str, Any] = {}

    def _settings(self, client_id: str) -> LinkSettings:
        return LinkSettings(
            name="ops-centre",
            host="127.0.0.1",
            port=self.port,
            client_id=client_id,
            protocol="5",
            backoff_initial_s=0.05,
            backoff_max_s=0.5,
            stop_timeout_s=2.0,
        )

    async def _on_message(self, message: InboundMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return
        level = message.topic[len(self._base) + 1 :]
        if level.startswith("event/"):
            self.events += 1
            self._seen.set()
            kind = level.removeprefix("event/")
            self._say(f"     mqtt  {kind:<8} {describe_event(kind, payload)}")
        elif level == "state":
            self.state = payload
            self._seen.set()
        elif level.startswith("response/"):
            waiting = self._answers.pop(str(payload.get("id")), None)
            if waiting is not None and not waiting.done():
                waiting.set_result(payload)

    async def caught_up(self, published: Callable[[], int]) -> bool:
        """Whether every event posd has published so far has arrived (waiting for them)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_S):
                while self.events < published():
                    self._seen.clear()
                    await self._seen.wait()
        return self.events >= published()

    async def state_like(self, local: Mapping[str, Any]) -> bool:
        """Whether a state saying what `local` says (the API's, now) arrives (waiting for it:
        changes are published at most once a second)."""
        keys = ("payments_today", "saf", "ledger")

        def same() -> bool:
            return all(self.state.get(k) == local.get(k) for k in keys)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_S):
                while not same():
                    self._seen.clear()
                    await self._seen.wait()
        return same()

    async def command(self, name: str, args: Mapping[str, object]) -> dict[str, Any]:
        command_id = uuid.uuid4().hex
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[command_id] = answer
        payload = sign_command(name, command_id, int(time.time()), args, self._key)
        await self.link.send(f"{self._base}/request/{name}", payload)
        async with asyncio.timeout(WAIT_S):
            return await answer

    async def retained(self) -> tuple[bytes, dict[str, Any]]:
        """The box's retained availability and state, as a consumer that comes now gets them."""
        got: dict[str, bytes] = {}
        both = asyncio.Event()

        async def take(message: InboundMessage) -> None:
            got[message.topic.rsplit("/", 1)[-1]] = message.payload
            if len(got) == 2:
                both.set()

        late = MqttLink(
            self._settings("demo-ops-centre-late"),
            subscriptions=[
                Subscription(f"{self._base}/availability"),
                Subscription(f"{self._base}/state"),
            ],
            handler=take,
        )
        task = asyncio.create_task(late.run())
        try:
            async with asyncio.timeout(WAIT_S):
                await both.wait()
        finally:
            late.stop()
            await task
        return got["availability"], json.loads(got["state"])


async def show_what_the_ops_centre_saw(
    ops: OpsCentre,
    published: Callable[[], int],
    local_state: Mapping[str, Any],
    say: Callable[[str], None],
) -> tuple[bool, str]:
    """The demo's last step: every event arrived, a signed command was answered, and the
    retained state is the box's own. (behaved, what was seen)"""
    arrived = await ops.caught_up(published) and await ops.state_like(local_state)
    answer = await ops.command("diagnostics", {})
    result = answer.get("result") or {}
    devices = result.get("devices", {}) if isinstance(result, dict) else {}
    reader = devices.get("card_reader", {})
    say(
        "     mqtt  signed diagnostics command answered "
        f"{'ok' if answer.get('ok') else answer.get('error')}: reader {reader.get('state')}, "
        f"{reader.get('link_stats', {}).get('frames_in', 0)} frames in, "
        f"warnings logged: {len(result.get('last_errors', []))}"
    )
    availability, state = await ops.retained()
    say(f"---- the box as the operations centre sees it (retained): {availability.decode()} ----")
    for line in render_status(state).splitlines():
        say(f"     {line}")
    behaved = (
        arrived
        and answer.get("ok") is True
        and availability == b"online"
        and state.get("boot_id") == local_state.get("boot_id")
    )
    return behaved, f"{ops.events} events, {availability.decode()}, state of {state.get('ts')}"


async def ops_centre_step(
    shift: Steps,
    api: ApiClient,
    ops: OpsCentre | None,
    published: Callable[[], int] | None,
) -> None:
    """The shift's last step: the operations centre saw every event posd published
    (`published`: how many, None when posd runs no monitoring), had a signed command
    answered, and finds the box's own state retained. A failure is a FAIL line."""
    title = "operations centre"
    if ops is None or published is None:
        step_line(shift, title, False, "no MQTT broker: `apt-get install mosquitto`")
        return
    try:
        local = await api.status()
        behaved, note = await show_what_the_ops_centre_saw(ops, published, local, shift.say)
    except (TimeoutError, LinkDown, MaybeSent) as exc:
        step_line(shift, title, False, f"the demo's broker: {exc or 'no answer in time'}")
    except (ApiUnavailable, ApiRequestError) as exc:
        step_line(shift, title, False, f"the local API: {exc}")
    else:
        step_line(shift, title, behaved, note)
