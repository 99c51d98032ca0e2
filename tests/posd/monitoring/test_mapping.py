"""Without a broker: hub events mapped to mqtt.md's events, the state builder's object from its
providers, the hooks where events arise, the SAF thresholds, Home Assistant discovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from posd.config import load_config
from posd.monitoring import (
    ComponentWatch,
    DeviceReporter,
    LedgerReporter,
    SafThresholds,
    StateBuilder,
    discovery_payload,
    discovery_topic,
    mqtt_event,
    saf_level,
    same_state,
)
from posd.runtime import Backoff, EventHub, Notifier, Runtime, Supervisor
from tests.helpers.configs import write_config
from tests.helpers.spec_objects import (
    STATE_DEVICE_KEYS,
    STATE_EXTRA_KEYS,
    STATE_OBJECT_KEYS,
    STATE_SECTION_KEYS,
)

NOW = 1_796_000_000.0
# A Luhn-valid card number: what the log redaction (and so every payload's free text) masks.
GOOD_CARD = "4111111111111111"


def payment_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "payment_id": "p-1",
        "state": "approved",
        "amount": 10_000,
        "discount": 500,
        "charged": 9_500,
        "method": "card",
        "entry_mode": "chip",
        "card_last4": "0001",
        "stan": 17,
        "rrn": "123456789012",
        "auth_code": "A1B2C3",
        "response_code": "00",
        "decline_reason": None,
        "offline": False,
        "created_at": "2026-12-02T09:00:00Z",
        "updated_at": "2026-12-02T09:00:01Z",
    }
    body.update(changes)
    return body


def test_a_payment_event_takes_the_masked_fields_of_mqtt_md_only() -> None:
    mapped = mqtt_event(
        {"seq": 7, "type": "payment", "payment": payment_body(pan=GOOD_CARD)}, "b00t", NOW
    )
    assert mapped is not None
    kind, payload = mapped
    assert kind == "payment"
    assert payload == {
        "id": "b00t-7",
        "ts": "2026-11-30T00:53:20Z",
        "kind": "payment",
        "payment_id": "p-1",
        "state": "approved",
        "amount": 10_000,
        "charged": 9_500,
        "method": "card",
        "entry_mode": "chip",
        "card_last4": "0001",
        "response_code": "00",
        "decline_reason": None,
        "offline": False,
    }
    qr = mqtt_event(
        {
            "seq": 8,
            "type": "payment",
            "payment": payment_body(card_last4=None, method="qr", account_last4="0001"),
        },
        "b00t",
        NOW,
    )
    assert qr is not None and "account_last4" in qr[1]


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        (
            "device",
            {"device": "card_reader", "state": "disconnected", "detail": "gone", "x": 1},
            {"device": "card_reader", "state": "disconnected", "detail": "gone"},
        ),
        ("ledger", {"link": "up", "detail": "signed on"}, {"link": "up", "detail": "signed on"}),
        (
            "config",
            {"result": "refused", "config_sha256": "ab", "problems": ["a", "b"]},
            {"result": "refused", "config_sha256": "ab", "problems": ["a", "b"]},
        ),
        (
            "order",
            {"order_id": "o-1", "state": "deaf", "reason": "no audio", "items": []},
            {
                "order_id": "o-1",
                "state": "deaf",
                "placed_at": None,
                "alerting_s": None,
                "reason": "no audio",
            },
        ),
        (
            "saf",
            {"pending": 2, "pending_amount": 5_000, "oldest_age_s": 9, "alarm": True},
            {"pending": 2, "pending_amount": 5_000, "oldest_age_s": 9, "alarm": True},
        ),
    ],
)
def test_other_kinds_take_their_fields(
    kind: str, body: dict[str, object], expected: dict[str, object]
) -> None:
    mapped = mqtt_event({"seq": 1, "type": kind, kind: body}, "b", NOW)
    assert mapped is not None
    payload = mapped[1]
    assert {k: v for k, v in payload.items() if k not in ("id", "ts", "kind")} == expected
    assert payload["kind"] == kind


def test_free_text_is_masked_and_bounded() -> None:
    mapped = mqtt_event(
        {
            "seq": 1,
            "type": "error",
            "error": {"what": "reader", "detail": f"vendor text {GOOD_CARD} " + "x" * 900},
        },
        "b",
        NOW,
    )
    assert mapped is not None
    detail = mapped[1]["detail"]
    assert isinstance(detail, str) and GOOD_CARD not in detail and len(detail) <= 500
    problems = mqtt_event(
        {"seq": 2, "type": "config", "config": {"problems": [f"p{n}" for n in range(50)]}},
        "b",
        NOW,
    )
    assert problems is not None and len(problems[1]["problems"]) == 20  # type: ignore[arg-type]


def test_a_type_that_is_no_monitoring_event_maps_to_nothing() -> None:
    assert mqtt_event({"seq": 1, "type": "heartbeat", "heartbeat": {}}, "b", NOW) is None
    assert mqtt_event({"seq": 1, "type": "payment", "payment": "not an object"}, "b", NOW) is None


class Payments:
    def __init__(self, sections: Mapping[str, object]) -> None:
        self.sections = sections

    async def status_sections(self, *, strict: bool = False) -> Mapping[str, object]:
        return self.sections


class Orders:
    def status_sections(self) -> tuple[Mapping[str, object], Mapping[str, object]]:
        return (
            {"alerting": 1, "missed_today": 2, "link": "up", "can_alert": True, "reason": None},
            {"state": "ready", "output": "alsa", "device": "null"},
        )


def runtime_for(tmp_path: Path, **sections: Mapping[str, object] | None) -> Runtime:
    config = load_config(write_config(tmp_path, **sections))
    return Runtime(config, config.source, tmp_path, Supervisor(), Notifier(None))


PAYMENT_SIDE: dict[str, object] = {
    "ledger": {"link": "connecting", "last_rtt_ms": None, "last_error": f"refused {GOOD_CARD}"},
    "devices": {
        "card_reader": {"state": "ready", "port": "/dev/pts/3", "firmware": "2.1"},
        "qr_scanner": {"state": "disabled", "kind": "none"},
    },
    "saf": {"pending": 1, "pending_amount": 900, "oldest_age_s": 60, "needs_attention": 0},
    "payments_today": {"approved": 1, "declined": 0, "amount": 900},
    "storage": {"state": "ready", "last_error": None},
}


async def test_the_state_has_every_key_null_where_unknown_and_mqtt_md_words(
    tmp_path: Path,
) -> None:
    runtime = runtime_for(tmp_path)
    payments = Payments(PAYMENT_SIDE)
    state = await StateBuilder(runtime, lambda: payments, clock=lambda: NOW).build()
    assert set(state) == STATE_OBJECT_KEYS | STATE_EXTRA_KEYS
    for section, keys in STATE_SECTION_KEYS.items():
        assert keys <= set(state[section]), section  # type: ignore[arg-type]
    devices: Any = state["devices"]
    assert {name: set(d) for name, d in devices.items()} == {
        k: set(v) for k, v in STATE_DEVICE_KEYS.items()
    }
    ledger: Any = state["ledger"]
    assert ledger["link"] == "down"  # the client's `connecting` is not a word of mqtt.md
    assert ledger["clock_skew_s"] is None  # a payment side that does not say: null
    assert GOOD_CARD not in ledger["last_error"]
    saf: Any = state["saf"]
    assert saf["alarm"] is None and saf["needs_attention"] == 0  # extras are kept
    assert state["ts"] == "2026-11-30T00:53:20Z" and state["boot_id"] == runtime.boot_id
    assert state["connects"] == 0 and state["config_sha256"] == runtime.config.sha256
    # No order alerts running, orders off: no order can arrive, so none unheard: not deaf.
    assert state["orders"] == {
        "alerting": None,
        "missed_today": None,
        "link": "disabled",
        "can_alert": None,
        "reason": None,
    }
    assert devices["audio"] == {"state": "disabled", "output": "none"}
    assert state["api"] is None  # no API given
    assert state["mqtt"] == {"link": "disabled", "last_error": None, "queued": 0, "dropped": 0}
    assert len(json.dumps(state)) < 8 * 1024  # the console's limit on a state


async def test_orders_come_from_the_running_alerts_and_say_so_while_none_runs(
    tmp_path: Path,
) -> None:
    runtime = runtime_for(tmp_path, orders={"enabled": True}, mqtt={"enabled": True})
    payments = Payments(PAYMENT_SIDE)
    running: list[Orders] = []
    builder = StateBuilder(
        runtime, lambda: payments, orders=lambda: running[0] if running else None
    )
    # Orders on and no alerts running (starting, or replaced by a reload): deaf, saying why.
    without: Any = await builder.build()
    assert without["orders"]["can_alert"] is False and without["orders"]["link"] == "down"
    assert without["orders"]["reason"].startswith("the order alerts are not running")
    assert without["mqtt"]["link"] == "down"  # enabled, and no monitoring link found
    running.append(Orders())
    with_orders: Any = await builder.build()  # looked up anew at each build
    assert with_orders["orders"]["alerting"] == 1
    audio = with_orders["devices"]["audio"]
    assert audio == {"state": "ready", "output": "alsa", "device": "null"}  # extras kept


def test_same_state_ignores_the_clock_only() -> None:
    a = {"ts": "1", "uptime_s": 1, "saf": {"pending": 0}}
    assert same_state(a, {"ts": "2", "uptime_s": 9, "saf": {"pending": 0}})
    assert not same_state(a, {"ts": "1", "uptime_s": 1, "saf": {"pending": 1}})
    assert not same_state(None, a)


def drained(hub_events: list[dict[str, object]], kind: str) -> list[dict[str, object]]:
    return [e[kind] for e in hub_events if e["type"] == kind]  # type: ignore[misc]


class Collect:
    def __init__(self, hub: EventHub) -> None:
        self.sub = hub.subscribe()

    def taken(self) -> list[dict[str, object]]:
        return self.sub.pending()


class Driver:
    def __init__(self) -> None:
        self.state = "disconnected"
        self.last_error: str | None = None


def test_device_events_are_connects_disconnects_and_errors_not_every_read() -> None:
    hub = EventHub()
    seen = Collect(hub)
    reader = Driver()
    report = DeviceReporter(hub, "card_reader", reader)
    for state in ("ready", "busy", "ready", "busy", "ready"):
        report(state)
    reader.last_error = "/dev/posd-reader is not there (reader unplugged?)"
    report("disconnected")
    reader.last_error = "no permission to open /dev/ttyUSB0: posd needs group dialout"
    report("error")
    assert drained(seen.taken(), "device") == [
        {"device": "card_reader", "state": "ready", "detail": "connected"},
        {
            "device": "card_reader",
            "state": "disconnected",
            "detail": "/dev/posd-reader is not there (reader unplugged?)",
        },
        {
            "device": "card_reader",
            "state": "error",
            "detail": "no permission to open /dev/ttyUSB0: posd needs group dialout",
        },
    ]


def test_audio_events_are_its_state_and_the_output_in_use() -> None:
    hub = EventHub()
    seen = Collect(hub)
    report = DeviceReporter(hub, "audio").report
    report("ready", "the chime plays on alsa", "alsa")
    report("busy", "the chime plays on alsa", "alsa")  # chiming: no news
    report("ready", "the chime plays on escpos (lp0)", "escpos")  # ALSA failed over
    failed = "alsa: no card; escpos: gone; beep: no console"
    report("error", failed, "auto")
    assert drained(seen.taken(), "device") == [
        {"device": "audio", "state": "ready", "detail": "the chime plays on alsa"},
        {"device": "audio", "state": "ready", "detail": "the chime plays on escpos (lp0)"},
        {"device": "audio", "state": "error", "detail": failed},
    ]


class Ledger:
    last_error: str | None = None
    last_rtt_ms: float | None = 12.3


def test_ledger_events_are_sign_on_and_loss() -> None:
    hub = EventHub()
    seen = Collect(hub)
    ledger = Ledger()
    report = LedgerReporter(hub, ledger)
    report("connecting")  # the first attempt is no news
    report("up")
    ledger.last_error = "sign-on refused by the ledger (39=91)"
    report("down")
    report("connecting")
    assert drained(seen.taken(), "ledger") == [
        {"link": "up", "detail": "signed on (12 ms)"},
        {"link": "down", "detail": "sign-on refused by the ledger (39=91)"},
    ]


def test_saf_thresholds_against_the_offline_limits(tmp_path: Path) -> None:
    limits = runtime_for(tmp_path, offline={"max_count": 10, "max_total": 100_000}).config.offline
    assert saf_level({"pending": 0, "pending_amount": 0}, limits) == "empty"
    assert saf_level({"pending": 2, "pending_amount": 5_000}, limits) == "pending"
    assert saf_level({"pending": 8, "pending_amount": 5_000}, limits) == "near_limit"
    assert saf_level({"pending": 3, "pending_amount": 100_000}, limits) == "at_limit"
    assert saf_level({"pending": None, "pending_amount": None}, limits) is None
    hub = EventHub()
    seen = Collect(hub)
    thresholds = SafThresholds(hub)
    for pending in (0, 1, 2, 8, 9, 10, 0):
        thresholds.see({"pending": pending, "pending_amount": 1_000, "alarm": None}, limits)
    assert [e["threshold"] for e in drained(seen.taken(), "saf")] == [
        "pending",
        "near_limit",
        "at_limit",
        "empty",
    ]


def test_home_assistant_discovery_is_one_device_config(tmp_path: Path) -> None:
    config = runtime_for(tmp_path, mqtt={"homeassistant_discovery": True}).config
    assert discovery_topic(config) == "homeassistant/device/posd_T0000001/config"
    payload = discovery_payload(config)
    assert payload["availability_topic"] == "posd/T0000001/availability"
    assert payload["state_topic"] == "posd/T0000001/state"
    components: Any = payload["cmps"]
    assert set(components) == {
        "card_reader",
        "ledger_link",
        "saf_pending",
        "orders_alerting",
        "orders_missed_today",
        "can_alert",
    }
    assert all(c["unique_id"].startswith("posd_T0000001_") for c in components.values())
    assert {c["p"] for c in components.values()} == {"sensor", "binary_sensor"}


class Crashes:
    name = "flaky"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, started: Callable[[], None]) -> None:
        self.runs += 1
        started()
        if self.runs == 1:
            raise RuntimeError("the device went up in smoke")
        await asyncio.Event().wait()


async def test_a_crashed_component_is_an_error_event() -> None:
    hub = EventHub()
    seen = Collect(hub)
    supervisor = Supervisor(backoff=Backoff(initial_s=0.01, max_s=0.01))
    supervisor.add_listener(ComponentWatch(hub, supervisor))
    flaky = Crashes()
    task = asyncio.create_task(supervisor.run([flaky]))
    try:
        async with asyncio.timeout(5):
            while flaky.runs < 2:  # noqa: ASYNC110 - the component's own count, polled
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    errors = drained(seen.taken(), "error")
    assert len(errors) == 1, errors
    assert errors[0]["what"] == "component_failed"
    assert "flaky: RuntimeError: the device went up in smoke" in str(errors[0]["detail"])
