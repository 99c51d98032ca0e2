"""The state object of mqtt.md, built in one place, for the MQTT `…/state`, `GET /v1/status`
and `posd status`.

The sections come from providers: the payment side (`PaymentsReport`: ledger, card reader,
QR scanner, saf, payments_today, storage) and the order alerts running now (`OrdersReport`,
found anew at each build, as a reload may replace them: orders and devices.audio). While
none runs, the orders side's `sections_without_alerts` says what is true then (a shop that
takes orders is deaf; one with `orders.enabled` false is not: `can_alert` null). Every key
of mqtt.md is present, null where the provider does not say; keys a provider adds beyond
mqtt.md are kept. Three sections not in mqtt.md follow: `storage` (the journal's disk), `api`
(the local API's listeners and connections) and `mqtt` (the monitoring link: a broker that
refuses posd's credentials shows here, for `posd status`).

`connects` counts the monitoring link's connections since start (`connects`, kept in
Runtime.lasting: a reload that rebuilds the link does not restart the count).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from posd import __version__
from posd.logs import redact
from posd.mqtt import LinkState
from posd.orders import sections_without_alerts
from posd.runtime import Runtime

STATE_EXPIRY_S: Final = 6 * 3600
"""MQTT 5 message expiry of the retained state: a box gone for good leaves no ghost; a live
one republishes every STATE_INTERVAL_S."""
STATE_INTERVAL_S: Final = 60.0
STATE_MIN_GAP_S: Final = 1.0
"""Changes are published at most once per this (mqtt.md: at most once a second)."""

LINK_STATES: Final = frozenset({"up", "down", "disabled"})
DEVICE_STATES: Final = frozenset({"ready", "busy", "disconnected", "error", "disabled"})
# Keys whose values change with every build, not with the box: not a change worth publishing.
_CLOCK_KEYS: Final = ("ts", "uptime_s")

_SECTION_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "ledger": ("link", "last_rtt_ms", "last_error", "clock_skew_s"),
    "saf": ("pending", "pending_amount", "oldest_age_s", "alarm"),
    "orders": ("alerting", "missed_today", "link", "can_alert", "reason"),
    "payments_today": ("approved", "declined", "amount"),
}
_DEVICE_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "card_reader": ("state", "port", "firmware"),
    "qr_scanner": ("state", "kind"),
    "audio": ("state", "output"),
}
# Free text from devices, links and the disk: masked like a log line before it leaves posd.
_TEXT_KEYS: Final = frozenset({"last_error", "reason"})


class PaymentsReport(Protocol):
    """The payment side (posd.payments.PaymentEngine)."""

    async def status_sections(self, *, strict: bool = False) -> Mapping[str, object]:
        """`ledger`, `devices` (`card_reader`, `qr_scanner`), `saf`, `payments_today` and
        `storage`, in mqtt.md's shapes. `strict`: refuse (posd.payments.DeviceNotReady)
        rather than report null figures while the journal is not open."""
        ...


class OrdersReport(Protocol):
    """The order alerts (posd.orders.OrderAlerts, an OrderDesk)."""

    def status_sections(self) -> tuple[Mapping[str, object], Mapping[str, object]]:
        """mqtt.md's `orders` section and `devices.audio`."""
        ...


@dataclass
class Connects:
    """The monitoring link's connections since posd started (mqtt.md's state `connects`)."""

    count: int = 0


