"""`auto` probing and its end: ports excluded, ports lost mid-probe, a stop mid-probe.

Every port a probe opened is closed, and every task it (or pyserial-asyncio-fast, closing a
transport) started has ended with its outcome retrieved: nothing for asyncio to report as
"Task exception was never retrieved" when the task is collected.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from drivers.card_reader import CardReader, ReaderState, probe_port
from posd.sim import SimulatedCardReader
from posd.sim.pty import SimulatedLine
from tests.helpers.components import WAIT_S, running, wait_until


@pytest.fixture
async def loop_reports() -> AsyncIterator[list[dict[str, Any]]]:
    """What the event loop's exception handler is given during the test."""
    reports: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    yield reports
    loop.set_exception_handler(None)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimulatedCardReader]:
    async with SimulatedCardReader(tmp_path / "posd-reader") as reader:
        yield reader


@pytest.fixture
def lines(tmp_path: Path) -> Iterator[list[SimulatedLine]]:
    """Serial ports with nothing behind them: open fine, never answer. Each is a symlink, so
    a port unplugged is a path gone: its /dev/pts number, freed, may be handed to another
    test's pty (another xdist worker's) before the probe opens the port."""
    made = [SimulatedLine(tmp_path / f"silent-{n}", device=f"silent port {n}") for n in range(3)]
    for line in made:
        line.plug(blocking=False)
    yield made
    for line in made:
        line.unplug()


@pytest.fixture
def scanner() -> Iterator[SimulatedLine]:
    """A QR scanner's port, /dev/pts/N itself: the tests that use it link to it themselves."""
    line = SimulatedLine(device="scanner")
    line.plug(blocking=False)
    yield line
    line.unplug()


def make_reader(port: str, **kwargs: Any) -> CardReader:
    return CardReader(port, reconnect_initial_s=0.02, reconnect_max_s=0.1, **kwargs)


async def wait_state(reader: CardReader, state: ReaderState) -> None:
    async with asyncio.timeout(WAIT_S):
        await reader.wait_for_state(state)


def received(line: SimulatedLine) -> bytes:
    assert line.master is not None
    try:
        return os.read(line.master, 4096)
    except BlockingIOError:
        return b""


def never_retrieved(reports: list[dict[str, Any]]) -> list[str]:
    gc.collect()
    return [
        str(report.get("message"))
        for report in reports
        if "never retrieved" in str(report.get("message"))
        or "destroyed but it is pending" in str(report.get("message"))
    ]


def free(path: str) -> bool:
    """Whether the port can be opened exclusively now: nobody (posd included) holds it."""
    try:
        serial.Serial(path, exclusive=True).close()
    except serial.SerialException:
        return False
    return True


async def test_auto_skips_the_scanner_port_even_through_a_symlink(
    tmp_path: Path, sim: SimulatedCardReader, scanner: SimulatedLine
) -> None:
    link = tmp_path / "posd-scanner"
    link.symlink_to(scanner.path)
    reader = make_reader("auto", candidates=lambda: [scanner.path, sim.port], exclude=[str(link)])
    async with running(reader):
        await wait_state(reader, "ready")
        assert reader.port == sim.port
    assert received(scanner) == b"", "the scanner was sent a PING"


async def test_auto_with_only_the_scanner_port_says_so(
    tmp_path: Path, scanner: SimulatedLine
) -> None:
    link = tmp_path / "posd-scanner"
    link.symlink_to(scanner.path)
    reader = make_reader("auto", candidates=lambda: [str(link)], exclude=[scanner.path])
    async with running(reader):
        await wait_until(lambda: reader.last_error is not None, "a probe error")
        assert reader.state == "disconnected"
        assert f"no serial port to look for a card reader on (skipped {link}" in (
            reader.last_error or ""
        )
    assert received(scanner) == b""


async def test_a_stop_mid_probe_closes_every_port_it_opened(
    lines: list[SimulatedLine], loop_reports: list[dict[str, Any]]
) -> None:
    paths = [line.path for line in lines]
    reader = make_reader("auto", candidates=lambda: paths)
    async with running(reader):
        # Every candidate has its PING: all are open and waiting for a PONG.
        pinged: set[int] = set()

        def all_pinged() -> bool:
            pinged.update(n for n, line in enumerate(lines) if received(line))
            return len(pinged) == len(lines)

        await wait_until(all_pinged, "a PING on every candidate")
    assert reader.state == "disconnected"
    assert [p for p in paths if not free(p)] == []
    assert never_retrieved(loop_reports) == []


@pytest.mark.parametrize("after_turns", [0, 3])
async def test_a_port_lost_mid_probe_leaves_nothing_behind(
    sim: SimulatedCardReader,
    lines: list[SimulatedLine],
    loop_reports: list[dict[str, Any]],
    after_turns: int,
) -> None:
    lost = lines[0]
    paths = [lost.path, lines[1].path, sim.port]
    sim.go_silent()  # the probe goes on until every candidate has failed
    reader = make_reader("auto", candidates=lambda: paths)
    async with running(reader):
        for _ in range(after_turns):
            await asyncio.sleep(0)
        lost.unplug()
        await wait_until(lambda: reader.last_error is not None, "the probe to fail")
        sim.wake()
        await wait_state(reader, "ready")
        assert reader.port == sim.port
    assert [p for p in paths[1:] if not free(p)] == []
    assert never_retrieved(loop_reports) == []


@pytest.mark.parametrize("after_turns", [0, 1, 3, 10])
async def test_posd_devices_probe_of_a_port_lost_midway(
    lines: list[SimulatedLine], loop_reports: list[dict[str, Any]], after_turns: int
) -> None:
    lost = lines[0]
    probe = asyncio.create_task(probe_port(lost.path, timeout_s=0.5))
    for _ in range(after_turns):
        await asyncio.sleep(0)
    lost.unplug()
    result = await asyncio.wait_for(probe, WAIT_S)
    assert result.status in ("silent", "absent")
    assert never_retrieved(loop_reports) == []
