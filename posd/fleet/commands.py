"""Signed commands from the console to a box (mqtt.md's Commands), over an injected transport.

The console signs with its operator key (protocols.command_payload), checks its own request
with the very verifier posd runs, hands it to the transport the MQTT wiring provides, and
checks the box's answer. The transport publishes on `{base}/{terminal_id}/request/{command}`
and returns the payload on `…/response/{command}` whose `id` is the request's, raising
TimeoutError when none comes in time and CommandUnavailable when it cannot send at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.command_payload import (
    COMMANDS,
    CommandRejected,
    sign_command,
    verify_command,
)

COMMAND_TIMEOUT_S: Final = 10.0
MAX_RESPONSE_BYTES: Final = 256 * 1024

# (terminal_id, command, command_id, request payload, timeout_s) -> response payload
CommandTransport = Callable[[str, str, str, bytes, float], Awaitable[bytes]]


class CommandError(Exception):
    """A command the console cannot send or whose answer is unusable; `code` for the API."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class CommandUnavailable(Exception):
    """Raised by a transport that cannot send now (the broker link is down)."""


@dataclass(frozen=True)
class Operator:
    key: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def request(self, command: str, args: Mapping[str, object], now: int) -> tuple[str, bytes]:
        """(command id, signed payload), refused as posd would refuse it (CommandError)."""
        if command not in COMMANDS:
            raise CommandError(
                404, "unknown_command", f"no command {command!r}; one of {', '.join(COMMANDS)}"
            )
        command_id = uuid.uuid4().hex
        payload = sign_command(command, command_id, now, args, self.key)
        checked = verify_command(command, payload, [self.public_raw], now, ())
        if isinstance(checked, CommandRejected):
            raise CommandError(400, "invalid_request", f"args: {checked.detail}", "args")
        return command_id, payload


def check_response(command_id: str, payload: bytes) -> dict[str, object]:
    """The box's `{"id", "ok": true, "result"}` or `{"id", "ok": false, "error"}`."""
    bad = CommandError(502, "bad_response", "the box answered something that is not a response")
    if len(payload) > MAX_RESPONSE_BYTES:
        raise bad
    try:
        answer = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad from None
    if not isinstance(answer, dict) or answer.get("id") != command_id:
        raise bad
    ok = answer.get("ok")
    if ok is True and "result" in answer:
        return {"id": command_id, "ok": True, "result": answer["result"]}
    if ok is False and isinstance(answer.get("error"), str):
        return {"id": command_id, "ok": False, "error": answer["error"]}
    raise bad
