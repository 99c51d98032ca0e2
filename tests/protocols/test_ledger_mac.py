"""The ledger MAC, checked against values computed here with the standard library."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.ledger_mac import MacKeyError, compute_mac, parse_mac_key_hex, verify_mac

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")


def test_known_answer() -> None:
    data = b"0800" + bytes(8)
    expected = hmac.new(KEY, data, hashlib.sha256).digest()[:8]
    assert compute_mac(KEY, data) == expected
    # Pinned so a change of algorithm cannot pass unnoticed.
    assert compute_mac(KEY, b"") == bytes.fromhex("d38b42096d80f45f")


@given(st.binary(max_size=2000), st.binary(min_size=32, max_size=32))
def test_verify_accepts_own_mac_and_refuses_any_change(data: bytes, key: bytes) -> None:
    mac = compute_mac(key, data)
    assert len(mac) == 8
    assert verify_mac(key, data, mac)
    assert not verify_mac(key, data + b"\x00", mac)
    assert not verify_mac(key, data, bytes([mac[0] ^ 1]) + mac[1:])
    assert not verify_mac(key, data, mac[:7])


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_must_be_32_bytes(size: int) -> None:
    with pytest.raises(MacKeyError):
        compute_mac(bytes(size), b"x")


def test_parse_mac_key_hex() -> None:
    assert parse_mac_key_hex(KEY.hex() + "\n") == KEY
    assert parse_mac_key_hex("  " + KEY.hex().upper()) == KEY
    for bad in ["", KEY.hex()[:-2], KEY.hex() + "00", "zz" + KEY.hex()[2:]]:
        with pytest.raises(MacKeyError) as info:
            parse_mac_key_hex(bad)
        assert KEY.hex() not in str(info.value)
