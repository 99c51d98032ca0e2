"""The ledger's clock as the client measures it from each 0810's field 7, against the
reference ledger with its clock set off (`clock_offset_s`), over real sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from posd.ledger import CLOCK_MAX_SKEW_S, LedgerClient
from posd.sim.ledger import LedgerSimulator
from tests.helpers.ledger import FAST, MAC_KEY, TERMINAL, WAIT_S, Stans, wait_until

ECHOING = replace(FAST, echo_idle_s=0.05)
UTC = dt.UTC
WARNED = "the ledger's clock is"


def running_from(start: dt.datetime) -> Callable[[], dt.datetime]:
    """A clock that reads `start` now and runs on in real time."""
    began = time.monotonic()
    return lambda: start + dt.timedelta(seconds=time.monotonic() - began)


@asynccontextmanager
async def linked(
    sim: LedgerSimulator, clock: Callable[[], dt.datetime] | None = None
) -> AsyncIterator[LedgerClient]:
    client = LedgerClient(
        host="127.0.0.1", port=sim.port, terminal_id=TERMINAL, mac_key=MAC_KEY,
        stan_source=Stans(), timings=ECHOING, **({} if clock is None else {"clock": clock}),
    )  # fmt: skip
    task = asyncio.create_task(client.run(lambda: None))
    try:
        async with asyncio.timeout(WAIT_S):
            await client.wait_up()
        yield client
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def echoes(sim: LedgerSimulator) -> int:
    return sum(1 for s in sim.seen if s.network_code == "301")


async def more_echoes(sim: LedgerSimulator, count: int) -> None:
    target = echoes(sim) + count
    await wait_until(lambda: echoes(sim) >= target)


def skew_near(client: LedgerClient, expected: float) -> bool:
    # Field 7 has whole seconds (the ledger truncates), and a loaded machine's round trip
    # blurs the middle of the exchange: within 2 s is a measurement, not an accident.
    return client.clock_skew_s is not None and abs(client.clock_skew_s - expected) <= 2.0


def warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if WARNED in r.getMessage())


async def test_the_skew_is_measured_at_sign_on_and_at_every_echo() -> None:
    async with LedgerSimulator(mac_key=MAC_KEY, clock_offset_s=45) as sim:
        async with linked(sim) as client:
            assert skew_near(client, 45.0), client.clock_skew_s  # the sign-on's 0810
            sim.clock_offset_s = -100
            await wait_until(lambda: skew_near(client, -100.0))
        # The last measurement outlives the link: it is still the best one there is.
        assert skew_near(client, -100.0)


@pytest.mark.parametrize(
    ("local", "ledger", "skew"),
    [
        (dt.datetime(2026, 12, 31, 23, 59, 55, tzinfo=UTC), dt.datetime(2027, 1, 1, 0, 0, 10, tzinfo=UTC), 15.0),  # noqa: E501
        (dt.datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC), dt.datetime(2026, 12, 31, 23, 59, 50, tzinfo=UTC), -15.0),  # noqa: E501
    ],
)  # fmt: skip
async def test_the_skew_across_new_year(
    local: dt.datetime, ledger: dt.datetime, skew: float
) -> None:
    async with (
        LedgerSimulator(mac_key=MAC_KEY, clock=running_from(ledger)) as sim,
        linked(sim, clock=running_from(local)) as client,
    ):
        assert skew_near(client, skew), client.clock_skew_s


async def test_warned_on_crossing_then_hourly_not_at_every_echo(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="posd.ledger")
    shift = dt.timedelta(0)
    real = running_from(dt.datetime.now(UTC))

    def local() -> dt.datetime:
        return real() + shift

    async with LedgerSimulator(mac_key=MAC_KEY) as sim, linked(sim, clock=local) as client:
        await more_echoes(sim, 2)
        assert skew_near(client, 0.0) and warnings(caplog) == 0
        sim.clock_offset_s = CLOCK_MAX_SKEW_S + 15
        await wait_until(lambda: warnings(caplog) == 1)
        await more_echoes(sim, 5)
        assert skew_near(client, 45.0) and warnings(caplog) == 1  # once, not per echo
        # An hour on (both clocks, so the skew stays): said again, once.
        shift += dt.timedelta(seconds=3601)
        sim.clock_offset_s += 3601
        await wait_until(lambda: warnings(caplog) == 2)
        await more_echoes(sim, 5)
        assert warnings(caplog) == 2
        # Back within the bound, then beyond it again: a new crossing is said at once.
        sim.clock_offset_s = 3601
        await wait_until(lambda: "within" in caplog.text and skew_near(client, 0.0))
        sim.clock_offset_s = 3601 - 45
        await wait_until(lambda: warnings(caplog) == 3)
        assert skew_near(client, -45.0)
    warned = [r for r in caplog.records if WARNED in r.getMessage()]
    assert {r.levelno for r in warned} == {logging.WARNING}
    assert "is +4" in warned[0].getMessage() and "is -4" in warned[2].getMessage()
