"""The console on a real Mosquitto, fed by the simulated fleet: snapshot, live changes, the call
list, the API, and commands to a box and back with a real operator key."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from posd.cli import main
from posd.fleet import Operator, SimFleet
from posd.fleet.simbox import DEAF_AUDIO, DEAF_LINK
from tests.helpers.mosquitto import Mosquitto
from tests.posd.fleet.live import live_console

ROOT = Path(__file__).resolve().parents[3]


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


async def test_snapshot_then_live_offline_stale_deaf_missed_and_called(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # The boxes publish every 0.5 s; the console calls stale what is silent for 2 s.
    async with (
        SimFleet(mosquitto.host, mosquitto.port, 12, schedule=False, state_interval_s=0.5) as fleet,
        live_console(tmp_path / "c.db", mosquitto, state_interval_s=1.0) as live,
    ):
        console = live.console
        # The snapshot: every box from its retained availability and state.
        await live.until(lambda: live.shown(12))
        first = live.row("S0000001")
        assert first["merchant_id"] == fleet.boxes["S0000001"].merchant_id
        assert first["version"] == "0.1.0" and first["last_state_ts"] is not None
        assert console.console_state()["broker"]["up"] is True  # type: ignore[index]

        # The box's socket dies: its will says offline.
        fleet.drop("S0000003")
        await live.until(lambda: live.row("S0000003")["status"] == "offline")
        assert live.row("S0000003")["since"] is not None
        await fleet.connect("S0000003")
        await live.until(lambda: live.row("S0000003")["status"] == "online")

        # Connected and silent: stale, then back when it speaks again.
        fleet.boxes["S0000007"].hung = True
        await live.until(lambda: live.row("S0000007")["status"] == "stale")
        fleet.boxes["S0000007"].hung = False
        await live.until(lambda: live.row("S0000007")["status"] == "online")

        # Deaf, a reader unplugged, a missed order: the counts and the call list.
        fleet.act("S0000005", lambda box, now: box.go_deaf(DEAF_LINK, now))
        fleet.act("S0000009", lambda box, now: box.reader_state("disconnected", now))
        fleet.act("S0000006", lambda box, now: box.order("B-20261202-0042", now))
        fleet.act("S0000006", lambda box, now: box.miss("B-20261202-0042", now))

        def counted() -> bool:
            summary = console.summary()
            return (
                summary["deaf"],
                summary["readers_disconnected"],
                summary["missed_uncalled"],
            ) == (1, 1, 1) and live.row("S0000006")["missed_today"] == 1

        await live.until(counted)
        await console.settle()
        kinds = {(c.kind, c.terminal_id, c.order_id) for c in console.call_list()}
        assert kinds == {
            ("deaf", "S0000005", None),
            ("missed_order", "S0000006", "B-20261202-0042"),
        }

        async with live.served.session() as http:
            async with http.get("/api/boxes", params={"deaf": "true"}) as response:
                deaf = await response.json()
            assert [(r["terminal_id"], r["deaf_reason"]) for r in deaf] == [("S0000005", DEAF_LINK)]
            async with http.get("/api/boxes/S0000006") as response:
                box = await response.json()
            states = [e["state"] for e in box["events"] if e["kind"] == "order"]
            assert states == ["alerting", "missed"]
            assert box["state"]["orders"]["missed_today"] == 1
            async with http.get("/api/calls") as response:
                calls = await response.json()
            missed = next(c for c in calls if c["kind"] == "missed_order")
            async with http.post(
                f"/api/calls/{missed['id']}/called", json={"note": "사장님 통화 완료"}
            ) as response:
                assert response.status == 200
                assert (await response.json())["called"] is True
        await live.until(lambda: console.summary()["missed_uncalled"] == 0)
        assert console.model.bad.counts == dict.fromkeys(console.model.bad.counts, 0)


async def test_commands_go_to_the_box_and_its_answer_comes_back(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    key = Ed25519PrivateKey.generate()
    stranger = Ed25519PrivateKey.generate()
    async with (
        SimFleet(mosquitto.host, mosquitto.port, 2, schedule=False,
                 operator_keys=[public_raw(key)]) as fleet,
        SimFleet(mosquitto.host, mosquitto.port, 1, first=9, schedule=False,
                 operator_keys=[public_raw(stranger)]),
        live_console(tmp_path / "c.db", mosquitto, operator=Operator(key)) as live,
    ):  # fmt: skip
        await live.until(lambda: live.shown(3))
        async with live.served.session() as http:

            async def send(tid: str, command: str, args: dict[str, object]) -> dict[str, object]:
                async with http.post(
                    f"/api/boxes/{tid}/commands/{command}", json={"args": args}
                ) as response:
                    assert response.status == 200, await response.text()
                    answer: dict[str, object] = await response.json()
                    return answer

            answer = await send("S0000001", "chime_test", {})
            assert answer["ok"] is True and answer["result"] == {"output": "alsa", "failures": []}
            assert (await send("S0000001", "log_level", {"level": "debug"}))["result"] == {
                "level": "debug"
            }
            # A shop deaf for want of audio cannot play the test chime, and says so.
            fleet.act("S0000002", lambda box, now: box.go_deaf(DEAF_AUDIO, now))
            answer = await send("S0000002", "chime_test", {})
            assert answer["ok"] is False and "audio" in str(answer["error"])
            # A box that does not know this console's key refuses, and reports it.
            answer = await send("S0000009", "diagnostics", {})
            assert answer == {"id": answer["id"], "ok": False, "error": "unauthorized"}
            await live.until(
                lambda: any(
                    b'"security"' in e for e in live.console.model.boxes["S0000009"].recent_events()
                )
            )

            # The broker goes away: commands are refused at once; it comes back: the view too.
            mosquitto.stop()
            await live.until(lambda: not live.console.broker_up)
            async with http.post(
                "/api/boxes/S0000001/commands/chime_test", json={"args": {}}
            ) as response:
                assert response.status == 503
                assert (await response.json())["error"]["code"] == "broker_unavailable"
            mosquitto.start()
            # The box comes back too (a second connection) and answers again.
            await live.until(lambda: live.console.model.boxes["S0000001"].conn_connects == 2)
            answer = await send("S0000001", "diagnostics", {})
            assert answer["ok"] is True and answer["result"]["version"] == "0.1.0"  # type: ignore[index]


async def test_posd_fleet_serve_from_the_command_line(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The real wiring: posd's CLI, MqttFleetLink from the arguments, SIGTERM's orderly end."""
    async with SimFleet(mosquitto.host, mosquitto.port, 3, schedule=False):
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "posd", "fleet", "serve",
            "--broker", f"{mosquitto.host}:{mosquitto.port}", "--listen", "127.0.0.1:0",
            "--db", str(tmp_path / "fleet.db"),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode()
            assert line.startswith("console at http://127.0.0.1:"), line
            async with aiohttp.ClientSession(base_url=line.split()[-1].rstrip("/")) as http:
                summary: dict[str, object] = {}
                while summary.get("online") != 3:
                    async with http.get("/api/summary") as response:
                        summary = await response.json()
                    await asyncio.sleep(0.05)  # polling the API as a client would
            child.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(child.wait(), 30) == 0
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        assert child.stderr is not None
        log = (await child.stderr.read()).decode()
        assert "connected to 127.0.0.1" in log and "Traceback" not in log


def test_fleet_command_line_errors_are_usage_errors() -> None:
    for argv in (["fleet"], ["fleet", "serve"], ["fleet", "sim", "10"], ["fleet", "nope"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 64, argv
