from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocols.crc16 import CRC16_CHECK, crc16_ccitt_false


def bitwise_crc(data: bytes) -> int:
    """The catalogue definition, bit by bit: poly 0x1021, init 0xFFFF, no reflection."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def test_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == CRC16_CHECK == 0x29B1


def test_empty_input_is_the_init_value() -> None:
    assert crc16_ccitt_false(b"") == 0xFFFF


def test_single_byte_known_answer() -> None:
    assert crc16_ccitt_false(b"A") == 0xB915


def test_continuation_equals_one_pass() -> None:
    assert crc16_ccitt_false(b"6789", crc16_ccitt_false(b"12345")) == 0x29B1


@given(st.binary(max_size=300))
def test_matches_the_bitwise_definition(data: bytes) -> None:
    assert crc16_ccitt_false(data) == bitwise_crc(data)
