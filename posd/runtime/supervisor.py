"""Runs components in one asyncio.TaskGroup and restarts the ones that crash.

Each component gets a supervising task in the group. A crash (an exception out of `run`, or
`run` returning) is logged with its traceback (redacted by the log handler), the component shows
`error` with the error text, and after a capped exponential backoff `run` is called again. The
backoff starts over once a component has been serving for `healthy_after_s`. Cancellation (stop,
removal, replacement) leaves it `stopped`.

State changes are pushed to listeners (the daemon's READY/STATUS, later the MQTT state) and can
be read at any time with `statuses()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from posd.logs import redact as log_redact
from posd.runtime.component import Component

log = logging.getLogger(__package__)

State = Literal["starting", "running", "error", "stopped"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart delays: initial_s, doubling per consecutive crash, at most max_s."""

    initial_s: float = 0.5
    max_s: float = 30.0
    healthy_after_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.healthy_after_s < 0:
            raise ValueError("backoff healthy_after_s must not be negative")

    def delay(self, failures: int) -> float:
        """Seconds to wait before the restart that follows `failures` consecutive crashes."""
        if failures < 1:
            return 0.0
        # Capping the exponent keeps 2**n finite however long a component keeps failing.
        return min(self.max_s, self.initial_s * 2.0 ** min(failures - 1, 64))


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One component as the status reports show it."""

    name: str
    state: State
    last_error: str | None = None
    restarts: int = 0
    consecutive_failures: int = 0
    ever_started: bool = False
    since: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "last_error": self.last_error,
            "restarts": self.restarts,
            "since": self.since,
        }


class ComponentReturned(RuntimeError):
    """A component's run() returned although nothing cancelled it."""


@dataclass(slots=True)
class _Entry:
    component: Component
    status: ComponentStatus
    task: asyncio.Task[None] | None = None
    # The supervisor's clock when `status.state` last changed (status.since is wall time).
    state_since: float = 0.0


@dataclass(slots=True)
class _Attempt:
    """One call of a component's run(); a started() from an earlier attempt is ignored."""

    live: bool = True
    started_at: float | None = None


Listener = Callable[[], None]


