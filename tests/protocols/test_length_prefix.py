"""2-byte length framing: encoder, stream decoder with any split, and its errors."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.length_prefix import FramingError, LengthPrefixDecoder, frame


def test_frame_known_bytes() -> None:
    assert frame(b"0800") == b"\x00\x040800"
    assert frame(b"x" * 300)[:2] == b"\x01\x2c"


def test_frame_refuses_empty_and_too_long() -> None:
    with pytest.raises(FramingError):
        frame(b"")
    with pytest.raises(FramingError):
        frame(b"x" * 4097)
    assert len(frame(b"x" * 5000, max_length=0xFFFF)) == 5002
    with pytest.raises(FramingError):
        frame(b"x" * 0x10000, max_length=0xFFFF)


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    st.lists(st.integers(0, 3000), max_size=10),
)
def test_any_split_gives_the_same_messages(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = LengthPrefixDecoder()
    received: list[bytes] = []
    for start, end in itertools.pairwise(points):
        received += decoder.feed(stream[start:end])
    assert received == messages
    assert decoder.buffered == 0


def test_partial_message_waits() -> None:
    decoder = LengthPrefixDecoder()
    assert decoder.feed(b"\x00") == []
    assert decoder.feed(b"\x03ab") == []
    assert decoder.buffered == 4
    assert decoder.feed(b"c\x00") == [b"abc"]
    assert decoder.buffered == 1


def test_zero_length_is_an_error_and_sticks() -> None:
    decoder = LengthPrefixDecoder()
    with pytest.raises(FramingError, match="length prefix 0"):
        decoder.feed(b"\x00\x00")
    with pytest.raises(FramingError):
        decoder.feed(frame(b"fine"))


def test_over_max_is_an_error() -> None:
    decoder = LengthPrefixDecoder(max_length=10)
    with pytest.raises(FramingError, match="11"):
        decoder.feed(b"\x00\x0b")


def test_messages_before_a_bad_prefix_are_delivered_first() -> None:
    decoder = LengthPrefixDecoder()
    assert decoder.feed(frame(b"one") + frame(b"two") + b"\xff\xff") == [b"one", b"two"]
    with pytest.raises(FramingError):
        decoder.feed(b"")


def test_max_length_bounds() -> None:
    for bad in (0, 0x10000):
        with pytest.raises(ValueError):
            LengthPrefixDecoder(max_length=bad)
