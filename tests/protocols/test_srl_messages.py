from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.srl_frame import MAX_DATA
from protocols.srl_messages import (
    CURRENCY_KRW,
    Cancel,
    Cancelled,
    CardData,
    CardInserted,
    CardRemoved,
    Cmd,
    Complete,
    CompleteResult,
    EntryMode,
    Message,
    Ping,
    Pong,
    ReaderError,
    ReadFailed,
    ReadFailReason,
    ReadStarted,
    SrlMessageError,
    StartRead,
    decode_message,
    encode_message,
)

# Text that has a UTF-8 form (no lone surrogates): only such text can cross the wire.
_text = st.text(st.characters(blacklist_characters=";", blacklist_categories=["Cs"]), max_size=40)
_tlv = st.binary(min_size=1, max_size=300)

messages: st.SearchStrategy[Message] = st.one_of(
    st.just(Ping()),
    st.builds(Pong, _text, _text, _text),
    st.builds(
        StartRead,
        amount=st.integers(0, 0xFFFFFFFF),
        currency=st.just(CURRENCY_KRW),
        modes=st.integers(1, 7),
        timeout_s=st.integers(1, 255),
    ),
    st.just(ReadStarted()),
    st.just(Cancel()),
    st.just(Cancelled()),
    st.builds(
        Complete,
        st.text(st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=2, max_size=2),
        st.binary(max_size=200),
    ),
    st.builds(CompleteResult, st.booleans(), st.binary(max_size=200)),
    st.builds(CardData, st.sampled_from(EntryMode), _tlv),
    st.builds(ReadFailed, st.sampled_from(ReadFailReason)),
    st.just(CardInserted()),
    st.just(CardRemoved()),
    st.builds(
        ReaderError,
        st.integers(0, 255),
        st.text(st.characters(blacklist_categories=["Cs"]), max_size=60),
    ),
)


@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    cmd, data = encode_message(msg)
    assert decode_message(cmd, data) == msg
    assert (cmd < 0x80) == isinstance(msg, Ping | StartRead | Cancel | Complete)


@pytest.mark.parametrize(
    "msg", [Pong("SR-7", "1.0\ud800", "X"), ReaderError(3, "fault \udfff")], ids=["pong", "error"]
)
def test_text_without_a_utf8_form_is_a_clear_error(msg: Message) -> None:
    with pytest.raises(SrlMessageError, match="not encodable as UTF-8"):
        encode_message(msg)


def test_start_read_wire_layout() -> None:
    cmd, data = encode_message(StartRead(amount=12000, currency=410, modes=0b111, timeout_s=30))
    assert cmd == Cmd.START_READ and int(cmd) == 0x10
    assert data == bytes.fromhex("00002ee0019a071e")


def test_pong_is_semicolon_separated_utf8() -> None:
    assert decode_message(0x81, b"SR-200;1.4.2;A1B2") == Pong("SR-200", "1.4.2", "A1B2")


def test_card_data_entry_byte_comes_first() -> None:
    assert encode_message(CardData(EntryMode.MAGSTRIPE, b"\x57\x01\x94")) == (
        0xA0,
        b"\x90\x57\x01\x94",
    )


def test_complete_carries_arc_then_issuer_data() -> None:
    assert encode_message(Complete("Z3", b"\x91\x00")) == (0x12, b"Z3\x91\x00")


@pytest.mark.parametrize(
    ("cmd", "data", "complaint"),
    [
        (0x02, b"", "unknown CMD"),
        (0x7F, b"", "unknown CMD"),
        (0xFF, b"\x00", "unknown CMD"),
        (0x01, b"\x00", "empty DATA"),
        (0x90, b"x", "empty DATA"),
        (0x10, b"\x00" * 7, "expects 8 bytes"),
        (0x10, b"\x00" * 9, "expects 8 bytes"),
        (0x10, bytes.fromhex("00000001019a0000"), "modes"),
        (0x10, bytes.fromhex("00000001019a081e"), "modes"),
        (0x10, bytes.fromhex("00000001019a0100"), "timeout_s"),
        (0x81, b"only;two", "got 2 fields"),
        (0x81, b"a;b;c;d", "got 4 fields"),
        (0x81, b"\xff;b;c", "UTF-8"),
        (0x12, b"0", "2-byte ARC"),
        (0x12, b"0\x00", "ARC"),
        (0xA0, b"\x05", "entry byte and card TLV"),
        (0xA0, b"\x06\x5a\x01\x00", "entry mode"),
        (0xA1, b"", "1 byte"),
        (0xA1, b"\x01\x01", "1 byte"),
        (0xA1, b"\x07", "reason"),
        (0xA1, b"\x00", "reason"),
        (0xA2, b"", "decision"),
        (0xA2, b"\x02", "decision"),
        (0xEE, b"", "code"),
        (0xEE, b"\x01\xc3", "UTF-8"),
    ],
)
def test_bad_messages_are_refused_clearly(cmd: int, data: bytes, complaint: str) -> None:
    with pytest.raises(SrlMessageError, match=complaint) as info:
        decode_message(cmd, data)
    assert info.value.cmd == cmd


@pytest.mark.parametrize(
    "msg",
    [
        StartRead(amount=-1, currency=410, modes=1, timeout_s=30),
        StartRead(amount=1 << 32, currency=410, modes=1, timeout_s=30),
        StartRead(amount=1, currency=410, modes=0, timeout_s=30),
        StartRead(amount=1, currency=410, modes=1, timeout_s=0),
        StartRead(amount=1, currency=1 << 16, modes=1, timeout_s=30),
        Pong("a;b", "f", "s"),
        Complete("0", b""),
        Complete("한국", b""),
        CardData(EntryMode.CHIP, b""),
        CardData(EntryMode.CHIP, bytes(MAX_DATA)),
        ReaderError(256, "x"),
    ],
)
def test_unsendable_values_are_refused(msg: Message) -> None:
    with pytest.raises(SrlMessageError):
        encode_message(msg)


def test_card_data_repr_hides_the_tlv() -> None:
    msg = CardData(EntryMode.CHIP, bytes.fromhex("5a0894100000000000"))
    assert "9410" not in repr(msg) and "5a08" not in repr(msg)
    assert "9410" not in repr(Complete("00", bytes.fromhex("9410")))
