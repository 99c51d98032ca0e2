"""CRC-16/CCITT-FALSE, the frame check of SRL/1.

Poly 0x1021, init 0xFFFF, no reflection, xorout 0. The stdlib's
``binascii.crc_hqx`` is exactly this CRC once seeded with 0xFFFF, and runs in C.
"""

from __future__ import annotations

import binascii

CRC16_INIT = 0xFFFF
CRC16_CHECK = 0x29B1  # CRC of b"123456789", the catalogue's check value


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = CRC16_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data``; pass a previous result as ``crc`` to continue it."""
    return binascii.crc_hqx(data, crc)
