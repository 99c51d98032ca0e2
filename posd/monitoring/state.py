"""The state object of mqtt.md, built in one place, for the MQTT `…/state`, `GET /v1/status`
and `posd status`.

The sections come from providers: the payment side (`PaymentsReport`: ledger, card reader,
QR scanner, saf, payments_today, storage) and, where order alerts are built in, the orders
side (`OrdersReport`: orders and devices.audio). Without an orders provider the orders
section says what is true of such a posd: no order can be alerted (`can_alert` false, with the
reason), the link `disabled`, the audio `disabled`. Every key of mqtt.md is present, null
where the provider does not say; keys a provider adds beyond mqtt.md are kept. Two sections
not in mqtt.md follow: `storage` (the journal's disk) and `mqtt` (the monitoring link: a
broker that refuses posd's credentials shows here, for `posd status`).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from posd import __version__
from posd.config import Config
from posd.logs import redact
from posd.mqtt import LinkState
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
    """The orders side, where order alerts are built in."""

    async def status_sections(self) -> Mapping[str, object]:
        """`{"orders": <mqtt.md's orders section>, "audio": <devices.audio>}`."""
        ...


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def without_orders(config: Config) -> dict[str, dict[str, object]]:
    """The orders section and devices.audio of a posd without order alerts: it cannot alert."""
    if config.orders.enabled:
        reason = "order alerts are not part of this posd build"
    else:
        reason = "orders.enabled is false: no order is alerted"
    return {
        "orders": {
            "alerting": 0,
            "missed_today": 0,
            "link": "disabled",
            "can_alert": False,
            "reason": reason,
        },
        "audio": {"state": "disabled", "output": config.audio.output},
    }


class StateBuilder:
    """Builds the state object; one per stack, shared by the API and the monitoring link."""

    def __init__(
        self,
        runtime: Runtime,
        payments: PaymentsReport,
        *,
        orders: OrdersReport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._runtime = runtime
        self._payments = payments
        self._orders = orders
        self._clock = clock
        self._link: Callable[[], LinkState] | None = None

    def attach_link(self, state: Callable[[], LinkState]) -> None:
        """The monitoring link's state, for the `mqtt` section (unset: `disabled`)."""
        self._link = state

    async def build(self, *, strict: bool = False) -> dict[str, object]:
        """The state object; `strict` (GET /v1/status) refuses while the journal is not open,
        as the rest of the API does (503), where the MQTT state says null."""
        runtime = self._runtime
        config = runtime.config
        paid = dict(await self._payments.status_sections(strict=strict))
        if self._orders is not None:
            ordered = dict(await self._orders.status_sections())
        else:
            ordered = dict(without_orders(config))
        devices = dict(_mapping(paid.get("devices")))
        devices["audio"] = ordered.get("audio")
        state: dict[str, object] = {
            "terminal_id": config.terminal.id,
            "merchant_id": config.terminal.merchant_id,
            "version": __version__,
            "ts": rfc3339(self._clock()),
            "boot_id": runtime.boot_id,
            "connects": runtime.monitoring_connects,
            "uptime_s": int(runtime.uptime_s()),
            "config_sha256": config.sha256,
            "ledger": _section(paid.get("ledger"), _SECTION_KEYS["ledger"]),
            "devices": {
                name: _section(devices.get(name), keys) for name, keys in _DEVICE_KEYS.items()
            },
            "saf": _section(paid.get("saf"), _SECTION_KEYS["saf"]),
            "orders": _section(ordered.get("orders"), _SECTION_KEYS["orders"]),
            "payments_today": _section(paid.get("payments_today"), _SECTION_KEYS["payments_today"]),
            "storage": _section(paid.get("storage"), ("state", "last_error")),
            "mqtt": self._mqtt_section(),
        }
        _normalise(state)
        return state

    def _mqtt_section(self) -> dict[str, object]:
        if self._link is None:
            return {"link": "disabled", "last_error": None, "queued": 0, "dropped": 0}
        link = self._link()
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
