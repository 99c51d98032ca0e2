"""The supervisor restarts crashed components with backoff and reports their states."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from posd.logs import Redactor
from posd.runtime import Backoff, Component, ComponentStatus, Supervisor, config_sections

WAIT_S = 5.0
PAN = "9410123456789010"


class Flaky:
    """Crashes on its first `crashes` runs, then serves until cancelled."""

    def __init__(self, name: str, crashes: int, *, start_first: bool = False) -> None:
        self.name = name
        self.crashes = crashes
        self.start_first = start_first
        self.runs = 0
        self.cancelled = 0
        self.serving = asyncio.Event()

    async def run(self, started: Callable[[], None]) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            if self.start_first:
                started()
            raise OSError(f"device fault reading card {PAN}")
        started()
        self.serving.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


class Returns:
    name = "returns"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, started: Callable[[], None]) -> None:
        self.runs += 1
        started()


class Waiting:
    """Never says it started."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, started: Callable[[], None]) -> None:
        await asyncio.Event().wait()


async def until(sup: Supervisor, predicate: Callable[[], bool]) -> None:
    """Wait, woken by each state change, until `predicate` holds."""
    changed = asyncio.Event()
    sup.add_listener(changed.set)
    try:
        async with asyncio.timeout(WAIT_S):
            while not predicate():
                await changed.wait()
                changed.clear()
    finally:
        sup.remove_listener(changed.set)


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    sup = Supervisor(
        backoff=Backoff(initial_s=0.02, max_s=0.08, healthy_after_s=60.0),
        redact=Redactor().redact,
    )
    task = asyncio.create_task(sup.run())
    await asyncio.wait_for(sup.wait_running(), WAIT_S)
    yield sup
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT_S)


def test_backoff_doubles_and_caps() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0)
    assert [backoff.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(10_000) == 30.0
    with pytest.raises(ValueError):
        Backoff(initial_s=0, max_s=1)
    with pytest.raises(ValueError):
        Backoff(initial_s=2, max_s=1)


async def test_crashing_component_shows_error_then_restarts(supervisor: Supervisor) -> None:
    flaky = Flaky("reader", crashes=3)
    seen: list[ComponentStatus] = []
    supervisor.add_listener(lambda: seen.append(supervisor.statuses()["reader"]))
    supervisor.add(flaky)
    await asyncio.wait_for(flaky.serving.wait(), WAIT_S)
    status = supervisor.statuses()["reader"]
    assert status.state == "running"
    assert status.restarts == 3
    assert flaky.runs == 4
    states = [s.state for s in seen]
    assert states.count("error") == 3
    assert states[-1] == "running"
    errors = [s for s in seen if s.state == "error"]
    assert [s.consecutive_failures for s in errors] == [1, 2, 3]
    # The error text goes to status reports: redacted like a log line.
    assert errors[0].last_error == "OSError: device fault reading card 941012******9010"


async def test_error_state_lasts_for_the_backoff() -> None:
    sup = Supervisor(backoff=Backoff(initial_s=30.0, max_s=30.0), redact=Redactor().redact)
    task = asyncio.create_task(sup.run())
    await asyncio.wait_for(sup.wait_running(), WAIT_S)
    flaky = Flaky("ledger", crashes=1)
    sup.add(flaky)
    await until(sup, lambda: sup.statuses()["ledger"].state == "error")
    await asyncio.sleep(0.05)
    assert sup.statuses()["ledger"].state == "error"
    assert flaky.runs == 1
    assert "ledger error" in sup.summary()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT_S)
    assert sup.statuses()["ledger"].state == "stopped"


async def test_backoff_resets_after_a_healthy_period() -> None:
    now = [0.0]
    sup = Supervisor(
        backoff=Backoff(initial_s=0.01, max_s=0.04, healthy_after_s=10.0),
        redact=Redactor().redact,
        clock=lambda: now[0],
    )
    task = asyncio.create_task(sup.run())
    await asyncio.wait_for(sup.wait_running(), WAIT_S)
    # Starts, then crashes at once: never healthy, failures accumulate.
    flaky = Flaky("api", crashes=3, start_first=True)
    failures: list[int] = []
    sup.add_listener(
        lambda: (
            failures.append(sup.statuses()["api"].consecutive_failures)
            if "api" in sup.statuses() and sup.statuses()["api"].state == "error"
            else None
        )
    )
    sup.add(flaky)
    await asyncio.wait_for(flaky.serving.wait(), WAIT_S)
    assert failures == [1, 2, 3]

    healthy = Flaky("api2", crashes=2, start_first=True)

    async def run_then_age(started: Callable[[], None]) -> None:
        healthy.runs += 1
        started()
        now[0] += 11.0  # serving for longer than healthy_after_s before this crash
        raise OSError("link dropped")

    healthy.run = run_then_age  # type: ignore[method-assign]
    sup.add(healthy)
    await until(sup, lambda: sup.statuses()["api2"].restarts >= 3)
    assert sup.statuses()["api2"].consecutive_failures == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT_S)


async def test_returning_is_a_crash(supervisor: Supervisor) -> None:
    comp = Returns()
    supervisor.add(comp)
    await until(supervisor, lambda: comp.runs >= 2)
    assert supervisor.statuses()["returns"].last_error is not None
    assert "returned" in (supervisor.statuses()["returns"].last_error or "")


async def test_waiting_for_lists_components_not_yet_started(supervisor: Supervisor) -> None:
    supervisor.add(Waiting("journal"))
    ok = Flaky("api", crashes=0)
    supervisor.add(ok)
    await asyncio.wait_for(ok.serving.wait(), WAIT_S)
    assert supervisor.waiting_for() == ["journal"]
    assert not supervisor.all_started()
    assert supervisor.summary() == "starting: waiting for journal"
    await supervisor.remove("journal")
    assert supervisor.all_started()
    assert supervisor.summary() == "running"


async def test_replace_cancels_the_old_instance_and_starts_the_new(
    supervisor: Supervisor,
) -> None:
    old, new = Flaky("reader", crashes=0), Flaky("reader", crashes=0)
    supervisor.add(old)
    await asyncio.wait_for(old.serving.wait(), WAIT_S)
    await supervisor.replace(new)
    await asyncio.wait_for(new.serving.wait(), WAIT_S)
    assert old.cancelled == 1
    assert supervisor.component("reader") is new
    assert supervisor.statuses()["reader"].state == "running"


async def test_duplicate_or_unknown_names_are_refused(supervisor: Supervisor) -> None:
    supervisor.add(Waiting("a"))
    with pytest.raises(ValueError, match="already in use"):
        supervisor.add(Waiting("a"))
    with pytest.raises(KeyError):
        await supervisor.remove("nope")


async def test_add_before_run_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        Supervisor(redact=Redactor().redact).add(Waiting("a"))


def test_config_sections_declaration() -> None:
    class Declares:
        name = "ledger"
        config_sections = ("ledger", "terminal")

        async def run(self, started: Callable[[], None]) -> None:
            started()

    class WrongType(Declares):
        config_sections = "ledger"  # type: ignore[assignment]

    assert isinstance(Declares(), Component)
    assert config_sections(Declares()) == frozenset({"ledger", "terminal"})
    assert config_sections(Waiting("x")) is None
    with pytest.raises(TypeError, match="collection of names"):
        config_sections(WrongType())
