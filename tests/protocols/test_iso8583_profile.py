"""The ISO 8583 profile layer: known bytes, MAC placement, and every kind of malformed input."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from protocols.iso8583_profile import (
    FIELDS,
    SPEC,
    LedgerFormatError,
    check_field,
    decode_message,
    encode_message,
    mac_field_for,
)
from protocols.ledger_mac import verify_mac

KEY = bytes(range(32))
PAN = "9410123456789012"


def _purchase_fields() -> dict[int, str | bytes]:
    return {
        2: PAN,
        3: "000000",
        4: "000000012000",
        7: "1125030405",
        11: "000001",
        12: "120405",
        13: "1125",
        14: "2812",
        22: "051",
        25: "00",
        41: "T0000001",
        42: "M00000000000001",
        48: "BP=500;DA=600",
        49: "410",
        55: b"\x9f\x02\x06\x00\x00\x00\x01\x20\x00",
    }


def test_0200_byte_by_byte() -> None:
    raw = encode_message("0200", _purchase_fields(), KEY)
    body = (
        b"0200"
        # fields 2 3 4 7 | 11 12 13 14 | 22 | 25 | - | 41 42 48 | 49 55 | 64
        + bytes([0x72, 0x3C, 0x04, 0x80, 0x00, 0xC1, 0x82, 0x01])
        + b"16" + PAN.encode()
        + b"000000"
        + b"000000012000"
        + b"1125030405"
        + b"000001"
        + b"120405"
        + b"1125"
        + b"2812"
        + b"051"
        + b"00"
        + b"T0000001"
        + b"M00000000000001"
        + b"013BP=500;DA=600"
        + b"410"
        + b"009\x9f\x02\x06\x00\x00\x00\x01\x20\x00"
    )  # fmt: skip
    mac = hmac.new(KEY, body, hashlib.sha256).digest()[:8]
    assert raw == body + mac


def test_0400_byte_by_byte_mac_in_128_after_field_90() -> None:
    fields: dict[int, str | bytes] = {
        3: "000000",
        11: "000002",
        90: "0200" + "000001" + "1125030405" + "0" * 22,
    }
    raw = encode_message("0400", fields, KEY)
    primary = bytes([0xA0, 0x20, 0, 0, 0, 0, 0, 0])  # 1 (secondary), 3, 11; no 64
    secondary = bytes([0, 0, 0, 0x40, 0, 0, 0, 0x01])  # 90 = 64 + 26, 128 = 64 + 64
    head = b"0400" + primary + secondary + b"000000" + b"000002" + str(fields[90]).encode()
    mac = hmac.new(KEY, head, hashlib.sha256).digest()[:8]
    assert raw == head + mac  # the MAC is last and covers field 90
    decoded = decode_message(raw)
    assert decoded.mac_input == head and decoded.mac_field == 128
    assert decoded.fields[128] == mac == decoded.mac and 64 not in decoded.fields
    assert decoded.fields[90] == fields[90]

    no_secondary = encode_message("0800", {11: "000003"})
    assert no_secondary[4:12] == bytes([0, 0x20, 0, 0, 0, 0, 0, 0])
    assert len(no_secondary) == 4 + 8 + 6


def test_a_tampered_field_90_fails_the_mac() -> None:
    fields: dict[int, str | bytes] = {
        3: "000000",
        11: "000002",
        90: "0200" + "000001" + "1125030405" + "0" * 22,
    }
    raw = bytearray(encode_message("0400", fields, KEY))
    at = raw.index(b"0200000001")
    raw[at + 9] = ord("7")  # another payment's STAN: 000007
    decoded = decode_message(bytes(raw))
    assert decoded.fields[90] == "0200000007" + "1125030405" + "0" * 22
    assert decoded.mac is not None
    assert not verify_mac(KEY, decoded.mac_input, decoded.mac)


def test_mac_field_for() -> None:
    assert mac_field_for([2, 3, 4, 11, 55]) == 64
    assert mac_field_for([3, 11, 70]) == 128
    assert mac_field_for([3, 11, 90]) == 128
    assert mac_field_for([]) == 64


def _head(primary: bytes, secondary: bytes = b"") -> bytes:
    return b"0400" + primary + secondary


@pytest.mark.parametrize(
    ("data", "field"),
    [
        # Profile 1: the MAC in 64, then field 90 after it.
        (_head(bytes([0xA0, 0x20, 0, 0, 0, 0, 0, 0x01]), bytes([0, 0, 0, 0x40, 0, 0, 0, 0]))
         + b"000000000002" + bytes(8) + b"0" * 42, "64"),
        # Both 64 and 128.
        (_head(bytes([0xA0, 0x20, 0, 0, 0, 0, 0, 0x01]), bytes([0, 0, 0, 0x40, 0, 0, 0, 0x01]))
         + b"000000000002" + bytes(8) + b"0" * 42 + bytes(8), "64"),
        # 128 with no field 65-127: the MAC belongs in 64.
        (_head(bytes([0xA0, 0x20, 0, 0, 0, 0, 0, 0]), bytes([0, 0, 0, 0, 0, 0, 0, 0x01]))
         + b"000000000002" + bytes(8), "128"),
    ],
)  # fmt: skip
def test_a_misplaced_mac_is_refused(data: bytes, field: str) -> None:
    with pytest.raises(LedgerFormatError) as info:
        decode_message(data)
    assert (info.value.field, info.value.mti, info.value.stan) == (field, "0400", 2)
    assert "profile 2" in str(info.value)


def test_round_trip_keeps_binary_fields_as_bytes() -> None:
    raw = encode_message("0200", _purchase_fields(), KEY)
    decoded = decode_message(raw)
    assert decoded.mti == "0200"
    assert {n: v for n, v in decoded.fields.items() if n != 64} == _purchase_fields()
    assert raw.startswith(decoded.mac_input)
    assert len(decoded.mac_input) == len(raw) - 8
    assert PAN not in repr(decoded)


def test_spec_dict_is_exactly_the_profile() -> None:
    assert set(SPEC) == {"h", "t", "p", "1"} | {str(n) for n in FIELDS}
    assert SPEC["55"]["data_enc"] == "b" and SPEC["55"]["len_type"] == 3
    assert SPEC["55"]["max_len"] == 255
    assert SPEC["64"] == {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8}
    assert SPEC["128"] == SPEC["64"]
    assert SPEC["90"]["max_len"] == 42 and SPEC["70"]["max_len"] == 3
    assert SPEC["35"]["len_type"] == 2 and SPEC["35"]["max_len"] == 37
    assert SPEC["48"]["len_type"] == 3 and SPEC["48"]["max_len"] == 999
    assert SPEC["p"]["data_enc"] == "b" and SPEC["t"]["data_enc"] == "ascii"


@pytest.mark.parametrize(
    ("number", "value", "problem"),
    [
        (2, "12345678901234567890", "1 to 19"),
        (2, "", "1 to 19"),
        (2, "94101234x6789012", "digits"),
        (3, "00000", "must be 6 long"),
        (35, "9410123456789012D2812A", "'D' or '='"),
        (37, "00000000000!", "letters and digits"),
        (41, "T000000\u00e9", "printable ASCII"),
        (48, "x" * 1000, "1 to 999"),
        (55, "9F02", "must be binary"),
        (55, b"\x00" * 256, "1 to 255"),
        (4, b"000000000001", "must be text"),
        (5, "1", "not a field of this profile"),
    ],
)
def test_check_field_refuses(number: int, value: str | bytes, problem: str) -> None:
    with pytest.raises(LedgerFormatError) as info:
        check_field(number, value)
    assert info.value.field == str(number)
    assert problem in str(info.value)


def test_encode_refuses_given_mac_and_bad_mti() -> None:
    for mac_field in (64, 128):
        with pytest.raises(LedgerFormatError) as info:
            encode_message("0200", {mac_field: b"\x00" * 8}, KEY)
        assert info.value.field == str(mac_field)
    with pytest.raises(LedgerFormatError) as info:
        encode_message("02X0", {11: "000001"})
    assert info.value.field == "t"


def _good() -> bytes:
    return encode_message("0200", _purchase_fields(), KEY)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"02", "t"),
        (b"02A0" + bytes(8), "t"),
        (b"0200" + bytes(4), "p"),
        (b"0200" + bytes([0x80]) + bytes(7), "1"),  # secondary bitmap missing
        (b"0200" + bytes([0x80]) + bytes(7) + bytes(8), "1"),  # secondary present but empty
        (b"0200" + bytes([0x08]) + bytes(7), "5"),  # field 5 is outside the profile
        (b"0200" + bytes([0x80]) + bytes(7) + bytes([0x80]) + bytes(7), "65"),
        (b"0200" + bytes([0x40]) + bytes(7) + b"1", "2"),  # length prefix truncated
        (b"0200" + bytes([0x40]) + bytes(7) + b"+9123456789", "2"),  # non-canonical length
        (b"0200" + bytes([0x40]) + bytes(7) + b"20" + b"1" * 20, "2"),  # over max 19
        (b"0200" + bytes([0x40]) + bytes(7) + b"05123", "2"),  # data truncated
        (b"0200" + bytes([0x40]) + bytes(7) + b"0512a45", "2"),  # not digits
        (b"0200" + bytes([0x20]) + bytes(7) + b"00000\xff", "3"),  # not ASCII
        (b"0200" + bytes([0x20]) + bytes(7) + b"000000extra", "3"),  # bytes after last field
        (b"0200" + bytes([0x40]) + bytes(7) + b"00", "2"),  # zero-length variable field
    ],
)
def test_decode_names_the_bad_field(data: bytes, field: str) -> None:
    with pytest.raises(LedgerFormatError) as info:
        decode_message(data)
    assert info.value.field == field


def test_decode_errors_carry_mti_and_stan_but_never_data() -> None:
    raw = bytearray(_good())
    # Corrupt field 14 (expiry, after the STAN) to a letter.
    at = raw.index(b"2812")
    raw[at] = ord("X")
    with pytest.raises(LedgerFormatError) as info:
        decode_message(bytes(raw))
    assert info.value.field == "14"
    assert info.value.mti == "0200"
    assert info.value.stan == 1
    assert PAN not in str(info.value) and "X812" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_decode_truncated_anywhere_is_a_format_error() -> None:
    raw = _good()
    for cut in range(len(raw)):
        with pytest.raises(LedgerFormatError) as info:
            decode_message(raw[:cut])
        assert PAN not in str(info.value)


def _response_fields() -> dict[int, str | bytes]:
    return {
        2: PAN,
        3: "000000",
        4: "000000012000",
        7: "1125030405",
        11: "004217",
        37: "000000000001",
        39: "00",
        41: "T0000001",
    }


def test_stan_is_read_from_its_place_when_a_later_field_is_broken() -> None:
    raw = encode_message("0210", _response_fields(), KEY)
    stan_end = raw.index(b"004217") + 6
    for broken in [raw[:cut] for cut in range(stan_end, len(raw))] + [raw + b"\x00junk"]:
        with pytest.raises(LedgerFormatError) as info:
            decode_message(broken)
        assert (info.value.mti, info.value.stan) == ("0210", 4217)
        assert PAN not in str(info.value)


def test_stan_is_read_past_the_secondary_bitmap() -> None:
    fields = _response_fields() | {90: "0200" + "004216" + "1125030400" + "0" * 22}
    raw = encode_message("0410", fields, KEY)
    with pytest.raises(LedgerFormatError) as info:
        decode_message(raw[:-5])  # the MAC, field 128 after field 90, cut short
    assert (info.value.field, info.value.mti, info.value.stan) == ("128", "0410", 4217)
    with pytest.raises(LedgerFormatError) as info:
        decode_message(raw[:-13])  # field 90 cut short
    assert (info.value.field, info.value.mti, info.value.stan) == ("90", "0410", 4217)


def test_stan_is_none_when_it_cannot_be_reached() -> None:
    raw = encode_message("0210", _response_fields(), KEY)
    stan_at = raw.index(b"004217")
    for cut in range(12, stan_at + 6):  # the STAN itself, or a field before it, is cut
        with pytest.raises(LedgerFormatError) as info:
            decode_message(raw[:cut])
        assert info.value.stan is None
    pan_length = raw.index(PAN.encode()) - 2
    bad_prefix = raw[:pan_length] + b"1x" + raw[pan_length + 2 :]
    not_digits = raw[:stan_at] + b"00421x" + raw[stan_at + 6 :]
    for broken in (bad_prefix, not_digits):
        with pytest.raises(LedgerFormatError) as info:
            decode_message(broken)
        assert info.value.stan is None
