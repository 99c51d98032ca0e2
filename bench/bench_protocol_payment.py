"""A payment's whole protocol work, single core: one chip CARD_DATA frame decoded (frame,
message, TLV, PAN and expiry), one 0200 built, encoded and MACed, one 0210 decoded and its
MAC verified. Target (protocols issue): under 0.5 ms on this machine."""

from __future__ import annotations

import datetime as dt
import statistics
import time

from bench.bench_srl import chip_card_data
from protocols.ber_tlv import decode_tlv, find_tag
from protocols.emv import expiry_from_5f24, pan_from_5a
from protocols.ledger_messages import CardPayer, build_purchase, decode_response, encode, respond
from protocols.srl_frame import Frame, FrameDecoder, encode_frame
from protocols.srl_messages import CardData, decode_message, encode_message

KEY = bytes(range(32))
NOW = dt.datetime(2026, 11, 25, 3, 4, 5, tzinfo=dt.UTC)
TARGET_US = 500.0
ROUNDS = 2000


def _one_payment(frame: bytes, decoder: FrameDecoder, answer: bytes) -> None:
    (event,) = decoder.feed(frame)
    assert isinstance(event, Frame)
    message = decode_message(event.cmd, event.data)
    assert isinstance(message, CardData)
    items = decode_tlv(message.tlv)
    pan_tlv, expiry_tlv, icc = find_tag(items, 0x5A), find_tag(items, 0x5F24), message.tlv
    assert pan_tlv is not None and expiry_tlv is not None
    payer = CardPayer(
        "chip", pan_from_5a(pan_tlv.value), expiry_from_5f24(expiry_tlv.value)[:4], None, icc
    )
    request = build_purchase(
        stan=1,
        transmitted_at=NOW,
        local_now=NOW,
        amount=12000,
        terminal_id="T0000001",
        merchant_id="M00000000000001",
        payer=payer,
        benefit_rate_bps=500,
        discount=600,
    )
    encode(request, KEY)
    assert decode_response(answer, KEY).mac_valid


def main() -> None:
    cmd, data = encode_message(chip_card_data())
    frame = encode_frame(7, cmd, data)
    decoder = FrameDecoder()
    payer = CardPayer("chip", "9410123456789012", "2812", None, data[1:])
    request = build_purchase(
        stan=1,
        transmitted_at=NOW,
        local_now=NOW,
        amount=12000,
        terminal_id="T0000001",
        merchant_id="M00000000000001",
        payer=payer,
        benefit_rate_bps=500,
        discount=600,
    )
    answer = encode(respond(request, "00", rrn="000000000001", auth_code="A12345"), KEY)
    for _ in range(200):
        _one_payment(frame, decoder, answer)
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        _one_payment(frame, decoder, answer)
        samples.append((time.perf_counter() - start) * 1e6)
    median = statistics.median(samples)
    p99 = statistics.quantiles(samples, n=100)[98]
    verdict = "within" if median < TARGET_US else "OVER"
    print(
        f"payment protocol work (CARD_DATA + 0200 encode+MAC + 0210 decode+verify): "
        f"median {median:.0f} us, p99 {p99:.0f} us ({verdict} the {TARGET_US:.0f} us target)"
    )


if __name__ == "__main__":
    main()
