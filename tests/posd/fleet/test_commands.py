"""Signed commands from the console's API to a box, and the operator key file."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import posd.fleet.console
from posd.fleet.commands import CommandUnavailable, Operator
from posd.fleet.files import SecretFileError, load_operator_key
from protocols.command_payload import (
    CommandRejected,
    ReplayWindow,
    response_payload,
    verify_command,
)
from tests.posd.fleet.fleetdata import state, terminal, topic
from tests.posd.fleet.support import running_console

TID = terminal(1)


class Box:
    """The box's side as posd answers it: mqtt.md's verification with the protocols code,
    then the command's result. `received` keeps what it accepted."""

    def __init__(self, operator_keys: list[bytes]) -> None:
        self.keys = operator_keys
        self.seen = ReplayWindow()
        self.received: list[tuple[str, str, dict[str, object]]] = []
        self.answer: bytes | None = None

    async def __call__(
        self, terminal_id: str, command: str, command_id: str, payload: bytes, timeout_s: float
    ) -> bytes:
        assert timeout_s == 10.0
        now = int(time.time())
        checked = verify_command(command, payload, self.keys, now, self.seen)
        if isinstance(checked, CommandRejected):
            return response_payload(checked.id, error=checked.error)
        self.seen.add(checked.id, now)
        self.received.append((terminal_id, command, dict(checked.args)))
        if self.answer is not None:
            return self.answer
        return response_payload(checked.id, result={"output": "alsa", "failures": []})


def operator() -> Operator:
    return Operator(Ed25519PrivateKey.generate())


async def test_a_command_is_signed_sent_and_answered(tmp_path: Path) -> None:
    op = operator()
    box = Box([op.public_raw])
    async with running_console(tmp_path / "c.db", operator=op, transport=box) as served:
        served.console.feed(topic(TID, "state"), state(TID, time.time()), True, time.time())
        async with served.session() as http:
            url = f"/api/boxes/{TID}/commands/chime_test"
            async with http.post(url, json={"args": {}}) as response:
                assert response.status == 200
                answer = await response.json()
            assert answer["ok"] is True and answer["result"] == {"output": "alsa", "failures": []}
            assert isinstance(answer["id"], str) and len(answer["id"]) == 32
            url = f"/api/boxes/{TID}/commands/log_level"
            async with http.post(url, json={"args": {"level": "debug"}}) as response:
                assert response.status == 200
    assert box.received == [(TID, "chime_test", {}), (TID, "log_level", {"level": "debug"})]


async def test_a_box_that_does_not_know_the_key_answers_unauthorized(tmp_path: Path) -> None:
    box = Box([operator().public_raw])  # another operator's key
    async with running_console(tmp_path / "c.db", operator=operator(), transport=box) as served:
        served.console.feed(topic(TID, "availability"), b"online", True, time.time())
        async with served.session() as http:
            url = f"/api/boxes/{TID}/commands/diagnostics"
            async with http.post(url, json={}) as response:
                assert response.status == 200
                answer = await response.json()
    assert answer["ok"] is False and answer["error"] == "unauthorized"
    assert box.received == []


@pytest.mark.parametrize(
    ("command", "body", "status", "code", "field"),
    [
        ("log_level", {"args": {"level": "loud"}}, 400, "invalid_request", "args"),
        ("log_level", {"args": {}}, 400, "invalid_request", "args"),
        ("chime_test", {"args": {"volume": 11}}, 400, "invalid_request", "args"),
        ("self_destruct", {"args": {}}, 404, "unknown_command", None),
    ],
)
async def test_a_command_posd_would_refuse_is_refused_before_sending(
    tmp_path: Path, command: str, body: dict[str, object], status: int, code: str, field: str | None
) -> None:
    op = operator()
    box = Box([op.public_raw])
    async with running_console(tmp_path / "c.db", operator=op, transport=box) as served:
        served.console.feed(topic(TID, "availability"), b"online", True, time.time())
        async with served.session() as http:
            url = f"/api/boxes/{TID}/commands/{command}"
            async with http.post(url, json=body) as response:
                assert response.status == status
                error = (await response.json())["error"]
    assert (error["code"], error.get("field")) == (code, field)
    assert box.received == []