class Supervisor:
    """Owns the components' tasks; see the module doc. Use from the event loop thread only."""

    def __init__(
        self,
        *,
        backoff: Backoff | None = None,
        redact: Callable[[str], str] | None = None,
        stop_timeout_s: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if redact is None:
            redact = log_redact
        self.backoff = backoff if backoff is not None else Backoff()
        self._redact = redact
        self._stop_timeout_s = stop_timeout_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._listeners: list[Listener] = []
        self._group: asyncio.TaskGroup | None = None
        self._running = asyncio.Event()

    # -- reading state -------------------------------------------------------------------

    def statuses(self) -> dict[str, ComponentStatus]:
        return {name: entry.status for name, entry in self._entries.items()}

    def component(self, name: str) -> Component | None:
        entry = self._entries.get(name)
        return entry.component if entry is not None else None

    def waiting_for(self) -> list[str]:
        """Components that have not yet called started() even once, in registration order."""
        return [name for name, e in self._entries.items() if not e.status.ever_started]

    def all_started(self) -> bool:
        return not self.waiting_for()

    def summary(self) -> str:
        """One line for systemd's STATUS=: what is awaited or failing, else 'running'."""
        waiting = self.waiting_for()
        failing = [s for s in self._entries.values() if s.status.state == "error"]
        parts: list[str] = []
        if waiting:
            parts.append("starting: waiting for " + ", ".join(waiting))
        if failing:
            parts.append(
                "; ".join(f"{e.status.name} error: {e.status.last_error}" for e in failing)
            )
        return "; ".join(parts) if parts else "running"

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def stuck_starting(self, longer_than_s: float) -> list[tuple[str, float]]:
        """Components in `starting` for more than `longer_than_s`, with how long (seconds)."""
        now = self._clock()
        return [
            (name, now - entry.state_since)
            for name, entry in self._entries.items()
            if entry.status.state == "starting" and now - entry.state_since > longer_than_s
        ]

    def _set(self, entry: _Entry, status: ComponentStatus) -> None:
        if status.state != entry.status.state:
            entry.state_since = self._clock()
        entry.status = status
        self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("supervisor state listener failed")

    # -- running -------------------------------------------------------------------------

    async def run(self, components: Iterable[Component] = ()) -> None:
        """Supervise `components` (and any added later) until cancelled."""
        if self._group is not None:
            raise RuntimeError("supervisor is already running")
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for component in components:
                    self.add(component)
                self._running.set()
                # Listeners learn that the set is complete even when it is empty.
                self._notify()
                await asyncio.Future()
        finally:
            self._group = None
            self._running.clear()

    async def wait_running(self) -> None:
        await self._running.wait()

    def add(self, component: Component) -> None:
        """Start supervising `component`; its name must be unique."""
        if self._group is None:
            raise RuntimeError("supervisor is not running")
        if not component.name or component.name in self._entries:
            raise ValueError(f"component name {component.name!r} is empty or already in use")
        entry = _Entry(component, ComponentStatus(component.name, "starting"), None, self._clock())
        self._entries[component.name] = entry
        entry.task = self._group.create_task(
            self._supervise(entry), name=f"component:{component.name}"
        )
        self._notify()

    async def remove(self, name: str) -> None:
        """Cancel component `name` and wait (up to stop_timeout_s) until it has stopped."""
        entry = self._entries.get(name)
        if entry is None:
            raise KeyError(name)
        task = entry.task
        if task is not None and not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=self._stop_timeout_s)
            if not done:
                log.error(
                    "component %s did not stop within %.1f s of being cancelled",
                    name,
                    self._stop_timeout_s,
                )
        if self._entries.get(name) is entry:
            del self._entries[name]
        self._notify()

    async def replace(self, component: Component) -> None:
        """Stop the running component of the same name and start `component` in its place."""
        if component.name in self._entries:
            await self.remove(component.name)
        self.add(component)

    async def _supervise(self, entry: _Entry) -> None:
        component = entry.component
        first = True
        while True:
            attempt = _Attempt()

            def started(attempt: _Attempt = attempt) -> None:
                if not attempt.live or attempt.started_at is not None:
                    return
                attempt.started_at = self._clock()
                log.info("component %s is running", component.name)
                self._set(
                    entry,
                    replace(entry.status, state="running", ever_started=True, since=time.time()),
                )

            if not first:
                self._set(entry, replace(entry.status, state="starting", since=time.time()))
            first = False
            try:
                await component.run(started)
                raise ComponentReturned("run() returned without being cancelled")
            except asyncio.CancelledError:
                attempt.live = False
                self._set(entry, replace(entry.status, state="stopped", since=time.time()))
                raise
            except Exception as exc:
                attempt.live = False
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    # It swallowed our cancellation and failed on the way out: we are stopping.
                    self._set(entry, replace(entry.status, state="stopped", since=time.time()))
                    raise asyncio.CancelledError from exc
                healthy = (
                    attempt.started_at is not None
                    and self._clock() - attempt.started_at >= self.backoff.healthy_after_s
                )
                failures = 1 if healthy else entry.status.consecutive_failures + 1
                delay = self.backoff.delay(failures)
                error = self._redact(f"{type(exc).__name__}: {exc}")
                log.error(
                    "component %s crashed (%s); restarting in %.1f s",
                    component.name,
                    error,
                    delay,
                    exc_info=exc,
                )
                self._set(
                    entry,
                    replace(
                        entry.status,
                        state="error",
                        last_error=error,
                        restarts=entry.status.restarts + 1,
                        consecutive_failures=failures,
                        since=time.time(),
                    ),
                )
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                self._set(entry, replace(entry.status, state="stopped", since=time.time()))
                raise
