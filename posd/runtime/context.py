"""What every component may share: the running config, the state dir, the component states,
the event hub, and what identifies this start of posd."""

from __future__ import annotations

import secrets
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


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """How a configuration reload ended, as told to whoever asked for it."""

    applied: bool
    config_sha256: str
    """The configuration now running: the new one when applied, else the one kept."""
    problems: tuple[str, ...] = ()
    """Why it was refused: `FILE:LINE: key.path: what is wrong` lines (never a secret value)."""


Decided = Callable[[ReloadOutcome], None]
"""Called (synchronously) once a reload is decided, before any component is replaced."""


@dataclass
class Runtime:
    """What components share: the running config, the state dir, component states, uptime,
    and `events`, posd's one event hub, which outlives every rebuild of the components on a
    reload.

    `config` is replaced on a successful reload; `state_dir` is the one opened at start (a new
    storage.state_dir takes effect at the next start, never under a running journal).
    `events` and `boot_id` are the process's; `lasting` keeps the other objects that live as
    long as the process (the journal, the monitoring link's connection count) across the
    builds of every reload. `request_reload` is set by the daemon: it asks for a reload (as
    SIGHUP does) and calls the given function once the new file is taken or refused.
    """

    config: Config
    config_path: Path
    state_dir: Path
    supervisor: Supervisor
    notifier: Notifier
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    events: EventHub = field(default_factory=EventHub)
    """posd's one event hub: payment and order changes for the API's event stream, and every
    kind (devices, ledger, saf, config, security, errors too) for monitoring."""
    boot_id: str = field(default_factory=lambda: secrets.token_hex(8))
    """Random per start of posd (mqtt.md's state `boot_id`)."""
    request_reload: Callable[[Decided | None], None] | None = None
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
