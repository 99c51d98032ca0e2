"""What the ledger client tests share: the link timings, terminal ids, a STAN source and a
purchase to send."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from posd.ledger import LedgerClient, LedgerTimings
from posd.sim.ledger_accounts import GOOD_CARD
from protocols.ledger_messages import CardPayer, LedgerRequest, build_purchase

MAC_KEY = bytes(range(32))
TERMINAL = "T0000001"
MERCHANT = "M00000000000001"
FAST = LedgerTimings(
    connect_timeout_s=2.0,
    sign_on_timeout_s=2.0,
    echo_idle_s=30.0,
    echo_timeout_s=0.5,
    sign_off_timeout_s=1.0,
    backoff_initial_s=0.02,
    backoff_max_s=0.1,
)
WAIT_S = 5.0


class Stans:
    """The journal's part in these tests: STANs in sequence."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    async def __call__(self) -> int:
        return next(self._next)


def plain_client(port: int, **changes: Any) -> LedgerClient:
    """A client of the ledger on `port` of this machine over plain TCP, as these tests' own
    terminal (`changes`: any other argument of LedgerClient)."""
    arguments: dict[str, Any] = dict(
        host="127.0.0.1",
        port=port,
        terminal_id=TERMINAL,
        mac_key=MAC_KEY,
        stan_source=Stans(),
        timings=FAST,
    )
    return LedgerClient(**(arguments | changes))


@asynccontextmanager
async def running(client: LedgerClient, wait_up: bool = True) -> AsyncIterator[LedgerClient]:
    """`client` run as the daemon runs it (started, then up unless `wait_up` is False), and
    stopped after as the daemon stops it: a cancellation it must not swallow."""
    started = asyncio.Event()
    task = asyncio.create_task(client.run(started.set))
    try:
        async with asyncio.timeout(WAIT_S):
            await started.wait()
            if wait_up:
                await client.wait_up()
        yield client
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    # Polls: the client's link state and last_error are plain attributes, with no hook to await.
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


STANS = itertools.count(1000)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def purchase(pan: str = GOOD_CARD, amount: int = 10_000, stan: int | None = None) -> LedgerRequest:
    return build_purchase(
        stan=stan if stan is not None else next(STANS),
        transmitted_at=now(),
        local_now=now(),
        amount=amount,
        terminal_id=TERMINAL,
        merchant_id=MERCHANT,
        payer=CardPayer("chip", pan, "3012", None, b"\x9f\x02\x06\x00\x00\x00\x01\x00\x00"),
    )
