"""ISO 8583 ledger messages: 0200 build+encode+MAC and 0210 decode+MAC check, single core."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from protocols.ledger_messages import (
    CardPayer,
    LedgerRequest,
    build_purchase,
    decode_response,
    encode,
    respond,
)

KEY = bytes(range(32))
NOW = dt.datetime(2026, 11, 25, 3, 4, 5, tzinfo=dt.UTC)
SECONDS = 1.0
ICC = bytes.fromhex("9F2608" + "00" * 8 + "9F2701809F360200019F02060000000120009F1A020410")


def _rate(fn: Callable[[], object], seconds: float = SECONDS) -> float:
    calls = 0
    batch = 100
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn()
        calls += batch
    return calls / elapsed


def _purchase() -> LedgerRequest:
    return build_purchase(
        stan=1,
        transmitted_at=NOW,
        local_now=NOW,
        amount=12000,
        terminal_id="T0000001",
        merchant_id="M00000000000001",
        payer=CardPayer("chip", "9410123456789012", "2812", None, ICC),
        benefit_rate_bps=500,
        discount=600,
    )


def main() -> None:
    encode_rate = _rate(lambda: encode(_purchase(), KEY))
    response = encode(respond(_purchase(), "00", rrn="000000000001", auth_code="A12345"), KEY)

    def decode_and_verify() -> None:
        inbound = decode_response(response, KEY)
        assert inbound.mac_valid

    decode_rate = _rate(decode_and_verify)
    # The link carries a few messages a minute; thousands a second is ample headroom.
    print(f"iso8583: 0200 encode+MAC/s: {encode_rate:.0f}")
    print(f"iso8583: 0210 decode+verify/s: {decode_rate:.0f}")


if __name__ == "__main__":
    main()
