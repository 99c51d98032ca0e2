"""Fuzz target: BER-TLV decoding, nested templates and the EMV element helpers.

Only TlvError and EmvError may escape the decoders; anything else is a bug. A decoded
list must encode back to bytes that decode to the same list.
"""

from __future__ import annotations

from protocols.ber_tlv import TlvError, decode_tlv, encode_tlv, find_tag
from protocols.emv import EmvError, Track2, expiry_from_5f24, pan_from_5a


def target(data: bytes) -> None:
    try:
        items = decode_tlv(data)
    except TlvError:
        return
    assert decode_tlv(encode_tlv(items)) == items
    for tag, helper in ((0x5A, pan_from_5a), (0x5F24, expiry_from_5f24), (0x57, Track2.parse)):
        try:
            found = find_tag(items, tag)
            if found is not None:
                helper(found.value)
        except (TlvError, EmvError):
            pass
