"""Fuzz target: the 서로e음 QR check, on the bytes as scanned text and as a TLV payload.

verify_qr must never raise, whatever it is given.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.qr_token import QR_REASONS, QrRejected, QrToken, verify_qr

# A fixed platform key so the fuzzer can reach the checks behind the key lookup.
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEYS = {1: KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}
NOW = 1_764_000_000


def _check(text: str) -> None:
    result = verify_qr(text, KEYS, NOW)
    assert isinstance(result, QrToken | QrRejected)
    if isinstance(result, QrRejected):
        assert result.reason in QR_REASONS


def target(data: bytes) -> None:
    _check(data.decode("utf-8", errors="replace"))
    _check(base64.b64encode(data).decode("ascii"))
