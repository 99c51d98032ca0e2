"""Fuzz target: the ledger link's receive path, framing then ISO 8583 decode and MAC check.

Only LedgerFormatError and FramingError may escape the decoders. A message that decodes
must encode back to the same bytes (the profile has one encoding per message, its MAC in
64 or 128 as profile 2 places it), which catches a decoder that accepts what the encoder
would never produce. A typed message re-encodes to its bytes when its MAC was right,
except an 0810, which drops what it ignores (any field beyond its own, a MAC among them).
"""

from __future__ import annotations

from protocols.iso8583_profile import MAC_FIELDS, LedgerFormatError, decode_message, encode_message
from protocols.ledger_messages import NetworkResponse, decode_request, decode_response, encode
from protocols.length_prefix import FramingError, LengthPrefixDecoder

KEY = bytes(range(32))


def _message(data: bytes) -> None:
    try:
        iso = decode_message(data)
    except LedgerFormatError:
        return
    fields = {n: v for n, v in iso.fields.items() if n not in MAC_FIELDS}
    again = encode_message(iso.mti, fields, None if iso.mac is None else bytes(32))
    assert len(again) == len(data)
    if iso.mac is None:
        assert again == data
    else:
        assert again[: -len(iso.mac)] == iso.mac_input == data[: -len(iso.mac)]
    for decode in (decode_request, decode_response):
        try:
            inbound = decode(data, KEY)
        except LedgerFormatError:
            continue
        message = inbound.message
        if isinstance(message, NetworkResponse):
            assert encode(message, KEY) == encode_message(iso.mti, message.fields())
        elif inbound.mac_valid:
            assert encode(message, KEY) == data


def target(data: bytes) -> None:
    _message(data)
    decoder = LengthPrefixDecoder()
    try:
        for message in decoder.feed(data):
            _message(message)
        decoder.feed(b"")
    except FramingError:
        pass
