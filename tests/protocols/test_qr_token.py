"""The checks of spec/qr-token.md, on tokens built here from the spec's layout."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from protocols.ber_tlv import Tlv, encode_tlv
from protocols.qr_token import QR_REASONS, QrRejected, QrToken, make_qr, verify_qr

KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


KEYS = {1: raw_public(KEY), 7: raw_public(OTHER_KEY)}
ACCOUNT = "9410000012345678"
NONCE = bytes.fromhex("0102030405060708")
T0 = 1_764_000_000
AID = bytes.fromhex("D4100000014601")


def token(
    *,
    issued: int = T0,
    expires: int = T0 + 120,
    key_id: int = 1,
    key: Ed25519PrivateKey = KEY,
    fmt: bytes = b"CPV01",
    aid: bytes = AID,
    drop: Iterable[int] = (),
    replace: Mapping[int, bytes] | None = None,
    after_signing: Mapping[int, bytes] | None = None,
    top_extra: Iterable[Tlv] = (),
    extra_61: Iterable[Tlv] = (),
    extra_63: Iterable[Tlv] = (),
) -> str:
    """A token laid out as the spec draws it; `replace` changes elements before signing."""
    elements: dict[int, bytes] = {
        0x85: fmt,
        0x4F: aid,
        0x50: b"SEOROEUM",
        0x5A: bytes.fromhex(ACCOUNT),
        0xDF01: issued.to_bytes(4, "big"),
        0xDF02: expires.to_bytes(4, "big"),
        0xDF03: NONCE,
        0xDF04: bytes([key_id]),
    }
    elements.update(replace or {})
    signed = b"SEOROEUM-CPM/1" + b"".join(
        elements[t] for t in (0x5A, 0xDF01, 0xDF02, 0xDF03, 0xDF04)
    )
    elements[0xDF05] = key.sign(signed)
    elements.update(after_signing or {})
    dropped = set(drop)

    def tlvs(tags: Iterable[int]) -> list[Tlv]:
        return [Tlv(t, elements[t]) for t in tags if t not in dropped]

    specific = encode_tlv([*tlvs([0xDF01, 0xDF02, 0xDF03, 0xDF04, 0xDF05]), *extra_63])
    app = [*tlvs([0x4F, 0x50, 0x5A]), *extra_61]
    if 0x63 not in dropped:
        app.append(Tlv(0x63, specific))
    top = [*tlvs([0x85]), *([] if 0x61 in dropped else [Tlv(0x61, encode_tlv(app))])]
    return base64.b64encode(encode_tlv([*top, *top_extra])).decode()


def rejected(text: str, now: int = T0 + 10, keys: Mapping[int, bytes] = KEYS) -> str:
    result = verify_qr(text, keys, now)
    assert isinstance(result, QrRejected), result
    assert result.reason in QR_REASONS
    # The detail goes to logs: never the token or the account.
    assert text.strip() == "" or text.strip()[:40] not in result.detail
    assert ACCOUNT not in result.detail
    return result.reason


def test_a_good_token() -> None:
    result = verify_qr(token(), KEYS, T0 + 10)
    assert result == QrToken(ACCOUNT, T0, T0 + 120, NONCE, 1)


def test_make_qr_makes_what_the_spec_draws() -> None:
    made = make_qr(ACCOUNT, T0, T0 + 120, NONCE, 1, KEY)
    # Ed25519 is deterministic, so the same fields give the same text.
    assert made == token()
    assert verify_qr(made, KEYS, T0) == QrToken(ACCOUNT, T0, T0 + 120, NONCE, 1)


def test_surrounding_whitespace_from_the_scanner_is_ignored() -> None:
    assert isinstance(verify_qr(f" {token()}\t\r\n", KEYS, T0), QrToken)


def test_other_application_templates_are_skipped() -> None:
    foreign = Tlv(0x61, encode_tlv([Tlv(0x4F, bytes.fromhex("A0000000031010"))]))
    assert isinstance(verify_qr(token(top_extra=[foreign]), KEYS, T0), QrToken)


@pytest.mark.parametrize(
    "text",
    [
        "00020101021226360011D410000001460104SHOP5204599953034105802KR6304ABCD",
        "https://seoroeum.example/pay?x=1",
        "http://example.com",
        "HTTPS://EXAMPLE.COM/",
        "8801234567893",
        "0123",
    ],
)
def test_not_seoroeum_on_the_text(text: str) -> None:
    assert rejected(text) == "qr_not_seoroeum"


def test_not_seoroeum_after_decoding() -> None:
    assert rejected(token(fmt=b"CPV02")) == "qr_not_seoroeum"
    assert rejected(token(drop=[0x85])) == "qr_not_seoroeum"
    assert rejected(token(aid=bytes.fromhex("D4100000014602"))) == "qr_not_seoroeum"
    assert rejected(token(aid=bytes.fromhex("A0000000031010"))) == "qr_not_seoroeum"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "not base64 at all!",
        "hQVDUFYwMQ",  # unpadded
        "hQVDUFYwMQ==",
        "-_-_",  # URL-safe alphabet
        "hQVD UFYw",
        "서로이음",
        "QUJD",  # base64 of b"ABC": tag 41, length 0x42 beyond the data
        "A" * 2049,
    ],
)
def test_unreadable(text: str) -> None:
    reason = rejected(text)
    # "hQVDUFYwMQ==" is a well-formed 85 CPV01 with nothing else: incomplete, not unreadable.
    assert reason == ("qr_incomplete" if text == "hQVDUFYwMQ==" else "qr_unreadable")


def test_unreadable_templates_and_elements() -> None:
    malformed_63 = base64.b64encode(
        encode_tlv(
            [
                Tlv(0x85, b"CPV01"),
                Tlv(0x61, encode_tlv([Tlv(0x4F, AID), Tlv(0x63, b"\xdf\x01\x09\x00")])),
            ]
        )
    ).decode()
    assert rejected(malformed_63) == "qr_unreadable"
    assert rejected(token(top_extra=[Tlv(0x85, b"CPV01")])) == "qr_unreadable"
    assert rejected(token(replace={0x5A: bytes.fromhex("94100000123456AB")})) == "qr_unreadable"
    # A repeated element makes its value ambiguous.
    assert rejected(token(extra_63=[Tlv(0xDF04, b"\x07")])) == "qr_unreadable"
    assert rejected(token(extra_61=[Tlv(0x5A, bytes.fromhex(ACCOUNT))])) == "qr_unreadable"
    second_app = Tlv(0x61, encode_tlv([Tlv(0x4F, AID), Tlv(0x5A, bytes(8))]))
    assert rejected(token(top_extra=[second_app])) == "qr_unreadable"


@pytest.mark.parametrize("tag", [0x50, 0x5A, 0x63, 0xDF01, 0xDF02, 0xDF03, 0xDF04, 0xDF05])
def test_incomplete_when_a_required_tag_is_missing(tag: int) -> None:
    replace = {tag: b""}  # the signature input needs something where the element was
    assert rejected(token(drop=[tag], replace=replace)) == "qr_incomplete"


def test_incomplete_without_application_template_or_aid() -> None:
    assert rejected(token(drop=[0x61])) == "qr_incomplete"
    assert rejected(token(drop=[0x4F])) == "qr_incomplete"


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (0x50, b""),
        (0x50, b"S" * 17),
        (0x5A, b""),
        (0x5A, bytes.fromhex("94100000123456")),
        (0x5A, bytes.fromhex("941000001234567890")),
        (0xDF01, bytes(3)),
        (0xDF02, bytes(5)),
        (0xDF03, bytes(7)),
        (0xDF03, bytes(9)),
        (0xDF04, b"\x00\x01"),
        (0xDF04, b""),
    ],
)
def test_incomplete_when_a_tag_has_the_wrong_length(tag: int, value: bytes) -> None:
    assert rejected(token(replace={tag: value})) == "qr_incomplete"


@pytest.mark.parametrize("size", [0, 63, 65])
def test_incomplete_when_the_signature_has_the_wrong_length(size: int) -> None:
    assert rejected(token(after_signing={0xDF05: bytes(size)})) == "qr_incomplete"


def test_unknown_key() -> None:
    assert rejected(token(key_id=2)) == "qr_unknown_key"
    assert rejected(token(), keys={}) == "qr_unknown_key"
    assert rejected(token(), keys={1: b"\x01" * 31}) == "qr_unknown_key"


def test_bad_signature() -> None:
    assert rejected(token(key=OTHER_KEY)) == "qr_bad_signature"
    assert rejected(token(key_id=7)) == "qr_bad_signature"
    assert rejected(token(after_signing={0xDF02: (T0 + 200).to_bytes(4, "big")})) == (
        "qr_bad_signature"
    )
    assert rejected(token(after_signing={0x5A: bytes.fromhex("9410000012345679")})) == (
        "qr_bad_signature"
    )
    assert rejected(token(after_signing={0xDF03: bytes(8)})) == "qr_bad_signature"
    assert rejected(token(after_signing={0xDF05: bytes(64)})) == "qr_bad_signature"


def test_lifetime_boundary() -> None:
    assert isinstance(verify_qr(token(expires=T0 + 300), KEYS, T0), QrToken)
    assert rejected(token(expires=T0 + 301), now=T0) == "qr_too_long_lived"


def test_expiry_boundary() -> None:
    assert isinstance(verify_qr(token(), KEYS, T0 + 120), QrToken)
    assert rejected(token(), now=T0 + 121) == "qr_expired"
    assert rejected(token(expires=T0 - 1), now=T0 - 5) == "qr_expired"


def test_clock_skew_boundary() -> None:
    assert isinstance(verify_qr(token(), KEYS, T0 - 30), QrToken)
    assert rejected(token(), now=T0 - 31) == "qr_not_yet_valid"


def test_checks_run_in_the_order_of_the_table() -> None:
    # Each token below fails two checks; the earlier row of the table wins.
    assert rejected(token(fmt=b"CPV02", drop=[0x5A], replace={0x5A: b""})) == "qr_not_seoroeum"
    assert rejected(token(key_id=9, replace={0xDF03: bytes(3)})) == "qr_incomplete"
    assert rejected(token(key_id=9, key=OTHER_KEY)) == "qr_unknown_key"
    assert rejected(token(key=OTHER_KEY, expires=T0 + 301), now=T0 + 999) == "qr_bad_signature"
    assert rejected(token(expires=T0 + 400), now=T0 + 999) == "qr_too_long_lived"
    assert rejected(token(issued=T0 + 500, expires=T0 + 400), now=T0) == "qr_expired"


def test_repr_masks_the_account() -> None:
    result = verify_qr(token(), KEYS, T0)
    assert isinstance(result, QrToken)
    assert ACCOUNT not in repr(result) and ACCOUNT not in str(result)
    assert "****5678" in repr(result)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("941000001234567", T0, T0, NONCE, 1), "16 decimal digits"),
        (("94100000123456AB", T0, T0, NONCE, 1), "16 decimal digits"),
        ((ACCOUNT, -1, T0, NONCE, 1), "u32"),
        ((ACCOUNT, T0, 2**32, NONCE, 1), "u32"),
        ((ACCOUNT, T0, T0, b"1234567", 1), "nonce"),
        ((ACCOUNT, T0, T0, NONCE, 256), "key id"),
    ],
)
def test_make_qr_refuses_out_of_range_fields(
    args: tuple[str, int, int, bytes, int], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        make_qr(*args, KEY)


@given(
    st.text("0123456789", min_size=16, max_size=16),
    st.integers(30, 2**32 - 301),
    st.integers(0, 300),
    st.binary(min_size=8, max_size=8),
    st.sampled_from([1, 7]),
)
def test_make_verify_round_trip(
    account: str, issued: int, lifetime: int, nonce: bytes, key_id: int
) -> None:
    key = KEY if key_id == 1 else OTHER_KEY
    text = make_qr(account, issued, issued + lifetime, nonce, key_id, key)
    expected = QrToken(account, issued, issued + lifetime, nonce, key_id)
    assert verify_qr(text, KEYS, issued) == expected
    assert verify_qr(text, KEYS, issued + lifetime) == expected
    assert verify_qr(text, KEYS, issued - 30) == expected


@given(st.text(max_size=300))
def test_any_text_is_rejected_never_raised(text: str) -> None:
    result = verify_qr(text, KEYS, T0)
    assert isinstance(result, QrRejected)
    assert result.reason in QR_REASONS
