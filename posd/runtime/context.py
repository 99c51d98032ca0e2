"""What every component may share: the running config, the state dir, the component states."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from posd.config import Config
from posd.runtime.fanout import EventHub
from posd.runtime.sdnotify import Notifier
from posd.runtime.supervisor import ComponentStatus, Supervisor


@dataclass
class Runtime:
    """What components share: the running config, the state dir, component states, uptime,
    and `events`, posd's one event hub (payment and order changes, errors, device changes),
    which outlives every rebuild of the components on a reload.

    `config` is replaced on a successful reload; `state_dir` is the one opened at start (a new
    storage.state_dir takes effect at the next start, never under a running journal).
    """

    config: Config
    config_path: Path
    state_dir: Path
    supervisor: Supervisor
    notifier: Notifier
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    events: EventHub = field(default_factory=EventHub)
    shared: dict[str, object] = field(default_factory=dict)
    """What the component builder makes once and every rebuild reuses: a component that is
    never restarted (the journal holder) must be the one its rebuilt users are given."""

    def component_states(self) -> dict[str, ComponentStatus]:
        return self.supervisor.statuses()

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic
