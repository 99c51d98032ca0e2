"""Signed operator commands: a good one, each refusal reason, and the response payloads."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from protocols.command_payload import (
    CommandRejected,
    ReplayWindow,
    VerifiedCommand,
    response_payload,
    sign_command,
    signed_bytes,
    verify_command,
)

OPERATOR = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
NOW = 1_764_000_000


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


KEYS = [raw_public(OTHER), raw_public(OPERATOR)]


def test_signed_bytes_are_the_documented_form() -> None:
    assert signed_bytes("log_level", "c-1", 17, {"level": "debug", "a": [1, 2]}) == (
        b'log_level\nc-1\n17\n{"a":[1,2],"level":"debug"}'
    )


def test_good_command_verifies_with_the_key_that_signed_it() -> None:
    payload = sign_command("log_level", "c-1", NOW - 59, {"level": "debug"}, OPERATOR)
    result = verify_command("log_level", payload, KEYS, NOW, set())
    assert result == VerifiedCommand("log_level", "c-1", NOW - 59, {"level": "debug"}, 1)


def _tamper(payload: bytes, **changes: object) -> bytes:
    doc = json.loads(payload)
    doc.update(changes)
    return json.dumps(doc).encode()


GOOD = sign_command("saf_flush", "c-2", NOW, {}, OPERATOR)


@pytest.mark.parametrize(
    ("command", "payload", "reason"),
    [
        ("saf_flush", b"\xff", "malformed"),
        ("saf_flush", b"{", "malformed"),
        ("saf_flush", b"[]", "malformed"),
        ("saf_flush", b"x" * 20000, "malformed"),
        # A signed field given twice: the verifier and the doer could read different values.
        ("saf_flush", GOOD[:-1] + b', "id": "other"}', "malformed"),
        ("saf_flush", _tamper(GOOD, id=""), "malformed"),
        ("saf_flush", _tamper(GOOD, id=5), "malformed"),
        ("saf_flush", _tamper(GOOD, id="x" * 129), "malformed"),
        ("saf_flush", _tamper(GOOD, ts="1764000000"), "malformed"),
        ("saf_flush", _tamper(GOOD, ts=True), "malformed"),
        ("saf_flush", _tamper(GOOD, args=[]), "malformed"),
        ("saf_flush", _tamper(GOOD, sig=""), "unsigned"),
        ("saf_flush", _tamper(GOOD, sig=None), "unsigned"),
        ("saf_flush", json.dumps({"id": "c-2", "ts": NOW, "args": {}}).encode(), "unsigned"),
        ("saf_flush", _tamper(GOOD, sig=7), "bad_signature"),
        ("saf_flush", _tamper(GOOD, sig="not base64!"), "bad_signature"),
        ("saf_flush", _tamper(GOOD, sig=base64.b64encode(bytes(63)).decode()), "bad_signature"),
        ("saf_flush", _tamper(GOOD, sig=base64.b64encode(bytes(64)).decode()), "bad_signature"),
        ("saf_flush", _tamper(GOOD, ts=NOW + 1), "bad_signature"),  # signed fields changed
        ("saf_flush", _tamper(GOOD, args={"x": 1}), "bad_signature"),
        ("chime_test", GOOD, "bad_signature"),  # signed for another command (topic)
        (
            "saf_flush",
            sign_command("saf_flush", "c-2", NOW, {}, Ed25519PrivateKey.generate()),
            "bad_signature",
        ),
        ("saf_flush", sign_command("saf_flush", "c-3", NOW - 61, {}, OPERATOR), "clock_skew"),
        ("saf_flush", sign_command("saf_flush", "c-3", NOW + 61, {}, OPERATOR), "clock_skew"),
        ("saf_flush", sign_command("saf_flush", "seen", NOW, {}, OPERATOR), "replayed"),
        ("reboot", sign_command("reboot", "c-4", NOW, {}, OPERATOR), "unknown_command"),
        ("log_level", sign_command("log_level", "c-5", NOW, {}, OPERATOR), "invalid_args"),
        (
            "log_level",
            sign_command("log_level", "c-5", NOW, {"level": "loud"}, OPERATOR),
            "invalid_args",
        ),
        (
            "diagnostics",
            sign_command("diagnostics", "c-6", NOW, {"x": 1}, OPERATOR),
            "invalid_args",
        ),
    ],
)
def test_each_refusal(command: str, payload: bytes, reason: str) -> None:
    result = verify_command(command, payload, KEYS, NOW, {"seen"})
    assert isinstance(result, CommandRejected)
    assert result.reason == reason
    security = reason in {"malformed", "unsigned", "bad_signature", "clock_skew", "replayed"}
    assert result.is_security_event == security
    assert result.error == ("unauthorized" if security else reason)


def test_no_operator_keys_refuses_everything() -> None:
    result = verify_command("saf_flush", GOOD, [], NOW, set())
    assert isinstance(result, CommandRejected) and result.reason == "bad_signature"


def test_replay_window() -> None:
    window = ReplayWindow()
    window.add("a", NOW)
    assert "a" in window
    result = verify_command(
        "saf_flush", sign_command("saf_flush", "a", NOW, {}, OPERATOR), KEYS, NOW + 10, window
    )
    assert isinstance(result, CommandRejected) and result.reason == "replayed"
    window.prune(NOW + 599)
    assert "a" in window
    window.prune(NOW + 600)
    assert "a" not in window


def test_response_payloads() -> None:
    assert json.loads(response_payload("c-1", result={"n": 1})) == {
        "id": "c-1",
        "ok": True,
        "result": {"n": 1},
    }
    assert json.loads(response_payload("c-1", error="unauthorized")) == {
        "id": "c-1",
        "ok": False,
        "error": "unauthorized",
    }


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = verify_command("saf_flush", data, KEYS, NOW, set())
    assert isinstance(result, CommandRejected)
