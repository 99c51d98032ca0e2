from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.emv import EmvError, Track2, expiry_from_5f24, mask_pan, pan_from_5a

PAN = "9410123456789012"


def bcd(digits: str) -> bytes:
    return bytes.fromhex(digits + "F" * (len(digits) % 2))


@pytest.mark.parametrize(
    ("hex_value", "pan"),
    [
        ("9410123456789012", PAN),
        ("941012345678901F", "941012345678901"),
        ("9410123456789012345F", "9410123456789012345"),
        ("9410123456789012FFFF", PAN),
        ("12345678", "12345678"),
    ],
)
def test_pan_from_5a(hex_value: str, pan: str) -> None:
    assert pan_from_5a(bytes.fromhex(hex_value)) == pan


@pytest.mark.parametrize(
    ("hex_value", "match"),
    [
        ("94101234567890A2", "not a decimal digit"),
        ("9410F23456789012", "not a decimal digit"),
        ("1234567F", "7 digits"),
        ("94101234567890123456", "20 digits"),
        ("", "0 digits"),
        ("FFFF", "0 digits"),
    ],
)
def test_pan_from_5a_refuses_malformed_values(hex_value: str, match: str) -> None:
    with pytest.raises(EmvError, match=match) as info:
        pan_from_5a(bytes.fromhex(hex_value))
    assert "5A" in str(info.value)
    assert "123456" not in str(info.value) and "9410" not in str(info.value)


def test_expiry_from_5f24() -> None:
    assert expiry_from_5f24(bytes.fromhex("281231")) == "281231"
    assert expiry_from_5f24(bytes.fromhex("300101")) == "300101"


@pytest.mark.parametrize(
    ("hex_value", "match"),
    [
        ("2812", "2 bytes"),
        ("28123100", "4 bytes"),
        ("281331", "month"),
        ("280031", "month"),
        ("281200", "day"),
        ("281232", "day"),
        ("2A1231", "not BCD"),
    ],
)
def test_expiry_refuses_malformed_values(hex_value: str, match: str) -> None:
    with pytest.raises(EmvError, match=match):
        expiry_from_5f24(bytes.fromhex(hex_value))


def test_track2_equivalent() -> None:
    track2 = Track2.parse(bytes.fromhex("9410123456789012D281210112345678900F"))
    assert track2.pan == PAN
    assert track2.expiry == "2812"
    assert track2.service_code == "101"
    assert track2.discretionary == "12345678900"
    assert track2.iso8583_field35() == "9410123456789012=281210112345678900"


def test_track2_with_odd_length_and_no_discretionary_data() -> None:
    track2 = Track2.parse(bytes.fromhex("941012345678901D2812201F"))
    assert (track2.pan, track2.expiry, track2.service_code, track2.discretionary) == (
        "941012345678901",
        "2812",
        "201",
        "",
    )
    assert track2.iso8583_field35() == "941012345678901=2812201"


@pytest.mark.parametrize(
    ("hex_value", "match"),
    [
        ("94101234567890122812101F", "no field separator"),
        ("9410123456789012D281210", "missing"),
        ("9410123456789012D2812101D1", "not a decimal digit"),
        ("9410123456789012D2813101", "month"),
        ("941012A456789012D2812101", "not a decimal digit"),
        ("1234567D2812101F", "7 digits"),
        ("9410123456789012D2812101" + "1" * 14, "38 characters"),
    ],
)
def test_track2_refuses_malformed_values(hex_value: str, match: str) -> None:
    with pytest.raises(EmvError, match=match) as info:
        Track2.parse(bytes.fromhex(hex_value + "F" * (len(hex_value) % 2)))
    assert "57" in str(info.value)
    assert "12345" not in str(info.value)


def test_track2_repr_masks_everything_sensitive() -> None:
    track2 = Track2.parse(bytes.fromhex("9410123456789012D28121019876543210"))
    for text in (repr(track2), str(track2), f"{track2}"):
        assert "941012******9012" in text
        assert PAN not in text
        assert "2812" not in text
        assert "9876543210" not in text


@pytest.mark.parametrize(
    ("pan", "masked"),
    [
        (PAN, "941012******9012"),
        ("9410123456789012345", "941012*********2345"),
        ("9410123456789", "941012***6789"),
        ("941012345678", "********5678"),
        ("12345678", "****5678"),
        ("1234567", "*******"),
        ("", ""),
    ],
)
def test_mask_pan(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked


@given(st.text("0123456789", min_size=8, max_size=19))
def test_pan_round_trip(pan: str) -> None:
    assert pan_from_5a(bcd(pan)) == pan
    masked = mask_pan(pan)
    assert len(masked) == len(pan)
    assert masked[-4:] == pan[-4:]
    assert sum(c != "*" for c in masked) <= min(10, len(pan) - 3)


@given(
    st.text("0123456789", min_size=8, max_size=19),
    st.sampled_from(["2501", "2812", "3012"]),
    st.text("0123456789", min_size=3, max_size=3),
    st.text("0123456789", max_size=7),
)
def test_track2_round_trip(pan: str, expiry: str, service_code: str, discretionary: str) -> None:
    track2 = Track2.parse(bcd(f"{pan}D{expiry}{service_code}{discretionary}"))
    assert track2 == Track2(pan, expiry, service_code, discretionary)
    assert track2.iso8583_field35() == f"{pan}={expiry}{service_code}{discretionary}"
