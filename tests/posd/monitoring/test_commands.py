"""Signed commands over a real broker: each kind of refusal answered as mqtt.md says, with a
security event that never holds the payload; each valid command doing what it says."""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from posd.sim import GOOD_QR_ACCOUNT
from protocols.command_payload import sign_command
from tests.helpers.configs import write_config
from tests.helpers.daemon import RunningDaemon
from tests.helpers.mosquitto import Mosquitto
from tests.posd.monitoring.support import (
    BASE,
    OPERATOR,
    STRANGER,
    Seen,
    Watcher,
    box,
    monitoring,
    mqtt_section,
    watching,
)

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def ready(
    tmp_path: Path, broker: Mosquitto, **options: Any
) -> AsyncIterator[tuple[RunningDaemon, Watcher]]:
    async with watching(broker) as ops, box(tmp_path, broker, **options) as d:
        await ops.state(lambda s: s["ledger"]["link"] == "up")
        yield d, ops


def signed(command: str, *, key: Any = OPERATOR, ts_offset: int = 0, **args: object) -> bytes:
    return sign_command(command, uuid.uuid4().hex, int(time.time()) + ts_offset, args, key)


def on_topic(topic: str, message: Seen) -> bool:
    return message.topic == topic


def unsigned() -> bytes:
    return json.dumps({"id": "no-sig-1", "ts": int(time.time()), "args": {}}).encode()


REFUSALS: list[tuple[str, str, Callable[[], bytes], str, str]] = [
    ("unsigned", "diagnostics", unsigned, "unauthorized", "unauthorized_command"),
    (
        "wrong key",
        "diagnostics",
        lambda: signed("diagnostics", key=STRANGER),
        "unauthorized",
        "unauthorized_command",
    ),
    (
        "stale",
        "diagnostics",
        lambda: signed("diagnostics", ts_offset=-120),
        "unauthorized",
        "unauthorized_command",
    ),
    (
        "future",
        "diagnostics",
        lambda: signed("diagnostics", ts_offset=120),
        "unauthorized",
        "unauthorized_command",
    ),
    ("malformed", "diagnostics", lambda: b'{"id": "x", ', "malformed request", "malformed_command"),
    (
        "unknown",
        "reboot",
        lambda: signed("reboot"),
        "unknown command: posd knows chime_test, diagnostics",
        "unknown_command",
    ),
    (
        "bad args",
        "log_level",
        lambda: signed("log_level", level="loud"),
        "invalid args: level must be one of",
        "invalid_command_args",
    ),
]