async def _post_command(
    tmp_path: Path, transport: object, *, known: bool = True
) -> tuple[int, dict[str, object]]:
    async with running_console(
        tmp_path / "c.db",
        operator=operator(),
        transport=transport,  # type: ignore[arg-type]
    ) as served:
        if known:
            served.console.feed(topic(TID, "availability"), b"online", True, time.time())
        async with (
            served.session() as http,
            http.post(f"/api/boxes/{TID}/commands/chime_test", json={"args": {}}) as response,
        ):
            return response.status, await response.json()


async def test_an_unknown_box_is_not_sent_anything(tmp_path: Path) -> None:
    status, body = await _post_command(tmp_path, Box([]), known=False)
    assert (status, body["error"]["code"]) == (404, "not_found")  # type: ignore[index]


async def test_no_transport_yet_is_a_broker_error(tmp_path: Path) -> None:
    status, body = await _post_command(tmp_path, None)
    assert (status, body["error"]["code"]) == (503, "broker_unavailable")  # type: ignore[index]


async def test_a_transport_that_cannot_send_is_a_broker_error(tmp_path: Path) -> None:
    async def down(*_: object) -> bytes:
        raise CommandUnavailable("the broker link is down since 09:00")

    status, body = await _post_command(tmp_path, down)
    assert (status, body["error"]["code"]) == (503, "broker_unavailable")  # type: ignore[index]
    assert "since 09:00" in body["error"]["message"]  # type: ignore[index]


async def test_a_box_that_never_answers_is_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(posd.fleet.console, "COMMAND_TIMEOUT_S", 0.2)
    never = asyncio.Event()

    async def silent(*_: object) -> bytes:
        await never.wait()
        raise AssertionError("unreachable")

    status, body = await _post_command(tmp_path, silent)
    assert (status, body["error"]["code"]) == (504, "command_timeout")  # type: ignore[index]


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        b"[]",
        json.dumps({"id": "someone-else", "ok": True, "result": None}).encode(),
        json.dumps({"ok": True}).encode(),
        b"x" * 300_000,
    ],
)
async def test_a_box_answer_that_is_not_a_response_is_a_bad_gateway(
    tmp_path: Path, answer: bytes
) -> None:
    async def odd(terminal_id: str, command: str, command_id: str, *_: object) -> bytes:
        return answer.replace(b'"ok": true}', b'"ok": true, "id": "%s"}' % command_id.encode())

    status, body = await _post_command(tmp_path, odd)
    assert (status, body["error"]["code"]) == (502, "bad_response")  # type: ignore[index]


def _secret(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def test_the_operator_key_file_in_pem_or_raw_base64(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = Operator(key).public_raw
    assert Operator(load_operator_key(_secret(tmp_path / "a.pem", pem))).public_raw == public
    b64 = base64.b64encode(raw) + b"\n"
    assert Operator(load_operator_key(_secret(tmp_path / "a.key", b64))).public_raw == public


def test_an_unusable_operator_key_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    secretish = base64.b64encode(os.urandom(31))
    cases = {
        "open": (
            _secret(tmp_path / "open.key", base64.b64encode(os.urandom(32)), 0o644),
            "open to",
        ),
        "rsa": (_secret(tmp_path / "rsa.pem", rsa_pem), "no usable key"),
        "short": (_secret(tmp_path / "short.key", secretish), "no usable key"),
        "missing": (tmp_path / "missing.key", "does not exist"),
        "dir": (tmp_path, "is a directory"),
    }
    for name, (path, message) in cases.items():
        with pytest.raises(SecretFileError, match=message) as raised:
            load_operator_key(path)
        assert secretish.decode() not in str(raised.value), name
