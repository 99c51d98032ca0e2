"""ISO 8583 ledger messages: 0200 build+encode+MAC and 0210 decode+MAC check, single core;
then whole 0200→0210 round trips through the ledger client and the reference ledger over
loopback mutual TLS (client and server in one process, so both sides' work is counted)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from bench.timing import calls_per_second
from posd.ledger import LedgerClient, LedgerTls
from posd.sim import LedgerSimulator, server_ssl_context
from protocols.ledger_messages import (
    CardPayer,
    LedgerRequest,
    build_purchase,
    decode_response,
    encode,
    respond,
)

KEY = bytes(range(32))
ROUND_TRIPS = 300
NOW = dt.datetime(2026, 11, 25, 3, 4, 5, tzinfo=dt.UTC)
ICC = bytes.fromhex("9F2608" + "00" * 8 + "9F2701809F360200019F02060000000120009F1A020410")


def _purchase(stan: int = 1) -> LedgerRequest:
    return build_purchase(
        stan=stan,
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
    encode_rate = calls_per_second(lambda: encode(_purchase(), KEY))
    # The reference ledger's answer echoes every field of the 0200, as hosts commonly do;
    # the second carries only what identifies it (11, 41) beside its own 37, 38, 39.
    answers = {
        "echoing the 0200": respond(_purchase(), "00", rrn="000000000001", auth_code="A12345"),
        "echoing nothing": respond(_purchase(), "00", rrn="000000000001", auth_code="A12345",
                                   echo=()),
    }  # fmt: skip
    # The link carries a few messages a minute; thousands a second is ample headroom.
    print(f"iso8583: 0200 encode+MAC/s: {encode_rate:.0f}")
    for what, answer in answers.items():
        raw = encode(answer, KEY)

        def decode_and_verify(raw: bytes = raw) -> None:
            inbound = decode_response(raw, KEY)
            assert inbound.mac_valid

        rate = calls_per_second(decode_and_verify)
        print(f"iso8583: 0210 decode+verify/s ({what}, {len(raw)} bytes): {rate:.0f}")
    with tempfile.TemporaryDirectory() as directory:
        latencies = asyncio.run(_round_trips(Path(directory)))
    median = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(f"iso8583: 0200->0210 over TLS, median ms: {median:.2f}, p99 ms: {p99:.2f}")


async def _round_trips(directory: Path) -> list[float]:
    from tests.helpers.tls import make_pki  # a dev tool: the test PKI is what it needs

    pki = make_pki(directory)
    context = server_ssl_context(pki.server_cert, pki.server_key, pki.ca_file)
    stans = itertools.count(1)

    async def next_stan() -> int:
        return next(stans)

    async with LedgerSimulator(mac_key=KEY, ssl_context=context) as sim:
        client = LedgerClient(
            host="localhost",
            port=sim.port,
            terminal_id="T0000001",
            mac_key=KEY,
            stan_source=next_stan,
            tls=LedgerTls(pki.ca_file, pki.client_cert, pki.client_key),
        )
        task = asyncio.create_task(client.run(lambda: None))
        try:
            async with asyncio.timeout(10):
                await client.wait_up()
            latencies = []
            for _ in range(ROUND_TRIPS):
                request = _purchase(await next_stan())
                start = time.perf_counter()
                await client.send(request, 5)
                latencies.append((time.perf_counter() - start) * 1000)
            return latencies
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


if __name__ == "__main__":
    main()
