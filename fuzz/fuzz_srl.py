"""Fuzz target: SRL/1 frame decoding, message decoding and the link machine.

Arbitrary bytes go through a FrameDecoder in data-chosen chunks, every
decoded frame through decode_message, and the same bytes into a host and a
device link with a clock that steps on each chunk. Only SrlMessageError may
escape decode_message; the decoder and the links never raise. Anything else
is a bug, and so is a decoder holding more than one frame's bytes.
"""

from __future__ import annotations

import sys

from protocols.srl_frame import MAX_FRAME, Frame, FrameDecoder
from protocols.srl_link import SrlLink
from protocols.srl_messages import SrlMessageError, decode_message, encode_message


def _chunks(data: bytes) -> list[bytes]:
    if not data:
        return []
    size = 1 + data[0] % 64
    body = data[1:]
    return [body[i : i + size] for i in range(0, len(body), size)]


def target(data: bytes) -> None:
    decoder = FrameDecoder()
    links = (SrlLink("host", baudrate=9600), SrlLink("device"))
    now = 0.0
    for chunk in _chunks(data):
        for event in decoder.feed(chunk):
            if isinstance(event, Frame):
                try:
                    msg = decode_message(event.cmd, event.data)
                except SrlMessageError:
                    continue
                assert encode_message(msg) == (event.cmd, event.data)
        assert decoder.pending < MAX_FRAME
        now += 0.04 * (chunk[0] % 8) if chunk else 0.0
        for link in links:
            link.receive_data(chunk, now)
            link.handle_timeout(now)
            link.data_to_send(now)
            link.events()
    while decoder.pending:
        decoder.flush()


if __name__ == "__main__":
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
