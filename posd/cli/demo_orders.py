"""The demo's 배달서구 step: a real Mosquitto started for the demo, the platform played by
posd.sim's OrderFeed, the chime on ALSA's null device (or the sound card, where the box has
one), and the POS acknowledging over the local API; then a second order nobody takes, until it
is missed and the `order` event the call centre acts on goes out. Short timers make it quick.

The broker is the demo's one (posd.cli.demo_broker), which the monitoring link shares;
`orders_config` is the demo config's [orders] and [audio]; `order_steps` plays the step once
posd serves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from posd.api import ApiClient, ApiRequestError, ApiUnavailable
from posd.sim import OrderFeed

REPEAT_S = 1.0
ESCALATE_AFTER_S = 2.0
MISSED_AFTER_S = 4.0
STEP_TIMEOUT_S = 20.0
_POLL_S = 0.05


def sound_card() -> bool:
    try:
        cards = Path("/proc/asound/cards").read_text(errors="replace")
    except OSError:
        return False
    return bool(cards.strip()) and "no soundcards" not in cards


def orders_config(broker_port: int | None) -> str:
    """The demo config's [orders] and [audio]: the orders link to the demo's broker (the
    [mqtt] one; none: orders off), the chime on the sound card, or on ALSA's null device."""
    device = "" if sound_card() else "null"
    return f"""
[orders]
enabled = {"true" if broker_port else "false"}
repeat_s = {REPEAT_S}
escalate_after_s = {ESCALATE_AFTER_S}
missed_after_s = {MISSED_AFTER_S}

[audio]
output = "alsa"
device = "{device}"
"""


class Steps(Protocol):
    """What the demo's shift keeps: each step's result, and the line printer."""

    @property
    def results(self) -> list[tuple[str, bool]]: ...

    @property
    def say(self) -> Callable[[str], None]: ...

    def pad(self, text: str, width: int) -> str:
        """`text` in `width` terminal columns (Hangul takes two)."""
        ...


def step_line(shift: Steps, title: str, ok: bool, text: str) -> None:
    """A step's result, recorded and printed as every step of the shift is."""
    shift.results.append((title, ok))
    mark = "ok  " if ok else "FAIL"
    shift.say(f"{mark} {len(shift.results):>2}. {shift.pad(title, 30)} {text}")


async def _until(
    api: ApiClient, what: str, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while True:
                with contextlib.suppress(ApiUnavailable, ApiRequestError):
                    body = await api.orders()
                    if predicate(body):
                        return body
                await asyncio.sleep(_POLL_S)
    except TimeoutError:
        raise StepFailed(f"{what} did not happen in {STEP_TIMEOUT_S:.0f} s") from None


class StepFailed(Exception):
    pass


def _order(body: dict[str, Any], order_id: str) -> dict[str, Any]:
    return next((o for o in body["orders"] if o["order_id"] == order_id), {})


async def order_steps(shift: Steps, api: ApiClient, broker_port: int | None) -> None:
    """The 배달서구 steps; each failure is a FAIL line, never an exception out of here."""
    title = "배달서구 order arrives"
    if broker_port is None:
        step_line(shift, title, False, "no MQTT broker: `apt-get install mosquitto`")
        return
    try:
        async with OrderFeed("127.0.0.1", broker_port) as platform:
            await _steps(shift, api, platform)
    except StepFailed as exc:
        step_line(shift, "배달서구 orders", False, str(exc))
    except (OSError, ApiUnavailable, ApiRequestError) as exc:
        step_line(shift, "배달서구 orders", False, f"{type(exc).__name__}: {exc}")


async def _steps(shift: Steps, api: ApiClient, platform: OrderFeed) -> None:
    await _until(api, "the orders link coming up", lambda b: b["link"] == "up")
    first = platform.order()
    await platform.send(first)
    order_id = first["order_id"]
    body = await _until(
        api, f"order {order_id} chiming", lambda b: b["alert"] and b["alert"]["chimes"] >= 1
    )
    shown = _order(body, order_id)
    where = "the sound card" if sound_card() else "ALSA's null device"
    step_line(
        shift,
        "배달서구 order arrives",
        shown.get("state") == "alerting",
        f"{order_id}  {len(shown.get('items', []))} items  {shown.get('total', 0):,} won  "
        f"alerting, chime on {body['alert']['output']} ({where})",
    )
    acked = await api.acknowledge_order(order_id)
    try:
        status = await platform.wait_status(order_id, "acknowledged", STEP_TIMEOUT_S)
    except TimeoutError:
        status = {}
    quiet = await _until(api, "the chime stopping", lambda b: b["alert"]["waiting"] == 0)
    step_line(
        shift,
        "the POS acknowledges it",
        acked["state"] == "acknowledged" and status.get("state") == "acknowledged",
        f"{order_id}  acknowledged after {acked['alerting_s']:.1f} s, "
        f"{quiet['alert']['chimes']} chime(s); the platform sees it acknowledged",
    )

    second = platform.order()
    missed_id = second["order_id"]
    async with api.events() as stream:
        await platform.send(second)
        event: dict[str, Any] = {}
        try:
            async with asyncio.timeout(MISSED_AFTER_S + STEP_TIMEOUT_S):
                async for each in stream:
                    order = each.get("order")
                    if isinstance(order, dict) and order.get("state") == "missed":
                        event = order
                        break
        except TimeoutError:
            raise StepFailed(f"order {missed_id} was never missed") from None
    try:
        await platform.wait_status(missed_id, "missed", STEP_TIMEOUT_S)
        platform_saw = True
    except TimeoutError:
        platform_saw = False
    body = await api.orders()
    step_line(
        shift,
        "an order nobody takes",
        event.get("order_id") == missed_id and platform_saw and body["missed_today"] == 1,
        f"{missed_id}  missed after {event.get('alerting_s')} s (louder after "
        f'{ESCALATE_AFTER_S:g} s); order event "missed" for the call centre',
    )
