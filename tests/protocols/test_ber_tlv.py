from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.ber_tlv import MAX_DEPTH, Tlv, TlvError, decode_tlv, encode_tlv, find_tag, tag_bytes

# A chip CARD_DATA as a reader sends it: two-byte tags, a nested 70 record template with
# a proprietary three-byte tag inside, and EMV's zero padding between objects.
CHIP = bytes.fromhex(
    "5A08941012345678901 2"
    "5F2403281231"
    "5F340101"
    "9F2608A1B2C3D4E5F60718"
    "9F270180"
    "9F100706010A03A00000"
    "0000"
    "9F3704DEADBEEF"
    "9F36020042"
    "95050000008000"
    "9A03251125"
    "9C0100"
    "9F0206000000012000"
    "5F2A020410"
    "82021980"
    "8407D4100000014601"
    "700A"
    "DF810103010203"
    "9F0100".replace(" ", "")
)


def test_decodes_chip_card_data_with_multibyte_tags() -> None:
    items = decode_tlv(CHIP)
    assert [t.tag for t in items] == [
        0x5A, 0x5F24, 0x5F34, 0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95,
        0x9A, 0x9C, 0x9F02, 0x5F2A, 0x82, 0x84, 0x70,
    ]  # fmt: skip
    by_tag = {t.tag: t.value for t in items}
    assert by_tag[0x5A] == bytes.fromhex("9410123456789012")
    assert by_tag[0x5F24] == bytes.fromhex("281231")
    assert by_tag[0x9F26] == bytes.fromhex("A1B2C3D4E5F60718")
    assert by_tag[0x9F02] == bytes.fromhex("000000012000")
    record = items[-1]
    assert record.constructed
    assert record.children() == [Tlv(0xDF8101, b"\x01\x02\x03"), Tlv(0x9F01, b"")]


def test_value_offset_points_into_the_input() -> None:
    for item in decode_tlv(CHIP):
        assert CHIP[item.value_offset : item.value_offset + len(item.value)] == item.value
    record = decode_tlv(CHIP)[-1]
    for child in record.children():
        assert CHIP[child.value_offset : child.value_offset + len(child.value)] == child.value


@pytest.mark.parametrize(
    ("encoded", "length"),
    [
        ("7F", 0x7F),
        ("8180", 0x80),
        ("81FF", 0xFF),
        ("820100", 0x100),
        ("82FFFF", 0xFFFF),
        ("83010000", 0x10000),
        ("8105", 5),  # non-minimal long form, as some cards write it
    ],
)
def test_long_lengths(encoded: str, length: int) -> None:
    data = b"\x9f\x10" + bytes.fromhex(encoded) + bytes(length) + b"\x5a\x01\x12"
    items = decode_tlv(data)
    assert [(t.tag, len(t.value)) for t in items] == [(0x9F10, length), (0x5A, 1)]


@pytest.mark.parametrize(("length", "header"), [(0x7F, "7F"), (0x80, "8180"), (0x100, "820100")])
def test_encode_uses_the_shortest_length(length: int, header: str) -> None:
    assert encode_tlv([Tlv(0x5A, bytes(length))])[:-length] == bytes.fromhex("5A" + header)


def test_encode_refuses_values_beyond_three_length_bytes() -> None:
    with pytest.raises(ValueError, match="too long"):
        encode_tlv([Tlv(0x5A, bytes(0x1000000))])


@pytest.mark.parametrize(
    ("hex_data", "offset", "match"),
    [
        ("5A", 1, "no length"),
        ("9F", 0, "past the end"),
        ("9F26", 2, "no length"),
        ("DF81", 0, "past the end"),
        ("DF8181818101", 0, "longer than 4"),
        ("5A80", 1, "indefinite"),
        ("5A8401000000", 1, "4 length bytes"),
        ("5A82FF", 1, "length runs past"),
        ("5A0512", 1, "exceeds"),
        ("5A01125F240528", 5, "exceeds"),
        ("0000FF5A09", 4, "exceeds"),
    ],
)
def test_malformed_input_names_the_offset(hex_data: str, offset: int, match: str) -> None:
    with pytest.raises(TlvError, match=match) as info:
        decode_tlv(bytes.fromhex(hex_data))
    assert info.value.offset == offset
    assert f"offset {offset}" in str(info.value)


def test_padding_between_and_around_objects_is_skipped() -> None:
    data = bytes.fromhex("00FF5A0112000000FFFF9F020100FF00")
    assert decode_tlv(data) == [Tlv(0x5A, b"\x12"), Tlv(0x9F02, b"\x00")]
    assert decode_tlv(b"\x00" * 8) == []
    assert decode_tlv(b"") == []


