from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fuzz.fuzz_srl import target
from protocols.srl_frame import MAX_FRAME, FrameDecoder, encode_frame
from protocols.srl_messages import CardData, EntryMode, encode_message


@given(st.binary(max_size=4000))
def test_fuzz_target_on_arbitrary_bytes(data: bytes) -> None:
    target(data)


_frames = st.builds(
    lambda seq, cmd, body: encode_frame(seq, cmd, body),
    st.integers(0, 255),
    st.sampled_from([0x01, 0x10, 0x12, 0x81, 0x90, 0xA0, 0xA1, 0xA2, 0xEE, 0x55]),
    st.binary(max_size=64),
)


@given(st.lists(st.one_of(_frames, st.binary(max_size=20)), max_size=20), st.integers(0, 255))
def test_fuzz_target_on_frames_mixed_with_garbage(parts: list[bytes], chunking: int) -> None:
    target(bytes([chunking]) + b"".join(parts))


def test_fuzz_target_on_a_valid_card_data_frame() -> None:
    cmd, data = encode_message(CardData(EntryMode.CHIP, bytes.fromhex("5a08941000000000001f")))
    target(b"\x10" + encode_frame(1, cmd, data))


@given(st.lists(st.binary(max_size=3000), max_size=6))
def test_decoder_buffer_stays_bounded(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    for chunk in chunks:
        decoder.feed(chunk)
        assert decoder.pending < MAX_FRAME


def test_decoder_buffer_bounded_by_a_flood_of_false_starts() -> None:
    # STX + a maximal LEN, over and over: each false frame must give way.
    decoder = FrameDecoder()
    decoder.feed(b"\x02\x04\x00" * 2000)
    assert decoder.pending < MAX_FRAME
