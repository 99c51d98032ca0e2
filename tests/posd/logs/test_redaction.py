"""Card data and registered secrets never survive redaction; ordinary numbers do."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from posd.config import load_config
from posd.daemon import register_config_secrets
from posd.logs import (
    QR_MASK,
    SECRET_MASK,
    TRANSIENT_SECRETS_KEPT,
    Redactor,
    luhn_valid,
    redact,
    redact_card_data,
)
from protocols.emv import mask_pan
from tests.helpers.configs import write_config


def with_check_digit(body: str) -> str:
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


@st.composite
def pans(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    return with_check_digit(body)


# Arbitrary surrounding text, digits and separators included, so a PAN may touch other digits.
context = st.text(
    st.characters(blacklist_categories=["Cs"]) | st.sampled_from("0123456789 -=Dd'\"\\"),
    max_size=40,
)


def assert_pan_gone(pan: str, out: str) -> None:
    assert pan not in out


def test_luhn_and_mask() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert mask_pan("9410123456789012") == "941012******9012"
    assert mask_pan("9410123456789") == "941012***6789"


def test_a_12_digit_track2_pan_is_masked_by_the_one_mask() -> None:
    """Its PAN shows its last 4 only, as in the journal and every view (protocols.emv)."""
    out = Redactor().redact("read 941012345678=30121010000 ok")
    assert out == f"read {mask_pan('941012345678')}={'*' * 11} ok"
    assert out == "read ********5678=*********** ok"


@given(pans(), context, context)
def test_plain_pan_anywhere_is_masked(pan: str, before: str, after: str) -> None:
    out = Redactor().redact(before + pan + after)
    assert_pan_gone(pan, out)


def group(pan: str, sizes: list[int], sep: str) -> str:
    parts, pos = [], 0
    for size in sizes:
        parts.append(pan[pos : pos + size])
        pos += size
    rest = pan[pos:]
    if len(rest) > 6:  # 4-6-5 is a 15-digit layout; longer PANs go on in fours
        parts += [rest[i : i + 4] for i in range(0, len(rest), 4)]
    else:
        parts.append(rest)
    return sep.join(p for p in parts if p)


@given(
    pans(),
    context,
    context,
    st.sampled_from([" ", "-"]),
    st.sampled_from([[4, 4, 4, 4], [4, 6], [4, 4, 5], [2] * 9]),
)
def test_grouped_pan_is_masked(
    pan: str, before: str, after: str, sep: str, sizes: list[int]
) -> None:
    grouped = group(pan, sizes, sep)
    assume(not any(q in before + after for q in "[]'\""))
    out = Redactor().redact(f"{before} [{grouped}] {after}")
    assert grouped not in out
    # With the separators taken out, the PAN's digits must not line up again.
    inside = out[out.rindex("[") + 1 : out.rindex("]")]
    assert pan not in re.sub(r"[ \-]", "", inside)


@given(pans(), st.binary(max_size=12), st.binary(max_size=12), st.booleans())
def test_pan_as_bcd_hex_is_masked(pan: str, before: bytes, after: bytes, upper: bool) -> None:
    bcd = pan + ("F" if len(pan) % 2 else "")
    dump = before.hex() + bcd + after.hex()
    out = Redactor().redact("icc " + (dump.upper() if upper else dump.lower()))
    assert_pan_gone(pan, out)


@given(pans(), st.binary(max_size=12), st.binary(max_size=12))
def test_pan_in_bytes_repr_is_masked(pan: str, before: bytes, after: bytes) -> None:
    data = before + bytes.fromhex(pan + ("F" if len(pan) % 2 else "")) + after
    text = f"tlv={data!r} len={len(data)}"
    out = Redactor().redact(text)
    assert_pan_gone(pan, out)
    assert repr(data) not in out


@given(pans(), st.binary(max_size=12), st.binary(max_size=12), st.booleans())
def test_pan_as_ascii_in_bytes_repr_is_masked_in_every_spelling(
    pan: str, before: bytes, after: bytes, with_bcd: bool
) -> None:
    # A literal that also holds BCD card data is shown as hex: its ASCII PAN must not be
    # spelled out there as 3x3x... either.
    bcd = bytes.fromhex("5a08" + with_check_digit("941012345678901")) if with_bcd else b""
    data = before + pan.encode() + b"|" + bcd + after
    out = Redactor().redact(f"raw={data!r}")
    assert_pan_gone(pan, out)
    assert pan.encode().hex() not in out


@given(pans(), st.sampled_from("=D"), st.text("0123456789", min_size=7, max_size=20), context)
def test_track2_is_masked(pan: str, sep: str, rest: str, before: str) -> None:
    track2 = pan + sep + rest
    out = Redactor().redact(f"{before};{track2}?")
    assert_pan_gone(pan, out)
    assert sep + rest not in out


@given(pans())
def test_pan_keeps_at_most_first_six_and_last_four(pan: str) -> None:
    out = Redactor().redact(f"card {pan} read")
    masked = out.removeprefix("card ").removesuffix(" read")
    assert len(masked) == len(pan)
    assert sum(ch.isdigit() for ch in masked) <= 10


def test_qr_token_is_masked_even_unregistered() -> None:
    token = base64.b64encode(bytes.fromhex("8505435056303161") + bytes(range(90))).decode()
    out = Redactor().redact(f"scanned {token} at counter")
    assert out == f"scanned {QR_MASK} at counter"
    hexed = (bytes.fromhex("8505435056303161") + bytes(range(20))).hex()
    assert QR_MASK in Redactor().redact(hexed)


@given(
    st.binary(min_size=8, max_size=64),
    st.binary(max_size=16),
    st.binary(max_size=16),
)
def test_registered_bytes_survive_in_no_form(secret: bytes, before: bytes, after: bytes) -> None:
    redactor = Redactor()
    redactor.register(secret)
    blob = before + secret + after
    forms = {
        "hex": blob.hex(),
        "HEX": blob.hex().upper(),
        "spaced": blob.hex(" "),
        "b64": base64.b64encode(blob).decode(),
        "urlsafe": base64.urlsafe_b64encode(blob).decode().rstrip("="),
        "repr": repr(blob),
    }
    for name, text in forms.items():
        out = redactor.redact(f"x {text} y")
        assert secret.hex() not in out.lower(), name
        assert base64.b64encode(secret).decode().rstrip("=") not in out, name
        # At most a character or two at each edge of an unaligned base64 form may remain.
        if name in {"b64", "urlsafe"}:
            assert SECRET_MASK in out, name
    assert repr(secret)[2:-1] not in redactor.redact(repr(blob))


@given(st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=6, max_size=40))
def test_registered_text_survives_in_no_form(secret: str) -> None:
    redactor = Redactor()
    redactor.register(secret)
    raw = secret.encode()
    for text in (secret, raw.hex(), base64.b64encode(raw).decode()):
        assume(text not in f"token [{SECRET_MASK}] used")
        out = redactor.redact(f"token [{text}] used")
        assert text not in out


def test_short_or_wrong_type_secret_is_refused() -> None:
    redactor = Redactor()
    with pytest.raises(ValueError, match="too short"):
        redactor.register("abc")
    with pytest.raises(TypeError):
        redactor.register(12345678)  # type: ignore[arg-type]


def test_transient_secrets_are_bounded_and_permanent_ones_kept() -> None:
    redactor = Redactor()
    redactor.register("permanent-key-material")
    for i in range(TRANSIENT_SECRETS_KEPT + 5):
        redactor.register(f"qr-text-{i:06d}", transient=True)
    assert redactor.redact("permanent-key-material") == SECRET_MASK
    assert redactor.redact(f"qr-text-{TRANSIENT_SECRETS_KEPT + 4:06d}") == SECRET_MASK
    assert redactor.redact("qr-text-000000") == "qr-text-000000"


@given(
    st.integers(1, 10_000_000),
    st.integers(0, 999_999),
    st.integers(0, 10**12 - 1),
    st.integers(1_600_000_000, 2_000_000_000),
)
def test_ordinary_numbers_stay_readable(amount: int, stan: int, rrn: int, ts: int) -> None:
    line = (
        f"payment approved amount={amount} stan={stan:06d} rrn={rrn:012d} ts={ts} "
        f"at 2026-11-25T12:33:04.123Z from 10.20.30.40:8583 total {amount:,}원 "
        f"ids 123456 654321 {stan}"
    )
    assert redact_card_data(line) == line
    assert Redactor().redact(line) == line


def test_spaced_list_of_big_numbers_is_not_one_pan() -> None:
    line = "ts 1732537984 2026-11-25 rrn 123456789012 4567"
    assert Redactor().redact(line) == line


def test_huge_digit_run_is_hidden_quickly() -> None:
    out = Redactor().redact("x" + "7" * 100_000 + "y")
    assert out == "x<100000 digits masked>y"


def test_unicode_digits_next_to_a_pan_do_not_hide_it() -> None:
    pan = "9410123456789012"
    pan = with_check_digit(pan[:-1])
    out = Redactor().redact("٣" + pan + "０")
    assert_pan_gone(pan, out)


# ---- numbers that fail Luhn: 서로e음's own, and the configured card prefixes ---------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("card 9410000000000001 read", "card 941000******0001 read"),
        ("qr account 9410100000000001", "qr account 941010******0001"),
        ("9410 0000 1234 5678", "9410 00** **** 5678"),
        ("hex 9410000000000001ffff", "hex 941000******0001ffff"),
    ],
)
def test_seoroeum_numbers_are_masked_though_they_fail_luhn(text: str, shown: str) -> None:
    assert Redactor().redact(text) == shown


def test_a_seoroeum_number_inside_a_longer_run_is_masked() -> None:
    shown = Redactor().redact("LLVAR 169410000012345678 sent")
    assert "9410000012345678" not in shown and "00001234" not in shown
    assert shown.startswith("LLVAR 169410") and shown.endswith("5678 sent")


def test_a_configured_card_prefix_masks_numbers_that_fail_luhn() -> None:
    card = "6012345678900000"  # no window of it passes Luhn
    redactor = Redactor()
    assert redactor.redact(f"card {card}") == f"card {card}"
    redactor.set_card_prefixes(["6012", "x1"])
    assert redactor.redact(f"card {card}") == "card 601234******0000"
    # Short digit runs and other numbers stay readable.
    assert redactor.redact("stan 000123 amount 6012") == "stan 000123 amount 6012"
    assert redactor.redact("order 1234567890123") == "order 1234567890123"


def test_the_process_redactor_takes_the_config_prefixes(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, card_reader={"accepted_prefixes": ["6012"]}))
    register_config_secrets(config)
    assert redact("6012345678900000") == "601234******0000"
    assert redact("9410000000000001") == "941000******0001"