def test_nested_61_63_templates_and_find_tag() -> None:
    inner = encode_tlv([Tlv(0xDF01, b"\x00\x00\x03\xe8"), Tlv(0xDF04, b"\x01")])
    app = encode_tlv([Tlv(0x4F, b"\xd4\x10"), Tlv(0x63, inner)])
    data = encode_tlv([Tlv(0x85, b"CPV01"), Tlv(0x61, app), Tlv(0x9F26, b"\x01")])
    items = decode_tlv(data)
    assert [t.tag for t in items] == [0x85, 0x61, 0x9F26]
    template = items[1]
    assert [t.tag for t in template.children()] == [0x4F, 0x63]
    assert template.children()[1].children()[0] == Tlv(0xDF01, b"\x00\x00\x03\xe8")
    assert find_tag(items, 0xDF04) == Tlv(0xDF04, b"\x01")
    assert find_tag(items, 0x4F) == Tlv(0x4F, b"\xd4\x10")
    assert find_tag(items, 0x9F26) == Tlv(0x9F26, b"\x01")
    assert find_tag(items, 0x5A) is None


def test_find_tag_searches_depth_first_in_document_order() -> None:
    data = encode_tlv(
        [Tlv(0x70, encode_tlv([Tlv(0x77, encode_tlv([Tlv(0x9F10, b"first")]))])),
         Tlv(0x9F10, b"second")]
    )  # fmt: skip
    found = find_tag(decode_tlv(data), 0x9F10)
    assert found is not None and found.value == b"first"


def test_malformed_nested_template_reports_the_absolute_offset() -> None:
    data = bytes.fromhex("5A011270049F260501")
    items = decode_tlv(data)
    with pytest.raises(TlvError) as info:
        items[1].children()
    assert info.value.offset == 7  # the length byte of 9F26 inside the template
    with pytest.raises(TlvError):
        find_tag(items, 0x9F27)


def test_children_of_a_primitive_object_is_an_error() -> None:
    with pytest.raises(TlvError, match="primitive"):
        Tlv(0x5A, b"\x61\x00").children()


@pytest.mark.parametrize(
    ("tag", "constructed"),
    [(0x61, True), (0x63, True), (0x70, True), (0xBF0C, True), (0x5A, False), (0x9F26, False),
     (0xDF01, False), (0x85, False)],
)  # fmt: skip
def test_constructed_is_bit_6_of_the_first_tag_byte(tag: int, constructed: bool) -> None:
    assert Tlv(tag, b"").constructed is constructed


def test_find_tag_bounds_the_nesting_depth() -> None:
    def nest(levels: int) -> bytes:
        data = encode_tlv([Tlv(0x9F26, b"\x01")])
        for _ in range(levels):
            data = encode_tlv([Tlv(0x70, data)])
        return data

    assert find_tag(decode_tlv(nest(MAX_DEPTH)), 0x9F26) is not None
    with pytest.raises(TlvError, match="nested deeper"):
        find_tag(decode_tlv(nest(MAX_DEPTH + 1)), 0x9F26)
    assert find_tag(decode_tlv(nest(MAX_DEPTH + 1)), 0x70) is not None


@pytest.mark.parametrize(
    "tag",
    [0, -1, 0x1F, 0x9F, 0xFF, 0x5A01, 0x9F8181, 0x9F0181, 0xFF9F01, 0x9F81818101, 0x00FF],
)
def test_encode_refuses_malformed_tags(tag: int) -> None:
    with pytest.raises(ValueError, match="tag"):
        encode_tlv([Tlv(tag, b"")])


def test_tag_bytes() -> None:
    assert tag_bytes(0x5A) == b"\x5a"
    assert tag_bytes(0x9F26) == b"\x9f\x26"
    assert tag_bytes(0xDF8101) == b"\xdf\x81\x01"


def test_repr_does_not_show_the_value() -> None:
    assert "9410" not in repr(Tlv(0x5A, bytes.fromhex("9410123456789012")))
    assert repr(Tlv(0x5A, bytes(8))) == "Tlv(tag=0x5A, len=8)"


_FIRST_SINGLE = st.integers(0x01, 0xFE).filter(lambda b: b & 0x1F != 0x1F)
_FIRST_MULTI = st.sampled_from([0x1F, 0x3F, 0x5F, 0x7F, 0x9F, 0xBF, 0xDF])


@st.composite
def tags(draw: st.DrawFn) -> int:
    if draw(st.booleans()):
        return draw(_FIRST_SINGLE)
    middle = draw(st.lists(st.integers(0x80, 0xFF), max_size=1))
    raw = bytes([draw(_FIRST_MULTI), *middle, draw(st.integers(0x00, 0x7F))])
    return int.from_bytes(raw, "big")


tlvs = st.builds(Tlv, tags(), st.binary(max_size=300))


@given(st.lists(tlvs, max_size=8))
def test_encode_decode_round_trip(items: list[Tlv]) -> None:
    data = encode_tlv(items)
    assert decode_tlv(data) == items


@given(st.lists(tlvs, max_size=4), st.lists(tlvs, max_size=4))
def test_round_trip_through_a_template(inner: list[Tlv], outer: list[Tlv]) -> None:
    data = encode_tlv([*outer, Tlv(0xBF0C, encode_tlv(inner))])
    decoded = decode_tlv(data)
    assert decoded[:-1] == outer
    assert decoded[-1].children() == inner


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_tlv_error(data: bytes) -> None:
    try:
        items = decode_tlv(data)
    except TlvError as e:
        assert 0 <= e.offset <= len(data)
        return
    assert decode_tlv(encode_tlv(items)) == items
