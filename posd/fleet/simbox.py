"""One simulated POS box as the broker sees it (mqtt.md), without its connection: pure.

`SimBox` holds what posd would report (the state object's every key, the day's payments, the
store-and-forward queue, orders, devices), builds the messages posd publishes (availability,
state, events, responses) and answers signed commands exactly as posd must: Ed25519 over
`{command}\\n{id}\\n{ts}\\n{canonical args}`, a 60 s clock window and the ids of the last 10
minutes (protocols.command_payload). It never reads a clock: `now` comes in.

The seeded schedule (`step`, once per state interval) makes a fleet look lived in: payments,
now and then a ledger outage with offline approvals queued and forwarded after, an order
acknowledged or missed, a deaf spell (orders link down or no audio), a reader unplugged, a box
whose connection dies (its will fires) or that restarts (new boot id), one that hangs (connected,
silent: stale). Each box has its own generator from (seed, terminal id), so a fleet is the same
fleet on every run with the same seed. Cards appear as `card_last4`, accounts as
`account_last4`: nothing more of a card or a QR ever leaves a box.
"""

from __future__ import annotations

import datetime
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from protocols.command_payload import (
    CommandRejected,
    ReplayWindow,
    response_payload,
    verify_command,
)

VERSION: Final = "0.1.0"
# An order alerting this many state intervals (of 60 s by default: posd's 300 s) is missed.
MISSED_AFTER_STEPS: Final = 5
SAF_ALARM_AGE_S: Final = 24 * 3600.0
DEAF_LINK: Final = "orders link down for more than 60 s"
DEAF_AUDIO: Final = "no working audio output"

