"""Field 55 beyond the 0200: the issuer's data in a 0210, the card's TC in an advice."""

from __future__ import annotations

import pytest
from hypothesis import given

from protocols.ber_tlv import Tlv, decode_tlv, encode_tlv
from protocols.iso8583_profile import decode_message
from protocols.ledger_icc import issuer_data, with_tc
from protocols.ledger_messages import (
    CardPayer,
    LedgerFormatError,
    LedgerRequest,
    build_advice,
    build_purchase,
    decode_request,
    decode_response,
    encode,
    respond,
)

from .ledger_strategies import ARQC_ICC, KEY, NOW, PAN, icc_data
from .ledger_strategies import issuer_data as issuer_objects

ISSUER_91 = Tlv(0x91, bytes.fromhex("0102030405060708") + b"00")
SCRIPT_72 = Tlv(0x72, encode_tlv([Tlv(0x9F18, b"\x00\x00\x00\x01"), Tlv(0x86, b"\x84\x24")]))
TC = bytes.fromhex("A1A2A3A4A5A6A7A8")
COMPLETE_RESULT = encode_tlv([
    Tlv(0x9F26, TC), Tlv(0x9F27, b"\x40"), Tlv(0x95, bytes.fromhex("0000008000")),
    Tlv(0x9B, bytes.fromhex("E800")),
])  # fmt: skip


def _chip_purchase(icc: bytes = ARQC_ICC, mode: str = "chip") -> LedgerRequest:
    return build_purchase(
        stan=7, transmitted_at=NOW, local_now=NOW, amount=1000, terminal_id="T0000001",
        merchant_id="M00000000000001", payer=CardPayer(mode, PAN, "2812", None, icc),  # type: ignore[arg-type]
    )  # fmt: skip


def test_issuer_data_is_91_71_72_in_their_order_and_nothing_else() -> None:
    echoed = decode_tlv(ARQC_ICC)
    field55 = encode_tlv([echoed[0], ISSUER_91, echoed[1], SCRIPT_72, *echoed[2:]])
    assert issuer_data(field55) == encode_tlv([ISSUER_91, SCRIPT_72])
    assert issuer_data(ARQC_ICC) == b""  # an echo of the card's own data only
    with pytest.raises(LedgerFormatError) as info:
        issuer_data(b"\x91\x09\x01")
    assert info.value.field == "55"


@given(icc_data, issuer_objects)
def test_a_0210_hands_over_the_issuer_objects_it_carries(echo: bytes, issuer: bytes) -> None:
    field55 = echo + issuer
    if len(field55) > 255:
        return
    answer = respond(_chip_purchase(), "00", rrn="000000000001", icc=field55)
    decoded = decode_response(encode(answer, KEY), KEY).message
    wanted = [item for item in decode_tlv(field55) if item.tag in (0x91, 0x71, 0x72)]
    assert decoded.issuer_data == encode_tlv(wanted)  # type: ignore[union-attr]


def test_issuer_data_only_from_a_0210() -> None:
    purchase = _chip_purchase()
    field55 = encode_tlv([ISSUER_91])
    assert respond(purchase, "00", icc=field55).issuer_data == field55
    assert respond(purchase, "05", icc=field55).issuer_data == field55  # a decline's ARC too
    assert respond(purchase, "00").issuer_data == b""  # its 55 is the echoed ARQC data
    advice = build_advice(purchase, "Y10001", tc=COMPLETE_RESULT)
    assert respond(advice, "00").issuer_data == b""  # a 0230: 55 can only be an echo
    assert respond(purchase, "00", echo=()).icc is None


def test_with_tc_puts_the_tc_where_the_arqc_was() -> None:
    card = decode_tlv(ARQC_ICC)
    result = {item.tag: item for item in decode_tlv(COMPLETE_RESULT)}
    replaced = decode_tlv(with_tc(ARQC_ICC, COMPLETE_RESULT))
    assert [item.tag for item in replaced] == [item.tag for item in card] + [0x9B]
    for before, after in zip(card, replaced, strict=False):
        if before.tag in (0x9F26, 0x9F27, 0x95):
            assert after == result[before.tag]
        else:
            assert after == before  # every other object as the card gave it
    assert replaced[-1] == result[0x9B]


@pytest.mark.parametrize(
    ("complete_result", "problem"),
    [
        (encode_tlv([Tlv(0x9F26, TC), Tlv(0x9F27, b"\x00")]), "not a TC"),  # AAC
        (encode_tlv([Tlv(0x9F26, TC), Tlv(0x9F27, b"\x80")]), "not a TC"),  # ARQC
        (encode_tlv([Tlv(0x9F27, b"\x40")]), "no cryptogram"),
        (encode_tlv([Tlv(0x9F26, TC)]), "no cryptogram"),
        (b"\x9f\x26\x08\x01", "not BER-TLV"),
    ],
)
def test_with_tc_refuses_what_is_not_a_tc(complete_result: bytes, problem: str) -> None:
    with pytest.raises(LedgerFormatError, match=problem) as info:
        with_tc(ARQC_ICC, complete_result)
    assert info.value.field == "55" and TC.hex() not in str(info.value).lower()


def test_a_chip_advice_carries_the_tc_and_no_37() -> None:
    purchase = _chip_purchase()
    advice = build_advice(purchase, "Y10042", tc=COMPLETE_RESULT)
    assert advice.mti == "0220" and advice.icc == with_tc(ARQC_ICC, COMPLETE_RESULT)
    assert (advice.stan, advice.transmission) == (purchase.stan, purchase.transmission)
    raw = encode(advice, KEY)
    fields = decode_message(raw).fields
    assert 37 not in fields and fields[38] == "Y10042"
    sent = {item.tag: item.value for item in decode_tlv(fields[55])}  # type: ignore[arg-type]
    assert sent[0x9F26] == TC and sent[0x9F27] == b"\x40" and sent[0x9B] == b"\xe8\x00"
    assert decode_request(raw, KEY).message == advice
    # Without a TC (a contactless card's offline cryptogram came in CARD_DATA) 55 stays.
    assert build_advice(purchase, "Y10042").icc == ARQC_ICC


def test_only_a_chip_advice_takes_a_tc() -> None:
    with pytest.raises(ValueError, match="chip"):
        build_advice(_chip_purchase(mode="contactless"), "Y10001", tc=COMPLETE_RESULT)
    with pytest.raises(LedgerFormatError):
        build_advice(_chip_purchase(), "Y10001", tc=encode_tlv([Tlv(0x9F27, b"\x00")]))
