"""Answers as a real host sends them: echoes, the check against the request, card data that
never shows, the profile 2 MAC byte by byte, and the ledger's clock in the 0810."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.iso8583_profile import MAC_FIELDS, decode_message, encode_message
from protocols.ledger_answers import AnswerMismatch, check_answer
from protocols.ledger_messages import (
    CardPayer,
    LedgerFormatError,
    LedgerRequest,
    LedgerResponse,
    NetworkResponse,
    build_reversal,
    decode_request,
    decode_response,
    encode,
    network_request,
    respond,
    respond_network,
)

from .ledger_strategies import (
    KEY,
    NOW,
    PAN,
    TRACK2,
    ascii_text,
    card_purchase,
    digits,
    echoes,
    issuer_data,
    network_codes,
    purchases,
    requests,
    response_codes,
    stans,
    times,
)


def _card_data(request: LedgerRequest) -> list[str]:
    return [value for value in (request.pan, request.track2) if value]


# ---- the check against the request -----------------------------------------------------------


@given(requests, echoes)
def test_an_answer_to_its_request_passes(request: LedgerRequest, echo: set[int] | None) -> None:
    check_answer(request, respond(request, "00", echo=echo))


@given(purchases())
def test_an_answer_contradicting_its_request_is_malformed(request: LedgerRequest) -> None:
    answer = respond(request, "00", rrn="000000000001")
    other_stan = request.stan % 999_999 + 1
    other_terminal = "T9999999" if request.terminal_id != "T9999999" else "T9999998"
    other_amount = request.amount % 999_999_999_999 + 1
    contradictions = [
        (replace(answer, mti="0230"), "t"),
        (replace(answer, stan=other_stan), "11"),
        (replace(answer, terminal_id=other_terminal), "41"),
        (replace(answer, amount=other_amount), "4"),
    ]
    for wrong, field in contradictions:
        with pytest.raises(AnswerMismatch) as info:
            check_answer(request, wrong)
        assert isinstance(info.value, LedgerFormatError)
        assert (info.value.field, info.value.mti, info.value.stan) == (
            field,
            wrong.mti,
            wrong.stan,
        )
        for secret in _card_data(request):
            assert secret not in str(info.value)
    check_answer(request, replace(answer, amount=None))  # 4 is checked where present
    # A network answer is no answer to a financial request, and the other way round.
    sign_on = network_request("001", stan=request.stan, transmitted_at=NOW, terminal_id="T1234567")
    with pytest.raises(AnswerMismatch, match="field t"):
        check_answer(request, respond_network(sign_on))
    with pytest.raises(AnswerMismatch, match="field t"):
        check_answer(sign_on, answer)


def test_a_network_answer_is_checked_on_11_and_41() -> None:
    echo = network_request("301", stan=12, transmitted_at=NOW, terminal_id="T0000001")
    check_answer(echo, respond_network(echo, ledger_time=NOW + dt.timedelta(seconds=90)))
    with pytest.raises(AnswerMismatch, match="field 11"):
        check_answer(echo, replace(respond_network(echo), stan=13))
    with pytest.raises(AnswerMismatch, match="field 41"):
        check_answer(echo, replace(respond_network(echo), terminal_id="T0000002"))


def test_a_repeat_is_answered_by_its_first_transmissions_answer_mti() -> None:
    reversal = build_reversal(card_purchase(stan=5), stan=6, transmitted_at=NOW, local_now=NOW)
    check_answer(replace(reversal, mti="0401"), respond(reversal, "00"))


# Any field of the profile an answer may carry beside those posd reads, with a value in its
# format: what a ledger echoing requests other than posd's own might send.
_ANY_ECHO = st.fixed_dictionaries(
    {},
    optional={
        2: st.integers(12, 19).flatmap(digits), 3: digits(6), 7: digits(10), 12: digits(6),
        13: digits(4), 14: digits(4), 22: digits(3), 25: digits(2),
        35: st.text(alphabet="0123456789D=", min_size=12, max_size=37),
        42: ascii_text(15), 48: st.integers(1, 999).flatmap(ascii_text), 49: st.just("410"),
        70: digits(3), 90: digits(42),
    },
)  # fmt: skip


@given(
    st.sampled_from(["0210", "0230", "0410"]),
    stans,
    response_codes,
    st.none() | st.integers(1, 999_999_999_999),
    st.none() | issuer_data,
    _ANY_ECHO,
)
def test_round_trip_of_answers_with_any_echoed_fields(
    mti: str,
    stan: int,
    code: str,
    amount: int | None,
    icc: bytes | None,
    echoed: dict[int, str],
) -> None:
    answer = LedgerResponse(
        mti=mti, stan=stan, response_code=code, terminal_id="T0000001", amount=amount,
        icc=icc, echoed=tuple(echoed.items()),
    )  # fmt: skip
    raw = encode(answer, KEY)
    iso = decode_message(raw)
    assert iso.mac_field == (128 if {70, 90} & set(echoed) else 64)
    inbound = decode_response(raw, KEY)
    assert inbound.mac_valid and inbound.message == answer
    assert dict(answer.echoed) == echoed
    assert answer.issuer_data == (icc if mti == "0210" and icc else b"")
    bare = repr(replace(answer, echoed=()))
    for secret in (echoed.get(2), echoed.get(35)):
        if secret is not None and secret not in bare:
            assert secret not in repr(answer) and secret not in str(answer)


def test_an_echo_is_a_field_of_the_profile_that_posd_does_not_read() -> None:
    for echoed, field in [(((5, "1"),), "5"), (((39, "00"),), "39"), (((64, bytes(8)),), "64"),
                          (((2, "1"), (2, "2")), "2"), (((14, "28"),), "14")]:  # fmt: skip
        with pytest.raises(LedgerFormatError) as info:
            LedgerResponse(mti="0210", stan=1, response_code="00", terminal_id="T0000001",
                           echoed=echoed)  # type: ignore[arg-type]  # fmt: skip
        assert info.value.field == field


# ---- card data never shows -------------------------------------------------------------------


@given(requests, echoes, response_codes)
def test_no_repr_str_or_error_of_an_answer_shows_card_data(
    request: LedgerRequest, echo: set[int] | None, code: str
) -> None:
    answer = respond(request, code, rrn="000000000001", echo=echo)
    raw = encode(answer, KEY)
    decoded = decode_response(raw, KEY)
    shown = [repr(answer), str(answer), repr(decoded), str(decoded.message)]
    # Every single-byte corruption of the answer, whatever the decoder makes of it.
    for at in range(0, len(raw), 7):
        broken = raw[:at] + bytes([raw[at] ^ 0x5A]) + raw[at + 1 :]
        try:
            shown.append(repr(decode_response(broken, KEY)))
        except LedgerFormatError as exc:
            shown += [str(exc), repr(exc)]
    for secret in _card_data(request):
        assert not any(secret in text for text in shown)
    if request.icc is not None and len(request.icc) >= 4:
        assert not any(request.icc.hex() in text.lower() for text in shown)


def test_track2_echoed_in_a_0210_never_shows() -> None:
    request = card_purchase(CardPayer("magstripe", PAN, "2812", TRACK2))
    answer = decode_response(encode(respond(request, "00"), KEY), KEY).message
    assert isinstance(answer, LedgerResponse)
    assert dict(answer.echoed)[35] == TRACK2 and dict(answer.echoed)[14] == "2812"
    assert TRACK2 not in repr(answer) and "2812" not in repr(answer)


# ---- the MAC of profile 2, byte by byte --------------------------------------------------------


@given(requests, st.data())
def test_any_changed_byte_of_a_request_fails_its_mac(
    request: LedgerRequest, data: st.DataObject
) -> None:
    raw = encode(request, KEY)
    at = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    changed = raw[:at] + bytes([byte]) + raw[at + 1 :]
    try:
        inbound = decode_request(changed, KEY)
    except LedgerFormatError:
        return  # no longer a message: refused before any MAC could pass
    assert not inbound.mac_valid


@given(requests, echoes, response_codes, st.data())
def test_any_changed_byte_of_an_answer_fails_its_mac(
    request: LedgerRequest, echo: set[int] | None, code: str, data: st.DataObject
) -> None:
    raw = encode(respond(request, code, echo=echo), KEY)
    at = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[at]))
    try:
        inbound = decode_response(raw[:at] + bytes([byte]) + raw[at + 1 :], KEY)
    except LedgerFormatError:
        return
    assert not inbound.mac_valid


@given(purchases(), stans, times)
def test_a_reversal_whose_field_90_names_another_payment_fails_its_mac(
    purchase: LedgerRequest, stan: int, at: dt.datetime
) -> None:
    reversal = build_reversal(purchase, stan=stan, transmitted_at=at, local_now=at)
    raw = encode(reversal, KEY)
    iso = decode_message(raw)
    assert iso.mac_field == 128 and 64 not in iso.fields and raw.endswith(iso.fields[128])  # type: ignore[arg-type]
    field90 = str(iso.fields[90]).encode()
    other = field90[:4] + f"{purchase.stan % 999_999 + 1:06d}".encode() + field90[10:]
    tampered = raw.replace(field90, other)
    inbound = decode_request(tampered, KEY)
    assert isinstance(inbound.message, LedgerRequest)
    assert inbound.message.original is not None
    assert inbound.message.original.stan != purchase.stan
    assert not inbound.mac_valid


def test_an_answer_without_its_mac_is_no_answer() -> None:
    reversal = build_reversal(card_purchase(), stan=9, transmitted_at=NOW, local_now=NOW)
    answer = respond(reversal, "00")
    fields = answer.fields()
    assert 90 in fields  # echoed, so the MAC goes in 128
    for raw, field in [
        (encode_message("0410", fields), "128"),
        (encode_message("0210", {n: v for n, v in fields.items() if n != 90}), "64"),
    ]:
        with pytest.raises(LedgerFormatError) as info:
            decode_response(raw, KEY)
        assert (info.value.field, info.value.stan) == (field, 9)
    assert not (MAC_FIELDS & set(fields))


# ---- the ledger's clock -------------------------------------------------------------------------


@given(network_codes, stans, times, st.integers(-86_400, 86_400))
def test_the_0810_carries_the_ledgers_clock(
    code: str, stan: int, at: dt.datetime, offset_s: int
) -> None:
    sign_on = network_request(code, stan=stan, transmitted_at=at, terminal_id="T0000001")  # type: ignore[arg-type]
    ledger_now = at + dt.timedelta(seconds=offset_s)
    raw = encode(respond_network(sign_on, ledger_time=ledger_now), KEY)
    answer = decode_response(raw, KEY).message
    assert isinstance(answer, NetworkResponse)
    assert answer.ledger_time(at) == ledger_now.replace(microsecond=0)
    assert answer.clock_skew_s(at.replace(microsecond=0)) == offset_s
    check_answer(sign_on, answer)


def test_an_0810_ignores_what_it_does_not_use() -> None:
    fields = respond_network(network_request("001", stan=4, transmitted_at=NOW,
                                             terminal_id="T0000001")).fields()  # fmt: skip
    extra = fields | {2: "9410123456789012", 12: "120405", 13: "1125", 90: "0" * 42}
    for raw in (encode_message("0810", extra), encode_message("0810", extra, KEY)):
        answer = decode_response(raw, KEY).message
        assert answer == NetworkResponse("001", 4, "1125030405", "T0000001", "00")
        assert "9410123456789012" not in repr(answer)
