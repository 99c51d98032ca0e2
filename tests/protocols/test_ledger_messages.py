"""Typed ledger messages: builders, round trips of every message type, and each wrong field."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.iso8583_profile import FieldValue, decode_message, encode_message
from protocols.ledger_fields import field7, local_fields, next_stan, offline_auth_code
from protocols.ledger_messages import (
    CardPayer,
    LedgerFormatError,
    LedgerRequest,
    LedgerResponse,
    NetworkRequest,
    NetworkResponse,
    OriginalData,
    QrPayer,
    build_advice,
    build_purchase,
    build_reversal,
    decode_request,
    decode_response,
    encode,
    network_request,
    repeat_of,
    request_from_fields,
    respond,
    respond_network,
)

from .ledger_strategies import (
    ARQC_ICC,
    KEY,
    KST,
    NOW,
    OTHER_KEY,
    PAN,
    advices,
    alnum,
    ascii_text,
    echoes,
    network_codes,
    requests,
    response_codes,
    reversals,
    stans,
    times,
)


@given(requests)
def test_request_round_trip_and_mac(request: LedgerRequest) -> None:
    raw = encode(request, KEY)
    inbound = decode_request(raw, KEY)
    assert inbound.message == request
    assert inbound.mac_valid
    assert not decode_request(raw, OTHER_KEY).mac_valid
    if request.pan is not None:
        assert f"pan={request.pan!r}" not in repr(request)


@given(requests)
def test_request_from_its_fields(request: LedgerRequest) -> None:
    assert request_from_fields(request.mti, request.fields()) == request


def test_request_from_fields_refuses_what_a_decoder_refuses() -> None:
    fields = _purchase().fields()
    with pytest.raises(LedgerFormatError) as info:
        request_from_fields("0210", fields)
    assert info.value.field == "t"
    with pytest.raises(LedgerFormatError) as info:
        request_from_fields("0200", {**fields, 2: "94101234x6789012"})
    assert (info.value.field, info.value.stan) == ("2", 3)
    with pytest.raises(LedgerFormatError) as info:
        request_from_fields("0200", {n: v for n, v in fields.items() if n != 41})
    assert info.value.field == "41"


@given(requests, response_codes, st.none() | alnum(12), st.none() | alnum(6), echoes)
def test_response_round_trip_with_echoes(
    request: LedgerRequest, code: str, rrn: str | None, auth: str | None, echo: set[int] | None
) -> None:
    response = respond(request, code, rrn=rrn, auth_code=auth, echo=echo)
    assert response.match_key == request.match_key
    raw = encode(response, KEY)
    inbound = decode_response(raw, KEY)
    assert inbound.message == response and inbound.mac_valid
    assert not decode_response(raw, OTHER_KEY).mac_valid
    carried = request.fields()
    sent = decode_message(raw).fields
    own = {37: rrn, 38: auth, 39: code}
    for number, value in carried.items():
        if number in own and own[number] is not None:
            assert sent[number] == own[number]
        elif echo is None or number in echo or number in (11, 41):
            assert sent[number] == value
        else:
            assert number not in sent
    assert sent[39] == code and (64 in sent) != (128 in sent)


@given(network_codes, stans, times, ascii_text(8), response_codes)
def test_network_round_trip(code: str, stan: int, at: dt.datetime, tid: str, rc: str) -> None:
    request = network_request(code, stan=stan, transmitted_at=at, terminal_id=tid)  # type: ignore[arg-type]
    raw = encode(request, KEY)
    assert decode_message(raw).mac_input == b""  # network messages carry no MAC
    assert decode_request(raw, OTHER_KEY) == decode_request(raw, KEY)
    assert decode_request(raw, KEY).message == request
    response = respond_network(request, rc)
    assert decode_response(encode(response, KEY), KEY).message == response
    assert response.match_key == request.match_key == ("0810", stan)


@given(advices() | reversals())
def test_repeat_changes_only_the_mti_and_mac(request: LedgerRequest) -> None:
    first = encode(replace(request, mti=request.mti[:3] + "0"), KEY)
    again = encode(repeat_of(request), KEY)
    assert len(first) == len(again)
    differing = [i for i, (a, b) in enumerate(zip(first, again, strict=True)) if a != b]
    mac_at = len(decode_message(first).mac_input)
    assert all(i == 3 or mac_at <= i < mac_at + 8 for i in differing)
    assert repeat_of(request).match_key == (request.response_mti, request.stan)


def test_purchase_known_fields() -> None:
    payer = CardPayer("chip", PAN, "2812", "9410123456789012D28121010000", b"\x9f\x02\x01\x00")
    request = build_purchase(
        stan=42,
        transmitted_at=NOW,
        local_now=NOW.astimezone(KST),
        amount=9500,
        terminal_id="T0000001",
        merchant_id="M00000000000001",
        payer=payer,
        benefit_rate_bps=500,
        discount=500,
    )
    fields = request.fields()
    assert fields[7] == "1125030405"  # UTC
    assert (fields[12], fields[13]) == ("120405", "1125")  # KST
    assert fields[22] == "051" and fields[25] == "00" and fields[49] == "410"
    assert fields[48] == "BP=500;DA=500"
    assert fields[55] == b"\x9f\x02\x01\x00"
    assert 35 not in fields  # chip sends ICC data, not track 2
    assert request.match_key == ("0210", 42)
    assert request.idempotency_key == ("T0000001", 42, "1125030405")


def test_qr_purchase_fields() -> None:
    token = base64.b64encode(b"\x85\x05CPV01").decode()
    request = build_purchase(
        stan=1,
        transmitted_at=NOW,
        local_now=NOW,
        amount=1000,
        terminal_id="T0000001",
        merchant_id="M00000000000001",
        payer=QrPayer("1234567890123456", token),
    )
    fields = request.fields()
    assert fields[2] == "1234567890123456" and fields[22] == "031"
    assert fields[48] == "QT=" + token
    assert token not in repr(request) and token not in repr(request.additional)


def test_magstripe_sends_track2_not_icc() -> None:
    payer = CardPayer("magstripe", PAN, None, PAN + "=2812101", b"\x9f\x02\x01\x00")
    request = build_purchase(
        stan=1, transmitted_at=NOW, local_now=NOW, amount=1, terminal_id="T0000001",
        merchant_id="M00000000000001", payer=payer,
    )  # fmt: skip
    assert request.fields()[22] == "901"
    assert request.track2 == PAN + "=2812101" and request.icc is None


def test_field90_and_reversal_of_purchase() -> None:
    purchase = build_purchase(
        stan=7, transmitted_at=NOW, local_now=NOW, amount=5000, terminal_id="T0000001",
        merchant_id="M00000000000001", payer=CardPayer("contactless", PAN, "2812", None, b"\x01"),
    )  # fmt: skip
    later = NOW + dt.timedelta(seconds=20)
    reversal = build_reversal(purchase, stan=8, transmitted_at=later, local_now=later)
    fields = reversal.fields()
    assert fields[90] == "0200" + "000007" + "1125030405" + "0" * 22
    assert fields[4] == "000000005000" and fields[11] == "000008"
    assert 55 not in fields and 35 not in fields
    assert OriginalData.parse(str(fields[90])) == OriginalData("0200", 7, "1125030405")
    assert reversal.match_key == ("0410", 8)


def test_field7_and_local_fields() -> None:
    assert field7(NOW.astimezone(KST)) == "1125030405"
    assert local_fields(dt.datetime(2026, 1, 2, 3, 4, 5)) == ("030405", "0102")
    with pytest.raises(ValueError, match="aware"):
        field7(dt.datetime(2026, 1, 1))


def test_stan_rules() -> None:
    assert next_stan(None, set()) == 1
    assert next_stan(1, set()) == 2
    assert next_stan(999_999, set()) == 1
    assert next_stan(999_998, {999_999, 1, 2}) == 3
    assert next_stan(5, {6}) == 7
    with pytest.raises(ValueError):
        next_stan(0, set())
    with pytest.raises(ValueError):
        next_stan(1_000_000, set())
    with pytest.raises(ValueError, match="every STAN"):
        next_stan(1, range(1, 1_000_000))


def test_offline_auth_code() -> None:
    assert offline_auth_code(42) == "Y10042"
    assert offline_auth_code(123_456) == "Y13456"


# ---- every parser, given each wrong field ------------------------------------------------


def _purchase() -> LedgerRequest:
    return build_purchase(
        stan=3, transmitted_at=NOW, local_now=NOW, amount=1000, terminal_id="T0000001",
        merchant_id="M00000000000001", payer=CardPayer("chip", PAN, "2812", None, ARQC_ICC),
    )  # fmt: skip


def _tampered(
    base: dict[int, FieldValue], changes: dict[int, FieldValue | None]
) -> dict[int, FieldValue]:
    fields = dict(base)
    for number, value in changes.items():
        if value is None:
            fields.pop(number, None)
        else:
            fields[number] = value
    return fields


REQUEST_CASES: list[tuple[str, dict[int, FieldValue | None], str]] = [
    ("0210", {}, "t"),
    ("0200", {2: None}, "2"),
    ("0200", {3: "310000"}, "3"),
    ("0200", {3: None}, "3"),
    ("0200", {4: "000000000000"}, "4"),
    ("0200", {7: "1325030405"}, "7"),
    ("0200", {7: None}, "7"),
    ("0200", {11: "000000"}, "11"),
    ("0200", {12: "250000"}, "12"),
    ("0200", {13: "1132"}, "13"),
    ("0200", {14: "2813"}, "14"),
    ("0200", {22: "999"}, "22"),
    ("0200", {22: "031"}, "22"),  # QR entry mode with card data
    ("0200", {25: "01"}, "25"),
    ("0200", {37: "000000000001"}, "37"),  # a purchase carries no RRN
    ("0200", {41: None}, "41"),
    ("0200", {42: None}, "42"),
    ("0200", {48: "XX=1"}, "48"),
    ("0200", {49: "840"}, "49"),
    ("0200", {90: "0" * 42}, "90"),
    ("0220", {}, "38"),  # an advice needs its approval code
    ("0220", {38: "A12345"}, "38"),  # posd's own: Y1 and 4 digits
    ("0400", {}, "90"),  # a reversal names its original
]


@pytest.mark.parametrize(("mti", "changes", "field"), REQUEST_CASES)
def test_decode_request_names_each_wrong_field(
    mti: str, changes: dict[int, FieldValue | None], field: str
) -> None:
    raw = encode_message(mti, _tampered(_purchase().fields(), changes), KEY)
    with pytest.raises(LedgerFormatError) as info:
        decode_request(raw, KEY)
    assert info.value.field == field
    assert PAN not in str(info.value)


def test_decode_request_needs_a_mac_and_knows_the_stan() -> None:
    raw = encode_message("0200", _purchase().fields(), None)
    with pytest.raises(LedgerFormatError) as info:
        decode_request(raw, KEY)
    assert (info.value.field, info.value.mti, info.value.stan) == ("64", "0200", 3)


def test_field90_wrong_shapes() -> None:
    good = "0200" + "000007" + "1125030405"
    for bad in [good + "0" * 21 + "1", "0200000000" + "1125030405" + "0" * 22,
                "0200000007" + "1132030405" + "0" * 22]:  # fmt: skip
        with pytest.raises(LedgerFormatError) as info:
            OriginalData.parse(bad)
        assert info.value.field == "90"


def _response() -> LedgerResponse:
    return respond(_purchase(), "00", rrn="000000000001", auth_code="A12345")


RESPONSE_CASES: list[tuple[str, dict[int, FieldValue | None], str]] = [
    ("0200", {}, "t"),
    ("0210", {11: None}, "11"),
    ("0210", {11: "000000"}, "11"),
    ("0210", {39: None}, "39"),
    ("0210", {41: None}, "41"),
    ("0210", {4: "000000000000"}, "4"),
    ("0210", {49: "840"}, "49"),  # 4 would be counted in another currency
    ("0210", {55: b"\x9f"}, "55"),  # issuer data to pass to the card, not BER-TLV
]


@pytest.mark.parametrize(("mti", "changes", "field"), RESPONSE_CASES)
def test_decode_response_names_each_wrong_field(
    mti: str, changes: dict[int, FieldValue | None], field: str
) -> None:
    raw = encode_message(mti, _tampered(_response().fields(), changes), KEY)
    with pytest.raises(LedgerFormatError) as info:
        decode_response(raw, KEY)
    assert info.value.field == field
    assert PAN not in str(info.value)


ACCEPTED_ANSWERS: list[tuple[str, dict[int, FieldValue | None]]] = [
    ("0210", {7: None, 3: None, 4: None, 49: None, 12: None, 13: None, 42: None}),  # echo none
    ("0210", {2: PAN, 14: "2812", 35: PAN + "=2812101", 22: "051", 25: "00"}),  # card data
    ("0210", {3: "310000", 7: "0000000000"}),  # not used by posd: its format is enough
    ("0210", {49: None}),  # 4 without 49
    ("0230", {48: "BP=500;DA=500", 55: ARQC_ICC, 90: "0" * 42}),  # 90: MAC in 128
    ("0410", {70: "301", 90: "0200" + "000003" + "1125030405" + "0" * 22}),
]


@pytest.mark.parametrize(("mti", "changes"), ACCEPTED_ANSWERS)
def test_an_answer_accepts_every_field_of_the_profile(
    mti: str, changes: dict[int, FieldValue | None]
) -> None:
    raw = encode_message(mti, _tampered(_response().fields(), changes), KEY)
    inbound = decode_response(raw, KEY)
    assert inbound.mac_valid and isinstance(inbound.message, LedgerResponse)
    answer = inbound.message
    assert (answer.mti, answer.stan, answer.response_code) == (mti, 3, "00")
    assert encode(answer, KEY) == raw
    assert PAN not in repr(answer) and PAN not in str(answer) and "2812" not in repr(answer)


NETWORK_CASES: list[tuple[str, dict[int, FieldValue | None], str]] = [
    ("0810", {70: "003"}, "70"),
    ("0810", {70: None}, "70"),
    ("0810", {39: None}, "39"),
    ("0810", {11: None}, "11"),
    ("0810", {41: None}, "41"),
    ("0810", {7: "1132000000"}, "7"),
]


@pytest.mark.parametrize(("mti", "changes", "field"), NETWORK_CASES)
def test_decode_network_response_names_each_wrong_field(
    mti: str, changes: dict[int, FieldValue | None], field: str
) -> None:
    base = NetworkResponse("001", 9, "1125030405", "T0000001", "00").fields()
    raw = encode_message(mti, _tampered(base, changes))
    with pytest.raises(LedgerFormatError) as info:
        decode_response(raw, KEY)
    assert info.value.field == field


def test_network_request_wrong_code() -> None:
    raw = encode_message("0800", {7: "1125030405", 11: "000001", 41: "T0000001", 70: "999"})
    with pytest.raises(LedgerFormatError) as info:
        decode_request(raw, KEY)
    assert info.value.field == "70"
    with pytest.raises(LedgerFormatError):
        NetworkRequest("999", 1, "1125030405", "T0000001")  # type: ignore[arg-type]


def test_builders_refuse_what_the_profile_refuses() -> None:
    with pytest.raises(LedgerFormatError) as info:
        replace(_purchase(), amount=0)
    assert info.value.field == "4"
    with pytest.raises(LedgerFormatError) as info:
        replace(_purchase(), terminal_id="T1")
    assert info.value.field == "41"
    with pytest.raises(ValueError, match="never resent"):
        repeat_of(_purchase())
    with pytest.raises(ValueError, match="advice"):
        build_advice(build_advice(_purchase(), "Y10001"), "Y10002")
