"""Fuzz target: the ledger link's receive path, framing then ISO 8583 decode and MAC check.

Only LedgerFormatError and FramingError may escape the decoders. A message that decodes
must encode back to the same bytes (the profile has one encoding per message), which
catches a decoder that accepts what the encoder would never produce.
"""

from __future__ import annotations

from protocols.iso8583_profile import MAC_FIELD, LedgerFormatError, decode_message, encode_message
from protocols.ledger_messages import decode_request, decode_response, encode
from protocols.length_prefix import FramingError, LengthPrefixDecoder

KEY = bytes(range(32))


def _message(data: bytes) -> None:
    try:
        iso = decode_message(data)
    except LedgerFormatError:
        return
    fields = {n: v for n, v in iso.fields.items() if n != MAC_FIELD}
    again = encode_message(iso.mti, fields, None if MAC_FIELD not in iso.fields else bytes(32))
    assert len(again) == len(data)
    if MAC_FIELD not in iso.fields:
        assert again == data
    for decode in (decode_request, decode_response):
        try:
            inbound = decode(data, KEY)
        except LedgerFormatError:
            continue
        if inbound.mac_valid:
            assert encode(inbound.message, KEY) == data


def target(data: bytes) -> None:
    _message(data)
    decoder = LengthPrefixDecoder()
    try:
        for message in decoder.feed(data):
            _message(message)
        decoder.feed(b"")
    except FramingError:
        pass
