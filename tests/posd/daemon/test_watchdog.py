"""The watchdog is fed only while posd can serve, or says why it cannot: a component stuck
starting with nothing failing (a half-built daemon answering "starting" for ever) starves it,
and systemd restarts posd; a component that fails, and says so, does not."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from posd.config import Config, load_config
from posd.daemon import Daemon, prepare_state_dir
from posd.runtime import Backoff, Component, Notifier, Runtime
from tests.helpers.configs import write_config
from tests.helpers.notify import NotifyListener

WAIT_S = 10.0
# 10 ms between pings.
WATCHDOG_USEC = 20_000


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    sock = NotifyListener(tmp_path, abstract=True)
    yield sock
    sock.close()


class Holder:
    """A journal holder: serves once run; what `Waiter`s wait for."""

    name = "journal"
    config_sections = ()

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def run(self, started: Callable[[], None]) -> None:
        self.open.set()
        started()
        await asyncio.Event().wait()


class Waiter:
    """A payment engine: serves once its journal is open, as the real one does."""

    name = "payments"
    config_sections = ("offline",)

    def __init__(self, holder: Holder) -> None:
        self.holder = holder

    async def run(self, started: Callable[[], None]) -> None:
        await self.holder.open.wait()
        started()
        await asyncio.Event().wait()


class Failing:
    name = "ledger"

    async def run(self, started: Callable[[], None]) -> None:
        raise OSError("cannot reach the ledger (the reason posd gives)")


def half_built(config: Config, runtime: Runtime) -> list[Component]:
    """How the stack was built before: a fresh journal holder on every build. On reload the
    running holder (never restarted) is kept and the new engine waits for the fresh one."""
    holder = Holder()
    return [holder, Waiter(holder)]


def pings(listener: NotifyListener) -> int:
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            if b"WATCHDOG=1" in listener.sock.recv(4096):
                count += 1
    return count


async def starved(listener: NotifyListener) -> None:
    """Until no ping arrives for 20 ping intervals."""
    async with asyncio.timeout(WAIT_S):
        while True:
            pings(listener)
            await asyncio.sleep(0.2)
            if pings(listener) == 0:
                return


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path,
    listener: NotifyListener,
    build: Callable[[Config, Runtime], list[Component]],
    **kw: float,
) -> AsyncIterator[Daemon]:
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    notifier = Notifier(listener.address, watchdog_usec=WATCHDOG_USEC)
    daemon = Daemon(
        config,
        config_path,
        prepare_state_dir(config.storage.state_dir),
        build=build,
        notifier=notifier,
        backoff=Backoff(initial_s=0.01, max_s=0.05),
        **kw,
    )
    task = asyncio.create_task(daemon.serve(handle_signals=False))
    try:
        await listener.until(lambda m: m.get("WATCHDOG") == "1")
        yield daemon
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, WAIT_S) == os.EX_OK
        notifier.close()


async def test_a_component_stuck_starting_with_nothing_failing_starves_the_watchdog(
    tmp_path: Path, listener: NotifyListener, caplog: pytest.LogCaptureFixture
) -> None:
    never = Holder()
    never.open.clear()

    def build(config: Config, runtime: Runtime) -> list[Component]:
        return [Waiter(never)]

    with caplog.at_level(logging.CRITICAL, logger="posd.daemon"):
        async with serving(tmp_path, listener, build, stuck_after_s=0.3) as daemon:
            await starved(listener)
            assert "payments has been starting for" in str(daemon.cannot_serve())
            status = await listener.until(lambda m: "the watchdog" in m.get("STATUS", ""))
            assert "payments has been starting" in status["STATUS"]
    assert "posd cannot serve: payments has been starting" in caplog.text


async def test_a_component_that_fails_and_says_why_keeps_the_watchdog_fed(
    tmp_path: Path, listener: NotifyListener
) -> None:
    never = Holder()

    def build(config: Config, runtime: Runtime) -> list[Component]:
        return [Failing(), Waiter(never)]

    async with serving(tmp_path, listener, build, stuck_after_s=0.1) as daemon:
        await asyncio.sleep(0.3)
        assert daemon.cannot_serve() is None
        pings(listener)
        await listener.until(lambda m: m.get("WATCHDOG") == "1")


async def test_a_reload_that_would_leave_posd_half_built_is_undone_or_starves_the_watchdog(
    tmp_path: Path, listener: NotifyListener
) -> None:
    async with serving(
        tmp_path, listener, half_built, stuck_after_s=30, reload_start_timeout_s=0.3
    ) as daemon:
        write_config(tmp_path, offline={"max_payment": 40_000})
        # The new engine never serves: the reload is refused. Going back builds the same
        # way and cannot serve either, so posd says it cannot serve and starves the watchdog.
        assert not await daemon.reload()
        assert "could not be undone" in str(daemon.cannot_serve())
        await starved(listener)
