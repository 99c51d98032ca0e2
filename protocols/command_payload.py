"""Signed operator commands of mqtt.md: verify, sign (for tools and tests), answer.

A request is JSON `{"id", "ts", "args", "sig"}`; `sig` is base64 of an Ed25519 signature
over `{command}\\n{id}\\n{ts}\\n{canonical args}`. Everything is a pure function: the
clock (`now`) and the ids seen in the last 10 minutes are passed in.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols import strict_json

CLOCK_WINDOW_S: Final = 60
REPLAY_WINDOW_S: Final = 600
MAX_PAYLOAD_BYTES: Final = 16 * 1024
MAX_ID_LEN: Final = 128
LOG_LEVELS: Final = frozenset({"debug", "info", "warning", "error"})

# Each command and the args it takes (mqtt.md); validated after the signature.
COMMANDS: Final[Mapping[str, frozenset[str]]] = {
    "chime_test": frozenset(),
    "saf_flush": frozenset(),
    "reload_config": frozenset(),
    "diagnostics": frozenset(),
    "log_level": frozenset({"level"}),
}

RejectReason = Literal[
    "malformed",
    "unsigned",
    "bad_signature",
    "clock_skew",
    "replayed",
    "unknown_command",
    "invalid_args",
]
# Rejections mqtt.md answers with "unauthorized" and a security event.
SECURITY_REASONS: Final = frozenset(
    {"malformed", "unsigned", "bad_signature", "clock_skew", "replayed"}
)


@dataclass(frozen=True)
class VerifiedCommand:
    command: str
    id: str
    ts: int
    args: Mapping[str, object]
    key_index: int  # which operator key signed it


@dataclass(frozen=True)
class CommandRejected:
    reason: RejectReason
    detail: str
    id: str | None = None  # the request's id when it could be read, for the response

    @property
    def error(self) -> str:
        """The `error` of the response: `unauthorized` for every security refusal."""
        return "unauthorized" if self.reason in SECURITY_REASONS else self.reason

    @property
    def is_security_event(self) -> bool:
        return self.reason in SECURITY_REASONS


def canonical_args(args: Mapping[str, object]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"))


def signed_bytes(command: str, command_id: str, ts: int, args: Mapping[str, object]) -> bytes:
    return f"{command}\n{command_id}\n{ts}\n{canonical_args(args)}".encode()


def sign_command(
    command: str,
    command_id: str,
    ts: int,
    args: Mapping[str, object],
    private_key: Ed25519PrivateKey,
) -> bytes:
    """The request payload an operator tool publishes."""
    sig = private_key.sign(signed_bytes(command, command_id, ts, args))
    payload = {
        "id": command_id,
        "ts": ts,
        "args": dict(args),
        "sig": base64.b64encode(sig).decode(),
    }
    return json.dumps(payload).encode()


def verify_command(
    command: str,
    payload: bytes,
    operator_keys: Sequence[bytes],
    now: int,
    seen_ids: Container[str],
) -> VerifiedCommand | CommandRejected:
    """Check a request in the order: shape, signature, clock, replay, command, args.

    The signature comes before the clock and replay checks so that an unsigned message
    learns nothing about posd's clock or history. The caller adds an accepted id to its
    seen set. Never raises on bad input.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return CommandRejected("malformed", f"payload over {MAX_PAYLOAD_BYTES} bytes")
    try:
        raw = strict_json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return CommandRejected("malformed", "not a UTF-8 JSON document")
    if not isinstance(raw, dict):
        return CommandRejected("malformed", "not a JSON object")
    command_id = raw.get("id")
    if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_ID_LEN:
        return CommandRejected("malformed", f"id must be a string of 1 to {MAX_ID_LEN} characters")
    ts = raw.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        return CommandRejected("malformed", "ts must be an integer", command_id)
    args = raw.get("args")
    if not isinstance(args, dict):
        return CommandRejected("malformed", "args must be an object", command_id)
    sig_text = raw.get("sig")
    if sig_text is None or sig_text == "":
        return CommandRejected("unsigned", "no signature", command_id)
    if not isinstance(sig_text, str):
        return CommandRejected("bad_signature", "sig must be base64 text", command_id)
    try:
        sig = base64.b64decode(sig_text, validate=True)
    except binascii.Error:
        return CommandRejected("bad_signature", "sig is not base64", command_id)
    if len(sig) != 64:
        return CommandRejected("bad_signature", "sig is not 64 bytes", command_id)

    message = signed_bytes(command, command_id, ts, args)
    key_index = _signed_by(message, sig, operator_keys)
    if key_index is None:
        return CommandRejected("bad_signature", "no operator key verifies it", command_id)
    if abs(now - ts) > CLOCK_WINDOW_S:
        return CommandRejected("clock_skew", f"ts is {ts - now:+d} s from posd's clock", command_id)
    if command_id in seen_ids:
        return CommandRejected("replayed", "id already used", command_id)
    if command not in COMMANDS:
        return CommandRejected("unknown_command", "no such command", command_id)
    problem = _args_problem(command, args)
    if problem is not None:
        return CommandRejected("invalid_args", problem, command_id)
    return VerifiedCommand(command, command_id, ts, args, key_index)


def _signed_by(message: bytes, sig: bytes, operator_keys: Sequence[bytes]) -> int | None:
    for index, raw_key in enumerate(operator_keys):
        key = Ed25519PublicKey.from_public_bytes(raw_key)
        try:
            key.verify(sig, message)
        except InvalidSignature:
            continue
        return index
    return None


def _args_problem(command: str, args: Mapping[str, object]) -> str | None:
    expected = COMMANDS[command]
    if set(args) != expected:
        wanted = ", ".join(sorted(expected)) or "none"
        return f"args must be exactly: {wanted}"
    if command == "log_level" and args.get("level") not in LOG_LEVELS:
        return f"level must be one of {', '.join(sorted(LOG_LEVELS))}"
    return None


@dataclass
class ReplayWindow:
    """The ids accepted in the last 10 minutes, pruned as time passes (time passed in)."""

    window_s: int = REPLAY_WINDOW_S
    _seen: dict[str, int] = field(default_factory=dict)

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._seen

    def add(self, command_id: str, now: int) -> None:
        self.prune(now)
        self._seen[command_id] = now

    def prune(self, now: int) -> None:
        for command_id in [
            i for i, seen_at in self._seen.items() if now - seen_at >= self.window_s
        ]:
            del self._seen[command_id]


def response_payload(
    command_id: str | None, *, result: object = None, error: str | None = None
) -> bytes:
    """`{"id", "ok": true, "result"}` or, when `error` is given, `{"id", "ok": false, "error"}`."""
    if error is not None:
        return json.dumps({"id": command_id, "ok": False, "error": error}).encode()
    return json.dumps({"id": command_id, "ok": True, "result": result}).encode()
