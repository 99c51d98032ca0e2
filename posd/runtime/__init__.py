"""What the daemon's components run on: the component contract, their supervisor, the shared
context, systemd's notify socket and the event hub.

Modules:
- `component`: `Component`, what the supervisor runs (a named task that says when it serves),
  and `config_sections`, the config tables a component is built from (what a reload rebuilds).
- `supervisor`: `Supervisor`, one TaskGroup that runs the components and restarts a crashed one
  with `Backoff`; `ComponentStatus`, what it reports of each.
- `context`: `Runtime`, what every component may share (running config, state dir, statuses,
  the event hub `events`, the boot id, `lasting` for what outlives reloads, the reload
  request); `ReloadOutcome`, how a reload ended.
- `sdnotify`: `Notifier`, the sd_notify protocol (READY, STATUS, RELOADING, WATCHDOG).
- `fanout`: `EventHub`, state changes fanned out to any number of bounded subscribers, each
  taking all kinds of event or some.
- `failpoints`: `failpoint`, named instants where a test makes posd fail from inside (inert
  unless POSD_FAILPOINTS names one).
"""

from posd.runtime.component import Component, config_sections
from posd.runtime.context import Decided, ReloadOutcome, Runtime
from posd.runtime.failpoints import failpoint
from posd.runtime.fanout import EventHub, Subscription
from posd.runtime.sdnotify import Notifier
from posd.runtime.supervisor import Backoff, ComponentReturned, ComponentStatus, Supervisor

__all__ = [
    "Backoff",
    "Component",
    "ComponentReturned",
    "ComponentStatus",
    "Decided",
    "EventHub",
    "Notifier",
    "ReloadOutcome",
    "Runtime",
    "Subscription",
    "Supervisor",
    "config_sections",
    "failpoint",
]
