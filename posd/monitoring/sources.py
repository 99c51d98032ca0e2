"""Where posd's monitoring events arise: the hooks that put them on the event hub.

- `DeviceReporter`: a driver's state hook (CardReader.on_state, a scanner's on_state, the
  order alerts' audio report) → `device` events. A reader's `busy` is `ready` for this:
  a device event is a connect, a disconnect or an error, not every card read; for audio, a
  change of the output in use too.
- `LedgerReporter`: the ledger client's on_link → `ledger` events (up once signed on; down
  with the reason, which names a refused sign-on).
- `ComponentWatch`: the supervisor's listener → an `error` event when a component crashes.
- `config_event`: the body of a `config` event (the daemon publishes it on every reload).
- `SafThresholds`: the `saf` events of the queue crossing its thresholds, from the state.

The hooks are called from the event loop's thread and never raise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final, Protocol

from posd.config import OfflineConfig
from posd.runtime import EventHub, ReloadOutcome, Supervisor

log = logging.getLogger(__package__)

NEAR_LIMIT: Final = 0.8
"""A queue at this share of an offline limit (count or amount) is reported near_limit."""


class _Device(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def last_error(self) -> str | None: ...


class DeviceReporter:
    """`device` events for one device, published when its connectivity changes."""

    def __init__(self, hub: EventHub, device: str, source: _Device | None = None) -> None:
        self._hub = hub
        self._device = device
        self._source = source
        # Drivers start disconnected: their first connect is news, their start is not.
        self._last: tuple[str, str | None] = ("disconnected", None)

    def __call__(self, state: str) -> None:
        """A driver's state hook: the new state; the detail is read from the driver."""
        detail = None
        if self._source is not None and state in ("disconnected", "error"):
            detail = self._source.last_error
        self.report(state, detail)

    def report(self, state: str, detail: str | None = None, via: str | None = None) -> None:
        """`via`: the part of the device in use (the audio output), whose change is news."""
        shown = "ready" if state == "busy" else state
        if (shown, via) == self._last:
            return
        (before, _), self._last = self._last, (shown, via)
        if detail is None:
            detail = {
                "ready": "connected" if before in ("disconnected", "error") else "ready",
                "disconnected": "went away",
                "disabled": "disabled",
            }.get(shown, "failed")
        try:
            self._hub.publish(
                "device", "device", {"device": self._device, "state": shown, "detail": detail}
            )
        except Exception:
            log.exception("monitoring: the %s device event failed", self._device)


class _Ledger(Protocol):
    @property
    def last_error(self) -> str | None: ...
    @property
    def last_rtt_ms(self) -> float | None: ...


class LedgerReporter:
    """`ledger` events: the link up (signed on) or down, once per change."""

    def __init__(self, hub: EventHub, ledger: _Ledger) -> None:
        self._hub = hub
        self._ledger = ledger
        self._last = "down"  # the client starts down: its first sign-on is the first news

    def __call__(self, link: str) -> None:
        shown = "up" if link == "up" else "down"
        if shown == self._last:
            return
        self._last = shown
        if shown == "up":
            rtt = self._ledger.last_rtt_ms
            detail = "signed on" + (f" ({rtt:.0f} ms)" if rtt is not None else "")
        else:
            detail = self._ledger.last_error or "link closed"
        try:
            self._hub.publish("ledger", "ledger", {"link": shown, "detail": detail})
        except Exception:
            log.exception("monitoring: the ledger event failed")


class ComponentWatch:
    """An `error` event each time a component of the supervisor crashes."""

    def __init__(self, hub: EventHub, supervisor: Supervisor) -> None:
        self._hub = hub
        self._supervisor = supervisor
        self._seen: dict[str, tuple[str, int]] = {}

    def __call__(self) -> None:
        for name, status in self._supervisor.statuses().items():
            mark = (status.state, status.restarts)
            if self._seen.get(name) == mark:
                continue
            self._seen[name] = mark
            if status.state == "error":
                self._hub.publish(
                    "error",
                    "error",
                    {
                        "what": "component_failed",
                        "detail": f"{name}: {status.last_error or 'stopped'}; restarting",
                    },
                )


def config_event(outcome: ReloadOutcome) -> dict[str, object]:
    """The body of the `config` event of a reload."""
    return {
        "result": "reloaded" if outcome.applied else "refused",
        "config_sha256": outcome.config_sha256,
        "problems": list(outcome.problems),
    }


def saf_level(saf: Mapping[str, object], limits: OfflineConfig) -> str | None:
    """`empty`, `pending`, `near_limit` or `at_limit`: where the queue stands against the
    offline limits (count and total); None while the figures are unknown."""
    pending, amount = saf.get("pending"), saf.get("pending_amount")
    if not isinstance(pending, int) or not isinstance(amount, int):
        return None
    if pending == 0:
        return "empty"
    share = max(pending / max(1, limits.max_count), amount / max(1, limits.max_total))
    if share >= 1:
        return "at_limit"
    if share >= NEAR_LIMIT:
        return "near_limit"
    return "pending"


class SafThresholds:
    """`saf` events when the queue crosses a threshold (saf_level), seen in each state built.

    The max-age alarm is the payment side's own `saf` event on the hub; here only the levels.
    """

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._last: str | None = "empty"  # a posd starting with an empty queue says nothing

    def see(self, saf: Mapping[str, object], limits: OfflineConfig) -> None:
        level = saf_level(saf, limits)
        if level is None or level == self._last:
            return
        self._last = level
        body = {k: saf.get(k) for k in ("pending", "pending_amount", "oldest_age_s", "alarm")}
        self._hub.publish("saf", "saf", {**body, "threshold": level})
