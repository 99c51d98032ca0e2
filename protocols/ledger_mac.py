"""The ledger MAC: HMAC-SHA256 with the terminal's 32-byte key, first 8 bytes."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

MAC_KEY_LEN: Final = 32
MAC_LEN: Final = 8


class MacKeyError(ValueError):
    """The MAC key is not 32 bytes."""


def _check_key(key: bytes) -> None:
    if len(key) != MAC_KEY_LEN:
        raise MacKeyError(f"MAC key must be {MAC_KEY_LEN} bytes, is {len(key)}")


def compute_mac(key: bytes, mac_input: bytes) -> bytes:
    """The 8-byte MAC of `mac_input` (every byte of the message before field 64)."""
    _check_key(key)
    return hmac.new(key, mac_input, hashlib.sha256).digest()[:MAC_LEN]


def verify_mac(key: bytes, mac_input: bytes, mac: bytes) -> bool:
    """True when `mac` is right for `mac_input`; compared in constant time."""
    return hmac.compare_digest(compute_mac(key, mac_input), mac)


def parse_mac_key_hex(text: str) -> bytes:
    """A MAC key file's content: 64 hex characters, surrounding whitespace ignored."""
    stripped = text.strip()
    if len(stripped) != 2 * MAC_KEY_LEN:
        raise MacKeyError(f"MAC key must be {2 * MAC_KEY_LEN} hex characters")
    try:
        return bytes.fromhex(stripped)
    except ValueError:
        raise MacKeyError("MAC key must be hex characters only") from None
