"""The fuzz targets for TLV, QR and HID, fed by hypothesis: they must hold on any bytes."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from fuzz import fuzz_hid, fuzz_qr, fuzz_tlv
from protocols.qr_token import make_qr

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
    # Seeds a fuzzer would start from: a chip CARD_DATA and a good token's payload.
    fuzz_tlv.target(CHIP)
    token = make_qr("9410000012345678", fuzz_qr.NOW, fuzz_qr.NOW + 60, bytes(8), 1, fuzz_qr.KEY)
    fuzz_qr.target(base64.b64decode(token))
    fuzz_qr.target(token.encode())
