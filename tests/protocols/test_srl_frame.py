from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.srl_frame import (
    FRAME,
    MAX_DATA,
    MAX_FRAME,
    Ack,
    BadFrame,
    DecoderEvent,
    Frame,
    FrameDecoder,
    FrameError,
    Nak,
    Noise,
    encode_frame,
)

PING_SEQ7 = bytes([0x02, 0x00, 0x02, 0x07, 0x01, 0x03])  # STX LEN=2 SEQ CMD ETX


def with_crc(body: bytes) -> bytes:
    """Append the CRC computed bit by bit, independent of the code under test."""
    crc = 0xFFFF
    for byte in body[1:]:
        crc ^= byte << 8
        for _ in range(8):
            crc = (((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)) & 0xFFFF
    return body + crc.to_bytes(2, "big")


def frames(events: list[DecoderEvent]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


def test_hand_assembled_ping_matches_encoder() -> None:
    wire = with_crc(PING_SEQ7)
    assert encode_frame(7, 0x01, b"") == wire


def test_hand_assembled_start_read_matches_encoder() -> None:
    data = bytes.fromhex("00002710") + bytes.fromhex("019A") + bytes([0x07, 30])
    body = bytes([0x02, 0x00, 2 + len(data), 0xFF, 0x10]) + data + bytes([0x03])
    assert encode_frame(255, 0x10, data) == with_crc(body)


def test_construct_layout_parses_what_encoder_builds() -> None:
    wire = encode_frame(3, 0xA0, b"\x02\x03\x06\x15")
    parsed = FRAME.parse(wire)
    assert parsed.body.value.seq == 3
    assert parsed.body.value.cmd == 0xA0
    assert parsed.body.value.data == b"\x02\x03\x06\x15"


@pytest.mark.parametrize(
    ("seq", "cmd", "data"),
    [(-1, 1, b""), (256, 1, b""), (0, 256, b""), (0, -1, b""), (0, 1, bytes(MAX_DATA + 1))],
)
def test_encoder_refuses_out_of_range(seq: int, cmd: int, data: bytes) -> None:
    with pytest.raises(FrameError):
        encode_frame(seq, cmd, data)


def test_largest_frame_round_trips() -> None:
    data = (bytes(range(256)) * 4)[:MAX_DATA]
    wire = encode_frame(1, 0xA0, data)
    assert len(wire) == MAX_FRAME
    assert frames(FrameDecoder().feed(wire)) == [Frame(1, 0xA0, data, int.from_bytes(wire[-2:]))]


@given(
    seq=st.integers(0, 255),
    cmd=st.integers(0, 255),
    data=st.binary(max_size=MAX_DATA),
    cuts=st.lists(st.integers(0, MAX_FRAME), max_size=5),
)
def test_any_frame_decodes_however_it_is_chunked(
    seq: int, cmd: int, data: bytes, cuts: list[int]
) -> None:
    wire = encode_frame(seq, cmd, data)
    decoder = FrameDecoder()
    events: list[DecoderEvent] = []
    previous = 0
    for cut in [*sorted(c for c in cuts if c <= len(wire)), len(wire)]:
        events += decoder.feed(wire[previous:cut])
        previous = cut
    assert events == [Frame(seq, cmd, data, int.from_bytes(wire[-2:]))]
    assert decoder.pending == 0


def test_stx_and_etx_inside_data() -> None:
    data = b"\x02\x03\x02\x00\x02\x03"
    wire = encode_frame(9, 0xA0, data)
    assert frames(FrameDecoder().feed(wire)) == [Frame(9, 0xA0, data, int.from_bytes(wire[-2:]))]


def test_ack_nak_inside_data_are_data() -> None:
    data = b"\x06\x15\x06"
    events = FrameDecoder().feed(encode_frame(1, 0xA0, data))
    assert len(events) == 1 and isinstance(events[0], Frame) and events[0].data == data


def test_ack_and_nak_outside_frames() -> None:
    wire = b"\x06" + encode_frame(1, 0x90) + b"\x15\x06"
    events = FrameDecoder().feed(wire)
    assert [type(e) for e in events] == [Ack, Frame, Nak, Ack]


def test_noise_between_frames_is_counted_and_skipped() -> None:
    decoder = FrameDecoder()
    a, b = encode_frame(1, 0x90), encode_frame(2, 0xB0)
    events = decoder.feed(b"\xff\x00" + a + b"hello" + b)
    assert [type(e) for e in events] == [Noise, Frame, Noise, Frame]
    assert decoder.noise_bytes == 7


@pytest.mark.parametrize("length", [0, 1, 1025, 0xFFFF])
def test_length_out_of_range_is_a_bad_frame_and_resyncs(length: int) -> None:
    good = encode_frame(4, 0x81, b"m;f;s")
    decoder = FrameDecoder()
    events = decoder.feed(bytes([0x02]) + length.to_bytes(2, "big") + good)
    assert events[0] == BadFrame("length")
    assert frames(events) == [Frame(4, 0x81, b"m;f;s", int.from_bytes(good[-2:]))]
    assert decoder.resyncs == 1


def test_bad_crc_is_reported_and_the_next_frame_still_found() -> None:
    bad = bytearray(encode_frame(1, 0xA0, b"card"))
    bad[-1] ^= 0x01
    good = encode_frame(2, 0xA0, b"card")
    events = FrameDecoder().feed(bytes(bad) + good)
    assert events[0] == BadFrame("crc")
    assert frames(events) == [Frame(2, 0xA0, b"card", int.from_bytes(good[-2:]))]


def test_missing_etx_is_a_bad_frame() -> None:
    bad = bytearray(encode_frame(1, 0x90))
    bad[5] = 0x04
    events = FrameDecoder().feed(bytes(bad))
    assert events[0] == BadFrame("etx")


def test_resync_finds_a_frame_hidden_behind_a_false_stx() -> None:
    # Noise 0x02 0x00 reads as STX + LEN_HI; the real frame's STX becomes LEN_LO,
    # so the false frame swallows the real one. Resuming at the byte after the
    # false STX must still find it.
    good = encode_frame(5, 0x91)
    events = FrameDecoder().feed(b"\x02\x00" + good)
    assert isinstance(events[0], BadFrame)
    assert frames(events) == [Frame(5, 0x91, b"", int.from_bytes(good[-2:]))]


def test_truncated_frame_waits_then_flush_reports_it() -> None:
    decoder = FrameDecoder()
    wire = encode_frame(1, 0xA0, b"x" * 40)
    assert decoder.feed(wire[:20]) == []
    assert decoder.pending == 20
    assert decoder.flush() == [BadFrame("truncated"), Noise(19)]
    assert decoder.pending == 0


def test_truncated_frame_followed_by_a_whole_one() -> None:
    first = encode_frame(1, 0xA0, b"x" * 40)
    second = encode_frame(1, 0xA0, b"x" * 40)
    events = FrameDecoder().feed(first[:10] + second)
    assert isinstance(events[0], BadFrame)
    assert frames(events) == [Frame(1, 0xA0, b"x" * 40, int.from_bytes(second[-2:]))]


def test_flush_when_idle_does_nothing() -> None:
    assert FrameDecoder().flush() == []


def test_reset_drops_a_partial_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(1, 0x90)[:4])
    decoder.reset()
    assert decoder.pending == 0
    assert frames(decoder.feed(encode_frame(2, 0x90))) != []


@given(st.binary(max_size=5000))
def test_buffer_never_exceeds_one_frame(data: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(data)
    assert decoder.pending < MAX_FRAME


def test_frame_repr_hides_data() -> None:
    frame = FrameDecoder().feed(encode_frame(1, 0xA0, b"9410123456789012"))[0]
    assert "9410" not in repr(frame)
