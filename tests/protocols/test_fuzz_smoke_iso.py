"""The ledger and payload fuzz targets, fed by hypothesis and from good seeds."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from fuzz import fuzz_iso8583, fuzz_payloads
from protocols.command_payload import VerifiedCommand, sign_command, verify_command
from protocols.ledger_messages import (
    CardPayer,
    LedgerRequest,
    LedgerResponse,
    NetworkRequest,
    NetworkResponse,
    build_purchase,
    build_reversal,
    decode_request,
    decode_response,
    encode,
    network_request,
    respond,
    respond_network,
)
from protocols.length_prefix import frame
from protocols.order_payload import Order, parse_order

NOW = dt.datetime(2026, 11, 25, 3, 4, 5, tzinfo=dt.UTC)
PURCHASE = build_purchase(
    stan=1,
    transmitted_at=NOW,
    local_now=NOW,
    amount=1000,
    terminal_id="T0000001",
    merchant_id="M00000000000001",
    payer=CardPayer("chip", "9410123456789012", "2812", None, b"\x9f\x02\x01\x00"),
)
REVERSAL = build_reversal(PURCHASE, stan=2, transmitted_at=NOW, local_now=NOW)
SIGN_ON = network_request("001", stan=3, transmitted_at=NOW, terminal_id="T0000001")
SEEDS = [
    encode(PURCHASE, fuzz_iso8583.KEY),
    encode(REVERSAL, fuzz_iso8583.KEY),  # profile 2: the MAC in 128, after 90
    encode(respond(PURCHASE, "00", rrn="000000000001"), fuzz_iso8583.KEY),  # echoes all
    encode(SIGN_ON, b""),
    encode(respond(REVERSAL, "00", rrn="000000000001"), fuzz_iso8583.KEY),  # echoes 90
    encode(respond_network(SIGN_ON, ledger_time=NOW), b""),
]


@given(st.binary(max_size=600))
def test_iso8583_target(data: bytes) -> None:
    fuzz_iso8583.target(data)


@given(st.sampled_from(SEEDS), st.integers(0, 300), st.integers(0, 255))
def test_iso8583_target_on_mutated_seeds(seed: bytes, at: int, byte: int) -> None:
    mutated = bytearray(seed)
    mutated[at % len(mutated)] = byte
    fuzz_iso8583.target(bytes(mutated))
    fuzz_iso8583.target(frame(bytes(mutated)))


@given(st.binary(max_size=400))
def test_payloads_target(data: bytes) -> None:
    fuzz_payloads.target(data)


ORDER_SEED = (
    b'{"order_id":"a","placed_at":"2026-11-25T03:00:00Z",'
    b'"items":[{"name":"x","qty":1,"price":1}],"total":1}'
)
COMMAND_SEED = sign_command(
    "log_level", "c", fuzz_payloads.NOW, {"level": "info"}, fuzz_payloads.OPERATOR
)


def test_targets_reach_past_the_first_checks() -> None:
    # The seeds are good messages under the targets' own keys: the decoders and the MAC and
    # signature checks all pass on them, so mutations start from the deepest paths.
    key = fuzz_iso8583.KEY
    requests = [decode_request(seed, key) for seed in (SEEDS[0], SEEDS[1], SEEDS[3])]
    assert all(inbound.mac_valid for inbound in requests)
    assert [type(inbound.message) for inbound in requests] == [
        LedgerRequest, LedgerRequest, NetworkRequest
    ]  # fmt: skip
    answers = [decode_response(seed, key) for seed in (SEEDS[2], SEEDS[4], SEEDS[5])]
    assert all(inbound.mac_valid for inbound in answers)
    assert [type(inbound.message) for inbound in answers] == [
        LedgerResponse, LedgerResponse, NetworkResponse
    ]  # fmt: skip
    assert isinstance(parse_order(ORDER_SEED), Order)
    assert isinstance(
        verify_command("log_level", COMMAND_SEED, fuzz_payloads.KEYS, fuzz_payloads.NOW, set()),
        VerifiedCommand,
    )
    for seed in SEEDS:
        fuzz_iso8583.target(seed)
        fuzz_iso8583.target(frame(seed) + frame(seed))
    fuzz_payloads.target(ORDER_SEED)
    fuzz_payloads.target(COMMAND_SEED)
