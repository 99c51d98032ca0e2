"""The fuzz targets for TLV, QR and HID, fed by hypothesis: they must hold on any bytes."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from fuzz import fuzz_hid, fuzz_qr, fuzz_tlv
from protocols.ber_tlv import decode_tlv, find_tag
from protocols.emv import pan_from_5a
from protocols.qr_token import QrToken, make_qr, verify_qr

from .test_ber_tlv import CHIP


@given(st.binary(max_size=400))
def test_tlv_target(data: bytes) -> None:
    fuzz_tlv.target(data)


@given(st.binary(max_size=400))
def test_qr_target(data: bytes) -> None:
    fuzz_qr.target(data)


@given(st.binary(max_size=400))
def test_hid_target(data: bytes) -> None:
    fuzz_hid.target(data)


def test_targets_reach_past_the_first_checks() -> None:
    # Seeds a fuzzer would start from: a chip CARD_DATA and a good token's payload. Each must
    # pass every check, so mutations of it reach the deepest paths.
    items = decode_tlv(CHIP)
    pan = find_tag(items, 0x5A)
    assert pan is not None and pan_from_5a(pan.value).startswith("94")
    fuzz_tlv.target(CHIP)
    token = make_qr("9410000012345678", fuzz_qr.NOW, fuzz_qr.NOW + 60, bytes(8), 1, fuzz_qr.KEY)
    payload = base64.b64decode(token)
    # The target re-encodes the payload, as a scanner's text would come: still a good token.
    for text in (token, base64.b64encode(payload).decode("ascii")):
        assert isinstance(verify_qr(text, fuzz_qr.KEYS, fuzz_qr.NOW), QrToken)
    fuzz_qr.target(payload)
    fuzz_qr.target(token.encode())
