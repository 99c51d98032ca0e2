"""What every component may share: the running config, the state dir, the component states."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

from posd.config import Config
from posd.runtime.fanout import EventHub
from posd.runtime.sdnotify import Notifier
from posd.runtime.supervisor import ComponentStatus, Supervisor

_T = TypeVar("_T")


@dataclass
class Runtime:
    """What components share: the running config, the state dir, component states, uptime,
    and `events`, posd's one event hub (payment and order changes, errors, device changes),
    which outlives every rebuild of the components on a reload.

    `config` is replaced on a successful reload; `state_dir` is the one opened at start (a new
    storage.state_dir takes effect at the next start, never under a running journal).
    `lasting` keeps what lives as long as the process (the journal) across the builds of
    every reload.
    """

    config: Config
    config_path: Path
    state_dir: Path
    supervisor: Supervisor
    notifier: Notifier
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    events: EventHub = field(default_factory=EventHub)
    """posd's one event hub: payment, order and device changes, for the API and monitoring."""
    _lasting: dict[str, object] = field(default_factory=dict, repr=False)

    def lasting(self, key: str, make: Callable[[], _T]) -> _T:
        """The object made under `key` by the first build, made by `make` then; every later
        build (a reload) gets that same object. A component that is never restarted on reload
        (config_sections empty) must come from here: the components rebuilt around it hold a
        reference to it, and a fresh instance would never be run."""
        if key not in self._lasting:
            self._lasting[key] = make()
        return cast(_T, self._lasting[key])

    def component_states(self) -> dict[str, ComponentStatus]:
        return self.supervisor.statuses()

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic
