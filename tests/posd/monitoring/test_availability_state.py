"""Availability and state on a real Mosquitto: retained, with every key, again on every
connect (a broker restarted with and without persistence), `offline` from an orderly stop,
changes debounced, the periodic republish, and the state of GET /v1/status being the same."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from posd.monitoring import STATE_EXPIRY_S
from posd.sim import GOOD_QR_ACCOUNT
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.spec_objects import (
    STATE_DEVICE_KEYS,
    STATE_EXTRA_KEYS,
    STATE_OBJECT_KEYS,
    STATE_SECTION_KEYS,
)
from tests.posd.monitoring.support import BASE, box, monitoring, watching

pytestmark = pytest.mark.timeout(60)


def assert_state_shape(state: dict[str, object]) -> None:
    assert set(state) == STATE_OBJECT_KEYS | STATE_EXTRA_KEYS, state
    for section, keys in STATE_SECTION_KEYS.items():
        value = state[section]
        assert isinstance(value, dict) and keys <= set(value), (section, value)
    devices = state["devices"]
    assert isinstance(devices, dict) and set(devices) == set(STATE_DEVICE_KEYS)
    for device, keys in STATE_DEVICE_KEYS.items():
        assert set(devices[device]) == keys, devices[device]


async def test_retained_availability_and_state_with_every_key(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with box(tmp_path, mosquitto) as d:
        component = monitoring(d)
        async with asyncio.timeout(10):
            await component.link.wait_up()
        mosquitto.wait_for_log(r"New client connected .* as posd-T0000001 ")
        async with watching(mosquitto) as early:
            # The state sent at connect may predate the ledger's sign-on; its change follows.
            await early.state(lambda s: s["ledger"]["link"] == "up")
        # A consumer that comes later gets both from the broker, retained.
        async with watching(mosquitto) as ops:
            online = await ops.wait_for(lambda m: m.topic == f"{BASE}/availability", "online")
            assert (online.payload, online.retain) == (b"online", True)
            retained = await ops.wait_for(lambda m: m.topic == f"{BASE}/state", "state")
            assert retained.retain
            # MQTT 5: the retained state expires, so a box gone for good leaves no ghost.
            assert retained.expiry_s is not None and 0 < retained.expiry_s <= STATE_EXPIRY_S
            state = retained.json()
            assert_state_shape(state)
            assert state["terminal_id"] == "T0000001"
            assert state["boot_id"] == d.daemon.runtime.boot_id
            assert state["connects"] == 1
            built = datetime.datetime.fromisoformat(state["ts"].replace("Z", "+00:00"))
            assert abs(built.timestamp() - time.time()) < 30
            assert state["ledger"]["link"] == "up"
            assert state["devices"]["qr_scanner"]["state"] == "ready"
            assert state["mqtt"]["link"] == "up"
            # GET /v1/status is the same object, built by the same builder.
            status, local = await d.request("GET", "/v1/status")
            assert status == 200
            assert_state_shape(local)
            assert local["boot_id"] == state["boot_id"] and local["connects"] == 1


async def test_an_orderly_stop_publishes_offline_itself(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with watching(mosquitto) as ops:
        async with box(tmp_path, mosquitto):
            await ops.wait_for(lambda m: m.payload == b"online", "online")
            mark = mosquitto.log_mark()
        offline = await ops.wait_for(lambda m: m.payload == b"offline", "offline")
        assert offline.topic == f"{BASE}/availability"
    # Published by posd before a clean DISCONNECT (which sends no will).
    publish = mosquitto.wait_for_log(
        r"Received PUBLISH from posd-T0000001 .*'posd/T0000001/availability'", after=mark
    )
    disconnect = mosquitto.wait_for_log(r"Received DISCONNECT from posd-T0000001", after=mark)
    lines = mosquitto.log_lines(mark)
    assert lines.index(publish.string) < lines.index(disconnect.string)
    async with watching(mosquitto) as late:
        kept = await late.wait_for(lambda m: m.topic == f"{BASE}/availability", "availability")
        assert (kept.payload, kept.retain) == (b"offline", True)


@pytest.mark.parametrize("persistence", [False, True], ids=["no-persistence", "persistence"])
async def test_online_and_state_again_after_the_broker_restarts(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], persistence: bool
) -> None:
    broker = mosquitto_factory(persistence=persistence)
    async with box(tmp_path, broker) as d:
        async with watching(broker) as ops:
            await ops.state(lambda s: s["connects"] == 1)
        await asyncio.to_thread(broker.restart)
        async with watching(broker) as ops:
            # The box comes back by itself and says so: retained, whatever the broker kept.
            state = await ops.state(lambda s: s["connects"] == 2)
            assert state["boot_id"] == d.daemon.runtime.boot_id
            availability = ops.on("availability")
            assert availability and availability[-1].payload == b"online"
        async with watching(broker) as late:
            kept = await late.wait_for(lambda m: m.topic == f"{BASE}/availability", "availability")
            assert kept.payload == b"online"
            assert (await late.state())["connects"] == 2


async def test_a_change_is_published_at_most_once_a_second_and_the_state_every_interval(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        watching(mosquitto) as ops,
        box(tmp_path, mosquitto, monitoring_interval_s=1.5) as d,
    ):
        await ops.state(lambda s: s["ledger"]["link"] == "up")
        for amount in (1_000, 2_000, 3_000):
            created = await d.create(amount, "qr")
            await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
            await d.wait_final(created["payment_id"])
        state = await ops.state(lambda s: s["payments_today"]["approved"] == 3)
        assert state["payments_today"]["amount"] == 6_000
        # Nothing changes now: the state still comes, every interval.
        for _ in range(2):
            await ops.state(since=len(ops.seen))
        gaps = [b.at - a.at for a, b in itertools.pairwise(ops.on("state"))]
        # Nine payment changes came within a few seconds; the sender spaced its states.
        assert min(gaps) > 0.5, gaps
