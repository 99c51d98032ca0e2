"""Fuzz target: the MQTT payloads posd parses, 배달서구 orders and signed commands.

parse_order may raise only OrderPayloadError; verify_command never raises. Besides the raw
bytes, each run splices them as one value into a valid order and into the args of a
correctly signed command, so the checks behind JSON parsing and the signature are reached.
"""

from __future__ import annotations

import contextlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.command_payload import (
    CommandRejected,
    VerifiedCommand,
    sign_command,
    verify_command,
)
from protocols.order_payload import Order, OrderPayloadError, parse_order

OPERATOR = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = [OPERATOR.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)]
NOW = 1_764_000_000
ORDER: dict[str, object] = {
    "order_id": "B-1",
    "placed_at": "2026-11-25T12:03:00+09:00",
    "items": [{"name": "짜장면", "qty": 2, "price": 7000}],
    "total": 14000,
    "requested_prep_min": 20,
    "note": None,
}
ORDER_SLOTS = [
    "order_id",
    "placed_at",
    "items",
    "total",
    "requested_prep_min",
    "note",
    "items.name",
    "items.qty",
    "items.price",
    "extra",
]


def _value(data: bytes) -> object:
    text = data.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _order_with(data: bytes) -> bytes:
    slot = ORDER_SLOTS[data[0] % len(ORDER_SLOTS)] if data else "order_id"
    doc = json.loads(json.dumps(ORDER))
    value = _value(data[1:])
    if slot.startswith("items."):
        doc["items"][0][slot.removeprefix("items.")] = value
    else:
        doc[slot] = value
    return json.dumps(doc).encode()


def _check_order(payload: bytes) -> None:
    with contextlib.suppress(OrderPayloadError):
        assert isinstance(parse_order(payload), Order)


def target(data: bytes) -> None:
    _check_order(data)
    _check_order(_order_with(data))
    for command in ("log_level", "saf_flush"):
        result = verify_command(command, data, KEYS, NOW, {"seen"})
        assert isinstance(result, VerifiedCommand | CommandRejected)
    args = _value(data)
    if isinstance(args, dict):
        signed = sign_command("log_level", "c-1", NOW, args, OPERATOR)
        result = verify_command("log_level", signed, KEYS, NOW, set())
        assert isinstance(result, VerifiedCommand | CommandRejected)
        assert not isinstance(result, CommandRejected) or not result.is_security_event