async def test_every_refusal_is_answered_and_raises_a_security_event(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with ready(tmp_path, mosquitto) as (_d, ops):
        for case, command, payload_of, error, what in REFUSALS:
            payload = payload_of()
            mark = len(ops.seen)
            await ops.raw_request(command, payload)
            try:
                doc = json.loads(payload)
            except ValueError:
                doc = None
            request_id = doc.get("id") if isinstance(doc, dict) else None
            sig = doc.get("sig") if isinstance(doc, dict) else None
            response = await ops.wait_for(
                functools.partial(on_topic, f"{BASE}/response/{command}"), case, since=mark
            )
            answer = response.json()
            assert answer["id"] == request_id, case
            assert answer["ok"] is False and answer["error"].startswith(error), (case, answer)
            event = await ops.event("security", since=mark)
            assert event["what"] == what, (case, event)
            assert event["command"] == command
            text = json.dumps(event)
            # Never the offending payload, nor its signature.
            assert payload.decode(errors="replace") not in text
            assert sig is None or sig not in text


async def test_a_replayed_request_is_refused_after_the_first_is_done(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with ready(tmp_path, mosquitto) as (_d, ops):
        payload = signed("log_level", level="info")
        command_id = json.loads(payload)["id"]
        await ops.raw_request("log_level", payload)
        first = await ops.response("log_level", command_id)
        assert first == {
            "id": command_id,
            "ok": True,
            "result": {"level": "info", "until": "restart"},
        }
        mark = len(ops.seen)
        await ops.raw_request("log_level", payload)
        second = await ops.wait_for(
            lambda m: m.topic == f"{BASE}/response/log_level", "second answer", since=mark
        )
        assert second.json() == {"id": command_id, "ok": False, "error": "unauthorized"}
        event = await ops.event("security", since=mark)
        assert event["reason"] == "replayed"


async def test_a_retained_request_is_refused(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with watching(mosquitto) as ops:
        # Left retained before the box connects: delivered to it as retained.
        payload = signed("log_level", level="debug")
        await ops.raw_request("log_level", payload, retain=True)
        async with box(tmp_path, mosquitto):
            answer = await ops.response("log_level", json.loads(payload)["id"])
            assert answer["ok"] is False and "retained" in answer["error"]
            assert (await ops.event("security"))["what"] == "retained_command"
        await ops.raw_request("log_level", b"", retain=True)  # clears the retained request


async def test_a_flood_of_garbage_costs_a_bounded_number_of_events(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with ready(tmp_path, mosquitto) as (d, ops):
        for n in range(60):
            await ops.raw_request("diagnostics", f"garbage {n}".encode())
        desk = monitoring(d).desk
        await ops.wait_for(lambda _m: desk.refused == 60, "60 refusals", timeout_s=15)
        # Answers and events pass in bursts; the rest are counted, not sent.
        await ops.wait_for(
            lambda _m: len(ops.on("response/diagnostics")) + desk.answers_held >= 60, "answers"
        )
        assert len(ops.events("security")) <= 12
        assert len(ops.on("response/diagnostics")) <= 40


async def test_chime_test_plays_the_order_chime_and_says_on_what(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # aplay on ALSA's null device: a real playback that makes no sound.
    audio = {"output": "alsa", "device": "null"}
    async with ready(tmp_path, mosquitto, audio=audio) as (d, ops):
        before = d.alerts.player.status()
        answer = await ops.response("chime_test", await ops.request("chime_test"))
        assert answer["ok"] is True, answer
        assert answer["result"] == {"output": "alsa", "failures": []}
        assert before.output == "alsa"
    # No output at all: posd says so, and why.
    (tmp_path / "silent").mkdir()
    async with ready(tmp_path / "silent", mosquitto, audio={"output": "none"}) as (_d, ops):
        answer = await ops.response("chime_test", await ops.request("chime_test"))
        assert answer["ok"] is False
        assert answer["error"] == 'audio.output is "none": there is nothing to play the chime on'


async def test_chime_test_when_every_output_fails_names_each_failure(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    audio = {"output": "alsa", "device": "plughw:99"}  # a sound card this machine has not
    async with ready(tmp_path, mosquitto, audio=audio) as (_d, ops):
        answer = await ops.response("chime_test", await ops.request("chime_test"))
        assert answer["ok"] is False
        assert answer["error"].startswith("no audio output played the chime: alsa: ")


async def test_saf_flush_forwards_the_queue_or_says_why_not(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # A SAF retry interval long enough that only the command forwards the queue.
    async with ready(tmp_path, mosquitto, saf_retry_interval_s=3600) as (d, ops):
        await d.ledger.refuse_connections(True)
        await d.wait_status(lambda s: s["ledger"]["link"] != "up")
        created = await d.create(3_000, "qr")
        await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
        assert (await d.wait_final(created["payment_id"]))["state"] == "approved_offline"
        refused = await ops.response("saf_flush", await ops.request("saf_flush"))
        assert refused["ok"] is False and "ledger link is down" in refused["error"]
        await d.ledger.refuse_connections(False)
        await d.wait_status(lambda s: s["ledger"]["link"] == "up")
        answer = await ops.response("saf_flush", await ops.request("saf_flush"))
        assert answer["ok"] is True, answer
        assert answer["result"]["pending"] == 0
        assert (await d.payment(created["payment_id"]))["state"] == "forwarded"


async def test_reload_config_takes_a_valid_file_and_refuses_a_bad_one(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with ready(tmp_path, mosquitto) as (d, ops):
        old_sha = d.config.sha256
        text = d.config_path.read_text()
        d.config_path.write_text(text.replace('level = "debug"', 'level = "info"'))
        answer = await ops.response("reload_config", await ops.request("reload_config"))
        assert answer["ok"] is True, answer
        new_sha = answer["result"]["config_sha256"]
        assert answer["result"]["result"] == "reloaded" and new_sha != old_sha
        event = await ops.event("config", lambda e: e["result"] == "reloaded")
        assert event["config_sha256"] == new_sha and event["problems"] == []
        await ops.state(lambda s: s["config_sha256"] == new_sha)

        mark = len(ops.seen)
        d.config_path.write_text(text.replace('level = "debug"', 'level = "shouting"'))
        answer = await ops.response("reload_config", await ops.request("reload_config"))
        assert answer["ok"] is False and "config refused, the running one kept" in answer["error"]
        assert "logging.level" in answer["error"]
        event = await ops.event("config", lambda e: e["result"] == "refused", since=mark)
        assert event["config_sha256"] == new_sha
        assert any("logging.level" in p for p in event["problems"])
        assert d.daemon.runtime.config.sha256 == new_sha


async def test_reload_config_that_rebuilds_the_monitoring_link_still_answers(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with ready(tmp_path, mosquitto) as (d, ops):
        seen_id = await ops.request("diagnostics")
        assert (await ops.response("diagnostics", seen_id))["ok"] is True
        write_config(
            tmp_path,
            ledger={"port": d.ledger.port, "timeout_s": 2},
            qr_scanner={"kind": "serial", "port": d.scanner.port},
            mqtt=mqtt_section(mosquitto, homeassistant_discovery=True),
        )
        answer = await ops.response("reload_config", await ops.request("reload_config"))
        assert answer["ok"] is True, answer
        # The new link (the mqtt section changed) says online and its state again; the rest
        # of posd was not rebuilt, and the new link reports the parts that run (the ledger
        # link still up, the scanner still there), not copies built for the reload.
        state = await ops.state(lambda s: s["connects"] == 2)
        assert state["ledger"]["link"] == "up", state
        assert state["devices"]["qr_scanner"]["state"] == "ready", state
        assert state["mqtt"]["link"] == "up" and state["api"]["socket"]
        mark = len(ops.seen)
        diagnostics = await ops.response("diagnostics", await ops.request("diagnostics"))
        assert diagnostics["result"]["devices"]["qr_scanner"]["state"] == "ready"
        # The command ids seen before the reload are still remembered: a replay is refused.
        await ops.request("diagnostics", command_id=seen_id)
        replayed = await ops.wait_for(
            lambda m: (
                m.topic == f"{BASE}/response/diagnostics"
                and m.json() == {"id": seen_id, "ok": False, "error": "unauthorized"}
            ),
            "the replay refused",
            since=mark,
        )
        assert replayed.json()["ok"] is False
        async with watching(mosquitto, subscribe="homeassistant/#") as ha:
            config = await ha.wait_for(lambda m: m.topic.endswith("/config"), "discovery")
        assert config.topic == "homeassistant/device/posd_T0000001/config"
        assert config.retain and config.json()["state_topic"] == f"{BASE}/state"


async def test_diagnostics_returns_versions_devices_queue_and_last_errors(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with ready(tmp_path, mosquitto, card_reader=True) as (d, ops):
        await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "ready")
        logging.getLogger("posd.test").warning("a warning for the diagnostics")
        answer = await ops.response("diagnostics", await ops.request("diagnostics"))
        assert answer["ok"] is True, answer
        result = answer["result"]
        assert result["versions"]["posd"] and result["versions"]["aiomqtt"]
        reader = result["devices"]["card_reader"]
        assert reader["state"] == "ready" and reader["firmware"]
        assert reader["link_stats"]["frames_in"] > 0 and "retransmits" in reader["link_stats"]
        assert result["devices"]["qr_scanner"]["state"] == "ready"
        assert result["queue"]["summary"]["pending"] == 0 and result["queue"]["oldest"] == []
        assert result["links"]["monitoring"]["status"] == "up"
        assert result["components"]["payments"]["state"] == "running"
        assert any(e["message"] == "a warning for the diagnostics" for e in result["last_errors"])


async def test_log_level_changes_the_level_until_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with ready(tmp_path, mosquitto) as (_d, ops):
        answer = await ops.response("log_level", await ops.request("log_level", {"level": "error"}))
        assert answer == {
            "id": answer["id"],
            "ok": True,
            "result": {"level": "error", "until": "restart"},
        }
        assert logging.getLogger().getEffectiveLevel() == logging.ERROR