Outcome = Literal["offline", "restart", "hang", "resume", None]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class SimBox:
    """See the module docstring. Publishing is the caller's: every method returns messages."""

    __slots__ = (
        "_events",
        "_orders",
        "_replay",
        "alerting",
        "amount",
        "approved",
        "audio",
        "base",
        "boot_at",
        "boot_id",
        "connects",
        "deaf_reason",
        "declined",
        "hung",
        "ledger_link",
        "merchant_id",
        "missed_today",
        "operator_keys",
        "orders_link",
        "reader",
        "rng",
        "saf",
        "terminal_id",
    )

    def __init__(
        self,
        terminal_id: str,
        *,
        seed: int = 0,
        base_topic: str = "posd",
        operator_keys: Sequence[bytes] = (),
        now: float,
    ) -> None:
        self.terminal_id = terminal_id
        self.base = f"{base_topic}/{terminal_id}"
        self.rng = random.Random(f"{seed}:{terminal_id}")
        self.merchant_id = "M" + "".join(str(self.rng.randrange(10)) for _ in range(14))
        self.operator_keys = tuple(operator_keys)
        self._replay = ReplayWindow()
        self._events = 0
        self._orders: dict[str, tuple[float, int]] = {}  # order id -> placed at, steps alerting
        self.boot_id = ""
        self.boot_at = now
        self.connects = 0
        self.restart(now)
        self.ledger_link = "up"
        self.reader = "ready"
        self.audio = "ready"
        self.orders_link = "up"
        self.deaf_reason: str | None = None
        self.alerting = 0
        self.missed_today = 0
        self.approved = self.declined = self.amount = 0
        # The store-and-forward queue: (queued at, amount) of each offline approval.
        self.saf: list[tuple[float, int]] = []
        self.hung = False
        if self.rng.random() < 0.01:
            # A box that approved offline more than a day ago and never forwarded it.
            self.saf = [(now - self.rng.uniform(25, 72) * 3600, self.rng.randrange(1, 50) * 1000)]

    # -- identity and connection -------------------------------------------------------------

    def restart(self, now: float) -> None:
        """posd started again: a new boot id, the link's connects counted from zero."""
        self.boot_id = "".join(self.rng.choice("0123456789abcdef") for _ in range(16))
        self.boot_at = now
        self.connects = 0

    @property
    def client_id(self) -> str:
        return f"posd-{self.terminal_id}"

    @property
    def will(self) -> Message:
        return Message(f"{self.base}/availability", b"offline", 1, True)

    @property
    def request_filter(self) -> str:
        return f"{self.base}/request/+"

    def connected(self, now: float) -> list[Message]:
        """After each CONNACK: `online` and the state, both retained (mqtt.md)."""
        self.connects += 1
        return [Message(f"{self.base}/availability", b"online", 1, True), self.state(now)]

    def stopping(self) -> Message:
        """posd's orderly stop: `offline` itself, since a clean DISCONNECT sends no will."""
        return Message(f"{self.base}/availability", b"offline", 1, True)

    # -- what it publishes -------------------------------------------------------------------

    @property
    def deaf(self) -> bool:
        return self.deaf_reason is not None

    def state(self, now: float) -> Message:
        oldest = min((at for at, _ in self.saf), default=None)
        oldest_age = None if oldest is None else round(now - oldest, 1)
        obj = {
            "terminal_id": self.terminal_id,
            "merchant_id": self.merchant_id,
            "version": VERSION,
            "ts": rfc3339(now),
            "boot_id": self.boot_id,
            "connects": self.connects,
            "uptime_s": int(now - self.boot_at),
            "config_sha256": "5" * 64,
            "ledger": {
                "link": self.ledger_link,
                "last_rtt_ms": None if self.ledger_link == "down" else 38.5,
                "last_error": "connection refused" if self.ledger_link == "down" else None,
                "clock_skew_s": 0.0,
            },
            "devices": {
                "card_reader": {
                    "state": self.reader,
                    "port": "/dev/posd-reader",
                    "firmware": "2.1",
                },
                "qr_scanner": {"state": "ready", "kind": "usb-hid"},
                "audio": {"state": self.audio, "output": "alsa"},
            },
            "saf": {
                "pending": len(self.saf),
                "pending_amount": sum(amount for _, amount in self.saf),
                "oldest_age_s": oldest_age,
                "alarm": oldest_age is not None and oldest_age > SAF_ALARM_AGE_S,
            },
            "orders": {
                "alerting": self.alerting,
                "missed_today": self.missed_today,
                "link": self.orders_link,
                "can_alert": not self.deaf,
                "reason": self.deaf_reason,
            },
            "payments_today": {
                "approved": self.approved,
                "declined": self.declined,
                "amount": self.amount,
            },
        }
        return Message(f"{self.base}/state", _dumps(obj), 1, True)

    def event(self, kind: str, now: float, **fields: object) -> Message:
        self._events += 1
        obj = {
            "id": f"{self.terminal_id}-{self.boot_id}-{self._events}",
            "ts": rfc3339(now),
            "kind": kind,
            **fields,
        }
        return Message(f"{self.base}/event/{kind}", _dumps(obj), 1, False)

    # -- what happens to it ------------------------------------------------------------------

    def payment(self, now: float) -> list[Message]:
        rng = self.rng
        card = rng.random() < 0.6
        amount = rng.randrange(1, 60) * 500
        declined = rng.random() < 0.05
        offline = not declined and self.ledger_link == "down"
        fields: dict[str, object] = {
            "payment_id": f"p-{self.terminal_id}-{self._events + 1}",
            "state": "declined" if declined else "approved",
            "amount": amount,
            "charged": 0 if declined else amount,
            "method": "card" if card else "qr",
            "entry_mode": rng.choice(("chip", "contactless", "magstripe")) if card else "qr",
            ("card_last4" if card else "account_last4"): f"{rng.randrange(10_000):04d}",
            "response_code": "51" if declined else ("Y1" if offline else "00"),
            "decline_reason": "insufficient_funds" if declined else None,
            "offline": offline,
        }
        if declined:
            self.declined += 1
        else:
            self.approved += 1
            self.amount += amount
        messages = [self.event("payment", now, **fields)]
        if offline:
            self.saf.append((now, amount))
            messages.append(self._saf_event(now))
        return messages

    def _saf_event(self, now: float) -> Message:
        oldest = min((at for at, _ in self.saf), default=None)
        age = None if oldest is None else round(now - oldest, 1)
        return self.event(
            "saf",
            now,
            pending=len(self.saf),
            pending_amount=sum(a for _, a in self.saf),
            oldest_age_s=age,
            alarm=age is not None and age > SAF_ALARM_AGE_S,
        )

    def ledger(self, up: bool, now: float) -> list[Message]:
        self.ledger_link = "up" if up else "down"
        messages = [
            self.event(
                "ledger", now, link=self.ledger_link, detail=None if up else "connection refused"
            )
        ]
        if up and self.saf:
            self.saf = [entry for entry in self.saf if now - entry[0] > SAF_ALARM_AGE_S]
            messages.append(self._saf_event(now))
        return messages

    def order(self, order_id: str, now: float) -> list[Message]:
        """An order arrives: the chime starts (posd alerts even when it cannot be heard)."""
        self._orders[order_id] = (now, 0)
        self.alerting += 1
        return [self._order_event(order_id, "alerting", now)]

    def acknowledge(self, order_id: str, now: float) -> list[Message]:
        if order_id not in self._orders:
            return []
        self.alerting -= 1
        message = self._order_event(order_id, "acknowledged", now)
        del self._orders[order_id]
        return [message]

    def miss(self, order_id: str, now: float) -> list[Message]:
        """The order alerted too long: missed, for the call centre."""
        if order_id not in self._orders:
            return []
        self.alerting -= 1
        self.missed_today += 1
        message = self._order_event(order_id, "missed", now)
        del self._orders[order_id]
        return [message]

    def _order_event(self, order_id: str, state: str, now: float) -> Message:
        placed_at = self._orders[order_id][0]
        return self.event(
            "order",
            now,
            order_id=order_id,
            state=state,
            placed_at=rfc3339(placed_at),
            alerting_s=int(now - placed_at),
        )

    def go_deaf(self, reason: str, now: float) -> list[Message]:
        if reason == DEAF_AUDIO:
            self.audio = "error"
        else:
            self.orders_link = "down"
        self.deaf_reason = reason
        messages = []
        if reason == DEAF_AUDIO:
            messages.append(
                self.event("device", now, device="audio", state="error", detail="ALSA device gone")
            )
        return [
            *messages,
            self.event(
                "order",
                now,
                order_id=None,
                state="deaf",
                reason=reason,
                placed_at=None,
                alerting_s=None,
            ),
        ]

    def hear_again(self, now: float) -> list[Message]:
        if not self.deaf:
            return []
        self.audio, self.orders_link, self.deaf_reason = "ready", "up", None
        return [
            self.event(
                "order",
                now,
                order_id=None,
                state="hearing",
                reason=None,
                placed_at=None,
                alerting_s=None,
            )
        ]

    def reader_state(self, state: str, now: float) -> list[Message]:
        self.reader = state
        return [self.event("device", now, device="card_reader", state=state, detail=None)]

    def new_day(self) -> None:
        self.approved = self.declined = self.amount = self.missed_today = 0

    def step(self, now: float) -> tuple[list[Message], Outcome]:
        """One state interval of the seeded schedule: the events, and what becomes of the
        connection (the caller drops it, restarts the box, or stops publishing)."""
        rng = self.rng
        messages: list[Message] = []
        for order_id, (placed_at, steps) in list(self._orders.items()):
            if steps + 1 >= MISSED_AFTER_STEPS:
                messages += self.miss(order_id, now)
            elif not self.deaf and rng.random() < 0.7:
                messages += self.acknowledge(order_id, now)
            else:
                self._orders[order_id] = (placed_at, steps + 1)
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            messages += self.payment(now)
        roll = rng.random()
        if self.ledger_link == "down":
            if roll < 0.3:
                messages += self.ledger(True, now)
        elif roll < 0.003:
            messages += self.ledger(False, now)
        if rng.random() < 0.02:
            messages += self.order(f"B-{self.terminal_id}-{self._events + 1}", now)
        roll = rng.random()
        if self.deaf:
            if roll < 0.2:
                messages += self.hear_again(now)
        elif roll < 0.002:
            messages += self.go_deaf(rng.choice((DEAF_LINK, DEAF_AUDIO)), now)
        roll = rng.random()
        if self.reader == "disconnected":
            if roll < 0.3:
                messages += self.reader_state("ready", now)
        elif roll < 0.002:
            messages += self.reader_state("disconnected", now)
        roll = rng.random()
        outcome: Outcome = None
        if self.hung:
            outcome = "resume" if roll < 0.3 else "hang"
        elif roll < 0.002:
            outcome = "offline"
        elif roll < 0.003:
            outcome = "restart"
        elif roll < 0.004:
            outcome = "hang"
        return messages, outcome

    # -- commands ----------------------------------------------------------------------------

    def command(self, command: str, payload: bytes, now: float) -> list[Message]:
        """A request on `…/request/{command}`: the response, and a security event when refused
        as unauthorized (mqtt.md). Without operator keys every request is refused."""
        checked = verify_command(command, payload, self.operator_keys, int(now), self._replay)
        topic = f"{self.base}/response/{command}"
        if isinstance(checked, CommandRejected):
            messages = [Message(topic, response_payload(checked.id, error=checked.error))]
            if checked.is_security_event:
                messages.append(
                    self.event("security", now, what="unauthorized_command", detail=checked.reason)
                )
            return messages
        self._replay.add(checked.id, int(now))
        ok, result = self._run(checked.command, dict(checked.args), now)
        if not ok:
            return [Message(topic, response_payload(checked.id, error=str(result)))]
        return [Message(topic, response_payload(checked.id, result=result))]

    def _run(self, command: str, args: dict[str, object], now: float) -> tuple[bool, object]:
        if command == "chime_test":
            # posd's answers: the output that played it and the ones that failed before it,
            # or, with none working, the player's error naming each.
            if self.audio != "ready":
                return False, "no audio output played the chime: alsa: the sound card is gone"
            return True, {"output": "alsa", "failures": []}
        if command == "saf_flush":
            if self.ledger_link == "down":
                return False, "the ledger is unreachable: nothing forwarded"
            forwarded = len(self.saf)
            self.saf.clear()
            return True, {"forwarded": forwarded, "pending": 0}
        if command == "reload_config":
            return True, {"result": "reloaded", "config_sha256": "5" * 64}
        if command == "diagnostics":
            return True, {
                "version": VERSION,
                "boot_id": self.boot_id,
                "uptime_s": int(now - self.boot_at),
                "devices": {"card_reader": self.reader, "qr_scanner": "ready", "audio": self.audio},
                "saf": {"pending": len(self.saf)},
                "last_errors": [],
            }
        return True, {"level": args["level"]}  # log_level: checked by verify_command
