"""Fuzz target: the MQTT payloads posd parses, 배달서구 orders and signed commands.

parse_order may raise only OrderPayloadError; verify_command never raises.
"""

from __future__ import annotations

import contextlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.command_payload import CommandRejected, VerifiedCommand, verify_command
from protocols.order_payload import Order, OrderPayloadError, parse_order

OPERATOR = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = [OPERATOR.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)]
NOW = 1_764_000_000


def target(data: bytes) -> None:
    with contextlib.suppress(OrderPayloadError):
        assert isinstance(parse_order(data), Order)
    for command in ("log_level", "saf_flush"):
        result = verify_command(command, data, KEYS, NOW, {"seen"})
        assert isinstance(result, VerifiedCommand | CommandRejected)
