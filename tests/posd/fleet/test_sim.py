"""`posd fleet sim`: what a simulated box publishes is what mqtt.md says posd publishes, it
answers commands as posd must, its schedule is seeded, and the command line behaves."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from posd.fleet import FleetModel, SimBox
from posd.fleet.simbox import MISSED_AFTER_STEPS, Message
from posd.fleet.simnet import BoxConnection, Network
from protocols.command_payload import sign_command
from tests.helpers.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[3]
NOW = 1_796_202_000.0  # 2026-12-02T09:00:00Z

# mqtt.md's state payload, every key and every nested key ("all keys present").
STATE_KEYS = {
    "terminal_id", "merchant_id", "version", "ts", "boot_id", "connects", "uptime_s",
    "config_sha256", "ledger", "devices", "saf", "orders", "payments_today",
}  # fmt: skip
NESTED_KEYS = {
    "ledger": {"link", "last_rtt_ms", "last_error", "clock_skew_s"},
    "saf": {"pending", "pending_amount", "oldest_age_s", "alarm"},
    "orders": {"alerting", "missed_today", "link", "can_alert", "reason"},
    "payments_today": {"approved", "declined", "amount"},
}
DEVICE_KEYS = {
    "card_reader": {"state", "port", "firmware"},
    "qr_scanner": {"state", "kind"},
    "audio": {"state", "output"},
}
EVENT_FIELDS = {
    "payment": {"payment_id", "state", "amount", "charged", "method", "entry_mode",
                "response_code", "decline_reason", "offline"},
    "order": {"order_id", "state", "placed_at", "alerting_s"},
    "saf": {"pending", "pending_amount", "oldest_age_s", "alarm"},
    "device": {"device", "state", "detail"},
    "ledger": {"link", "detail"},
    "security": {"what", "detail"},
}  # fmt: skip
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def keypair() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def check_state(message: Message, box: SimBox) -> dict[str, object]:
    assert (message.topic, message.qos, message.retain) == (
        f"posd/{box.terminal_id}/state",
        1,
        True,
    )
    state = json.loads(message.payload)
    assert set(state) == STATE_KEYS
    for section, keys in NESTED_KEYS.items():
        assert set(state[section]) == keys, section
    assert {name: set(value) for name, value in state["devices"].items()} == DEVICE_KEYS
    assert RFC3339.fullmatch(state["ts"])
    return state  # type: ignore[no-any-return]


def check_event(message: Message) -> dict[str, object]:
    kind = message.topic.rsplit("/", 1)[1]
    assert (message.qos, message.retain) == (1, False)
    event = json.loads(message.payload)
    assert event["kind"] == kind and isinstance(event["id"], str)
    assert RFC3339.fullmatch(event["ts"])
    assert EVENT_FIELDS[kind] <= set(event), kind
    if kind == "payment":
        last4 = event.get("card_last4", event.get("account_last4"))
        assert ("card_last4" in event) != ("account_last4" in event)
        assert isinstance(last4, str) and re.fullmatch(r"\d{4}", last4)
        shown = [str(value) for key, value in event.items() if key not in ("id", "payment_id")]
        assert not any(re.search(r"\d{12,}", value) for value in shown), "a card number?"
    return event  # type: ignore[no-any-return]


def test_connect_publishes_online_and_the_full_state_retained() -> None:
    box = SimBox("S0000001", now=NOW)
    assert (box.client_id, box.will) == (
        "posd-S0000001",
        Message("posd/S0000001/availability", b"offline", 1, True),
    )
    online, state = box.connected(NOW + 5)
    assert online == Message("posd/S0000001/availability", b"online", 1, True)
    first = check_state(state, box)
    assert (first["connects"], first["uptime_s"], first["ts"]) == (1, 5, "2026-12-02T09:00:05Z")
    _, again = box.connected(NOW + 9)
    assert json.loads(again.payload)["connects"] == 2
    box.restart(NOW + 20)
    _, restarted = box.connected(NOW + 21)
    after = json.loads(restarted.payload)
    assert after["connects"] == 1 and after["boot_id"] != first["boot_id"]


def test_a_seeded_schedule_is_the_same_fleet_every_run_and_the_console_takes_all_of_it() -> None:
    def run(seed: int, steps: int) -> tuple[list[bytes], Counter[str]]:
        boxes = [SimBox(f"S{n:07d}", seed=seed, now=NOW) for n in range(1, 31)]
        published: list[bytes] = []
        outcomes: Counter[str] = Counter()
        model = FleetModel()
        for box in boxes:
            for message in box.connected(NOW):
                model.ingest(message.topic, message.payload, True, NOW)
        for step in range(1, steps):
            now = NOW + 60 * step
            for box in boxes:
                messages, outcome = box.step(now)
                outcomes[str(outcome)] += 1
                for message in [*messages, box.state(now)]:
                    if message.topic.endswith("/state"):
                        check_state(message, box)
                    else:
                        check_event(message)
                    model.ingest(message.topic, message.payload, False, now)
                    published.append(message.payload.replace(box.boot_id.encode(), b"?"))
        assert sum(model.bad.counts.values()) == 0, model.bad.counts
        return published, outcomes

    first, outcomes = run(7, 100)
    again, _ = run(7, 100)
    other, _ = run(8, 10)
    assert first == again and first[: len(other)] != other
    assert outcomes["None"] > 0.9 * sum(outcomes.values())
    assert {"offline", "restart", "hang"} <= set(outcomes)
    kinds = Counter(json.loads(p).get("kind", "state") for p in first if p.startswith(b"{"))
    assert {"payment", "order", "saf", "ledger", "device", "state"} <= set(kinds)


def test_an_order_not_acknowledged_in_time_is_missed() -> None:
    box = SimBox("S0000001", seed=1, now=NOW)
    box.rng.random = lambda: 0.99  # type: ignore[method-assign]  # nobody acknowledges
    (alerting,) = box.order("B-1", NOW)
    assert json.loads(alerting.payload)["state"] == "alerting"
    missed = []
    for step in range(1, MISSED_AFTER_STEPS + 1):
        messages, _ = box.step(NOW + 60 * step)
        missed += [m for m in messages if b'"B-1"' in m.payload]
    (event,) = [json.loads(m.payload) for m in missed]
    assert (event["state"], event["placed_at"], event["alerting_s"]) == (
        "missed", "2026-12-02T09:00:00Z", 60 * MISSED_AFTER_STEPS
    )  # fmt: skip
    assert json.loads(box.state(NOW + 400).payload)["orders"]["missed_today"] == 1


def test_commands_are_verified_as_posd_verifies_them() -> None:
    key, public = keypair()
    box = SimBox("S0000001", operator_keys=[public], now=NOW)

    def send(command: str, command_id: str, ts: int, *, signer: Ed25519PrivateKey = key,
             args: dict[str, object] | None = None, now: float = NOW) -> list[Message]:  # fmt: skip
        payload = sign_command(command, command_id, ts, args or {}, signer)
        return box.command(command, payload, now)

    (answer,) = send("chime_test", "c1", int(NOW))
    assert answer.topic == "posd/S0000001/response/chime_test"
    assert json.loads(answer.payload) == {
        "id": "c1", "ok": True, "result": {"output": "alsa", "failures": []}
    }  # fmt: skip
    refusals = {
        "replayed": send("chime_test", "c1", int(NOW) + 1),
        "clock": send("chime_test", "c2", int(NOW) - 61),
        "stranger": send("chime_test", "c3", int(NOW), signer=keypair()[0]),
        "unsigned": box.command("chime_test", b'{"id": "c4", "ts": 1, "args": {}}', NOW),
    }
    for name, (response, security) in refusals.items():
        assert json.loads(response.payload)["error"] == "unauthorized", name
        event = check_event(security)
        assert event["what"] == "unauthorized_command", name
        assert event["detail"] in {"replayed", "clock_skew", "bad_signature", "unsigned"}, name
    (bad_args,) = send("log_level", "c5", int(NOW), args={"level": "loud"})
    assert json.loads(bad_args.payload) == {"id": "c5", "ok": False, "error": "invalid_args"}
    (level,) = send("log_level", "c6", int(NOW), args={"level": "debug"})
    assert json.loads(level.payload)["result"] == {"level": "debug"}
    nobody = SimBox("S0000002", now=NOW)
    response, _ = nobody.command(
        "diagnostics", sign_command("diagnostics", "d", int(NOW), {}, key), NOW
    )
    assert json.loads(response.payload)["error"] == "unauthorized"


def sim(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "posd", "fleet", "sim", *argv],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigterm_stops_every_box_as_posd_stops(mosquitto: Mosquitto) -> None:
    child = sim("3", "--broker", f"{mosquitto.host}:{mosquitto.port}", "--seed", "4")
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("posd fleet sim: 3 boxes S0000001…S0000003 connected to"), line
        mark = mosquitto.log_mark()
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == 0
        # Each box says offline itself, then DISCONNECTs: no will is needed.
        for n in (1, 2, 3):
            mosquitto.wait_for_log(rf"Received DISCONNECT from posd-S000000{n}", after=mark)
        assert "Will message" not in "\n".join(mosquitto.log_lines(mark))
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)


def test_the_command_line_refuses_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "keys"
    bad.write_text("# the console's key\nnot base64!\n")
    good = tmp_path / "good"
    good.write_text(base64.b64encode(keypair()[1]).decode() + "\n")
    cases = [
        (["0", "--broker", "b"], 64, "expected a number of boxes"),
        (["2", "--broker", "b", "--operator-pub", str(bad)], 78, f"{bad}:2: is not valid base64"),
        (["2", "--broker", "127.0.0.1:1", "--operator-pub", str(good)], 69, "cannot connect"),
    ]
    for argv, code, message in cases:
        child = sim(*argv)
        _, err = child.communicate(timeout=30)
        assert child.returncode == code, (argv, err)
        assert message in err and "Traceback" not in err, err


def test_a_paho_callback_after_the_simulator_s_loop_closed_is_dropped() -> None:
    # paho calls on_socket_close again when a dropped client is garbage collected, from the
    # collecting thread, after the simulator's loop may have closed (it failed a later test).
    async def network() -> Network:
        return Network("127.0.0.1", 1)

    net = asyncio.run(network())
    net.executor.shutdown()
    called: list[int] = []
    errors: list[BaseException] = []

    def from_another_thread() -> None:
        try:
            net.in_loop(called.append, 1)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=from_another_thread)
    thread.start()
    thread.join()
    assert errors == [] and called == []


async def test_a_box_stopping_while_the_broker_lags_still_ends_offline_and_disconnected(
    mosquitto: Mosquitto,
) -> None:
    # A broker busy with the box's earlier publishes when the box closes its socket (right
    # after its DISCONNECT) drops the connection unread: `offline` and DISCONNECT lost, once
    # in a loaded CI run. The box waits for its `offline`'s PUBACK first, as posd does.
    net = Network(mosquitto.host, mosquitto.port)
    net.start()
    try:
        will = Message("posd/S0000009/availability", b"offline", 1, True)
        box = BoxConnection(net, "posd-S0000009", will, lambda topic, payload: None, lambda: None)
        await box.open("posd/S0000009/request/+")
        mark = mosquitto.log_mark()
        mosquitto.pause()
        try:
            for n in range(20):
                box.publish(Message("posd/S0000009/state", b"{}" * 300 + bytes([n]), 1, True))
            closing = asyncio.create_task(box.close(will))
            await asyncio.sleep(0.2)
        finally:
            mosquitto.resume()
        await closing
        await asyncio.to_thread(
            mosquitto.wait_for_log, r"Received DISCONNECT from posd-S0000009", after=mark
        )
        assert "Will message" not in "\n".join(mosquitto.log_lines(mark))
    finally:
        await net.aclose()