def connects(runtime: Runtime) -> Connects:
    """The count of `runtime`'s process, the same object across the builds of every reload."""
    return runtime.lasting("monitoring.connects", Connects)


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StateBuilder:
    """Builds the state object; one per process, shared by the API and the monitoring link.
    Each provider is a lookup of the component running now (a reload may replace it)."""

    def __init__(
        self,
        runtime: Runtime,
        payments: Callable[[], PaymentsReport | None],
        *,
        orders: Callable[[], OrdersReport | None] | None = None,
        api: Callable[[], Mapping[str, object] | None] | None = None,
        link: Callable[[], LinkState | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`orders`: the order alerts (posd.daemon's `orders_lookup`); `api`: the local API's
        listeners (posd.api.LocalApi.listeners), for the `api` section; `link`: the
        monitoring link's state, for the `mqtt` section (none: `disabled`)."""
        self._runtime = runtime
        self._payments = payments
        self._orders = orders
        self._api = api
        self._link = link
        self._clock = clock
        self._connects = connects(runtime)

    async def build(self, *, strict: bool = False) -> dict[str, object]:
        """The state object; `strict` (GET /v1/status) refuses while the journal is not open,
        as the rest of the API does (503), where the MQTT state says null."""
        runtime = self._runtime
        config = runtime.config
        payments = self._payments()
        paid = dict(await payments.status_sections(strict=strict)) if payments is not None else {}
        alerts = self._orders() if self._orders is not None else None
        if alerts is not None:
            orders, audio = alerts.status_sections()
        else:
            orders, audio = sections_without_alerts(config)
        devices = dict(_mapping(paid.get("devices")))
        devices["audio"] = audio
        listeners = self._api() if self._api is not None else None
        state: dict[str, object] = {
            "terminal_id": config.terminal.id,
            "merchant_id": config.terminal.merchant_id,
            "version": __version__,
            "ts": rfc3339(self._clock()),
            "boot_id": runtime.boot_id,
            "connects": self._connects.count,
            "uptime_s": int(runtime.uptime_s()),
            "config_sha256": config.sha256,
            "ledger": _section(paid.get("ledger"), _SECTION_KEYS["ledger"]),
            "devices": {
                name: _section(devices.get(name), keys) for name, keys in _DEVICE_KEYS.items()
            },
            "saf": _section(paid.get("saf"), _SECTION_KEYS["saf"]),
            "orders": _section(orders, _SECTION_KEYS["orders"]),
            "payments_today": _section(paid.get("payments_today"), _SECTION_KEYS["payments_today"]),
            "storage": _section(paid.get("storage"), ("state", "last_error")),
            "api": dict(listeners) if listeners is not None else None,
            "mqtt": self._mqtt_section(),
        }
        _normalise(state)
        return state

    def _mqtt_section(self) -> dict[str, object]:
        link = self._link() if self._link is not None else None
        if link is None:
            # Enabled and not found: being replaced by a reload this moment.
            shown = "down" if self._runtime.config.mqtt.enabled else "disabled"
            return {"link": shown, "last_error": None, "queued": 0, "dropped": 0}
        return {
            "link": link.status,
            "last_error": link.last_error,
            "queued": link.queued,
            "dropped": link.dropped,
        }


def same_state(a: Mapping[str, object] | None, b: Mapping[str, object]) -> bool:
    """Whether two states say the same of the box (their build time and uptime aside)."""
    if a is None:
        return False
    return {k: v for k, v in a.items() if k not in _CLOCK_KEYS} == {
        k: v for k, v in b.items() if k not in _CLOCK_KEYS
    }


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _section(value: object, keys: tuple[str, ...]) -> dict[str, object]:
    """Every key of mqtt.md first (null where not given), then whatever else the provider
    reports (e.g. saf.needs_attention)."""
    given = _mapping(value)
    section: dict[str, object] = {key: given.get(key) for key in keys}
    section.update({k: v for k, v in given.items() if k not in section})
    return section


def _normalise(state: dict[str, object]) -> None:
    """mqtt.md's vocabularies: the ledger client's `connecting` is a link that is not up."""
    ledger = _mapping(state["ledger"])
    if ledger.get("link") not in LINK_STATES and isinstance(ledger, dict):
        ledger["link"] = "down"
    devices = _mapping(state["devices"])
    for device in devices.values():
        if isinstance(device, dict) and device.get("state") not in DEVICE_STATES:
            device["state"] = None
    for section in state.values():
        if isinstance(section, dict):
            _mask_text(section)


def _mask_text(section: dict[str, object]) -> None:
    for key, value in section.items():
        if key in _TEXT_KEYS and isinstance(value, str):
            section[key] = redact(value)
        elif isinstance(value, dict):
            _mask_text(value)
