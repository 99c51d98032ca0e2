"""The fleet as the console knows it: one `Box` per terminal, fed broker messages, pure.

`FleetModel.ingest(topic, payload, retain, received_at)` takes every message of the three
subscriptions (payloads.subscriptions) and answers what changed; `tick(now)` turns boxes
stale as time passes. No I/O, no clock reads: time comes in with the messages.

Rules (mqtt.md gives the evidence: availability is plain `online`/`offline` with no boot id;
the state carries `boot_id`, `connects` and `ts`; a bridge may reorder messages):

- **State order.** A state replaces the box's last one only if it is newer: same `boot_id`
  and a higher `connects`, or the same connection (`boot_id`, `connects`) and a `ts` not
  older; across boots (another `boot_id`), the later `ts`. An older one is dropped.
- **Late wills.** Each connection says `online` once and ends with one `offline` (its will,
  or posd's own on an orderly stop). When a live state of a *new* connection arrives while
  the previous one had no `offline` yet, that connection's `offline` is still owed and may
  come late (a will from the broker the box left). The next live `offline` pays the debt and
  is ignored: the box already reconnected. Otherwise a live `offline` marks the box offline.
- **Back online.** A live `online`, or a live state of a connection newer than the one an
  `offline` ended, or a live state of the same connection built (`ts`) more than
  REVIVE_MARGIN_S after that `offline` arrived, shows the box online again: the `offline`
  was a late will that came before the new connection's state.
- **Snapshot vs live**, by the retain flag: retained messages are the broker's current
  values, applied as they are (no debts, no revivals: their arrival order means nothing),
  and a status they set has an unknown `since`.
- **Stale.** An online box whose last sign of life (its last state's `ts`, not later than
  when it arrived; or a live `online`) is older than `stale_after_s` (twice the state
  interval) is `stale`, since that moment.
- **Deaf.** `orders.can_alert` of the state and the `deaf`/`hearing` order events, whichever
  is newest by `ts`. A change is a call signal (one call per deaf episode). Only `false` is
  deaf: a null `can_alert` with the orders link `disabled` is a shop that takes no orders (no
  order can arrive unheard), not deaf; any other null says nothing.
- **Events** are deduplicated by `id` against the box's last EVENT_IDS ids; the last
  MAX_EVENTS (at most EVENT_BYTES bytes deflated) are kept; a `missed` order event is a call
  signal.
- Anything malformed is counted (badinput) and ignored. An empty retained payload clears the
  box's availability or state; a box with neither is forgotten.
"""

from __future__ import annotations

import heapq
import zlib
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from posd.fleet.badinput import BadInput
from posd.fleet.payloads import (
    Availability,
    Bad,
    Event,
    State,
    format_rfc3339,
    parse_availability,
    parse_event,
    parse_state,
    parse_topic,
)

Status = Literal["online", "offline", "stale"]
STATUSES: Final[tuple[Status, ...]] = ("online", "offline", "stale")

STATE_INTERVAL_S: Final = 60.0
MAX_EVENTS: Final = 50
EVENT_BYTES: Final = 16 * 1024
EVENT_IDS: Final = 64
SAF_OLD_S: Final = 24 * 3600.0
MAX_BOXES: Final = 50_000
# Kept events are deflated with this preset dictionary of mqtt.md's event shapes: a payment
# event of about 300 bytes keeps under 100 (bench_fleet_model), which is what lets 10,000
# boxes keep their last 50 events each. The window (2**_ZBITS) holds the whole dictionary.
_ZBITS: Final = 11
_EVENT_ZDICT: Final = (
    b'{"id":"","ts":"2026-12-02T09:00:00Z","kind":"error","what":"","detail":null}'
    b'{"id":"","ts":"2026-12-02T09:00:00Z","kind":"security","what":"unauthorized_command",'
    b'"detail":""}{"id":"","ts":"2026-12-02T09:00:00Z","kind":"config","result":"reloaded",'
    b'"config_sha256":"","problems":[]}{"id":"","ts":"2026-12-02T09:00:00Z","kind":"ledger",'
    b'"link":"down","detail":null}{"id":"","ts":"2026-12-02T09:00:00Z","kind":"device",'
    b'"device":"card_reader","state":"disconnected","detail":null}'
    b'{"id":"","ts":"2026-12-02T09:00:00Z","kind":"saf","pending":0,"pending_amount":0,'
    b'"oldest_age_s":null,"alarm":false}{"id":"","ts":"2026-12-02T09:00:00Z","kind":"order",'
    b'"order_id":"","state":"acknowledged","placed_at":"2026-12-02T09:00:00Z","alerting_s":0,'
    b'"reason":null}{"id":"","ts":"2026-12-02T09:00:00Z","kind":"order","order_id":"",'
    b'"state":"alerting","placed_at":"2026-12-02T09:00:00Z","alerting_s":0}'
    b'{"id":"","ts":"2026-12-02T09:00:00Z","kind":"payment","payment_id":"","state":"declined",'
    b'"amount":0,"charged":0,"method":"qr","entry_mode":"qr","account_last4":"",'
    b'"response_code":"51","decline_reason":"insufficient_funds","offline":false}'
    b'{"id":"","ts":"2026-12-02T09:00:00Z","kind":"payment","payment_id":"","state":"approved",'
    b'"amount":10000,"charged":10000,"method":"card","entry_mode":"contactless",'
    b'"card_last4":"","response_code":"00","decline_reason":null,"offline":false}'
)


def _deflate(raw: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -_ZBITS, 2, zdict=_EVENT_ZDICT)
    return packer.compress(raw) + packer.flush()


def _inflate(packed: bytes) -> bytes:
    return zlib.decompressobj(-_ZBITS, zdict=_EVENT_ZDICT).decompress(packed)


# A box clock this far ahead of the console's could make a state built before an `offline`
# look built after it; clocks closer than this (NTP) cannot.
REVIVE_MARGIN_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class MissedOrder:
    terminal_id: str
    merchant_id: str | None
    order_id: str
    placed_at: float


@dataclass(frozen=True, slots=True)
class DeafChanged:
    terminal_id: str
    merchant_id: str | None
    deaf: bool
    at: float
    reason: str | None


CallSignal = MissedOrder | DeafChanged


@dataclass(slots=True)
class Change:
    """What one message or tick changed: rows to resend, boxes forgotten, call signals."""

    rows: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    calls: list[CallSignal] = field(default_factory=list)


class Box:
    __slots__ = (
        "avail",
        "card_reader",
        "conn_boot",
        "conn_closed",
        "conn_connects",
        "deaf",
        "deaf_reason",
        "deaf_ts",
        "event_bytes",
        "event_ids",
        "event_pos",
        "events",
        "heard_at",
        "heard_guess",
        "ledger_link",
        "merchant_id",
        "missed_today",
        "offline_rx",
        "orders_alerting",
        "owed",
        "saf_oldest_age_s",
        "saf_pending",
        "search",
        "since",
        "stale_at",
        "state_raw",
        "state_ts",
        "status",
        "terminal_id",
        "version",
    )

    def __init__(self, terminal_id: str) -> None:
        self.terminal_id = terminal_id
        self.merchant_id: str | None = None
        self.version: str | None = None
        self.avail: Availability | None = None
        self.status: Status = "online"
        self.since: float | None = None
        # The connection of the newest state, whether an `offline` ended it, and how many
        # earlier connections still owe theirs.
        self.conn_boot: str | None = None
        self.conn_connects = 0
        self.conn_closed = False
        self.owed = 0
        self.offline_rx: float | None = None
        self.state_ts: float | None = None
        self.state_raw: bytes | None = None
        self.heard_at: float | None = None
        self.heard_guess = False
        self.stale_at: float | None = None
        self.ledger_link: str | None = None
        self.card_reader: str | None = None
        self.saf_pending: int | None = None
        self.saf_oldest_age_s: float | None = None
        self.orders_alerting: int | None = None
        self.missed_today: int | None = None
        self.deaf = False
        self.deaf_reason: str | None = None
        self.deaf_ts = float("-inf")
        self.events: deque[bytes] | None = None
        self.event_bytes = 0
        self.event_ids: array[int] | None = None
        self.event_pos = 0
        self.search = terminal_id.lower()

    @property
    def saf_old(self) -> bool:
        return self.saf_oldest_age_s is not None and self.saf_oldest_age_s > SAF_OLD_S

    @property
    def reader_disconnected(self) -> bool:
        return self.card_reader == "disconnected"

    def row_key(self) -> tuple[object, ...]:
        return (
            self.merchant_id,
            self.status,
            self.since,
            self.deaf,
            self.deaf_reason,
            self.ledger_link,
            self.card_reader,
            self.saf_pending,
            self.saf_oldest_age_s,
            self.orders_alerting,
            self.missed_today,
            self.version,
            self.state_ts,
        )

    def row(self) -> dict[str, object]:
        """The box's row of fleet-console.md's `GET /api/boxes`."""
        since = self.since
        if since is None and self.status == "offline":
            since = self.state_ts  # known only from the snapshot: its last sign of life
        return {
            "terminal_id": self.terminal_id,
            "merchant_id": self.merchant_id,
            "status": self.status,
            "since": None if since is None else format_rfc3339(since),
            "deaf": self.deaf,
            "deaf_reason": self.deaf_reason,
            "ledger_link": self.ledger_link,
            "card_reader": self.card_reader,
            "saf_pending": self.saf_pending,
            "saf_oldest_age_s": self.saf_oldest_age_s,
            "orders_alerting": self.orders_alerting,
            "missed_today": self.missed_today,
            "version": self.version,
            "last_state_ts": None if self.state_ts is None else format_rfc3339(self.state_ts),
        }

    def recent_events(self) -> list[bytes]:
        """The kept events, oldest first, as compact JSON."""
        return [_inflate(packed) for packed in self.events] if self.events is not None else []

    def _seen_event(self, event_id: str) -> bool:
        """Whether the id is among the last EVENT_IDS; remembers it if not. Hashes (8 bytes
        each) rather than the strings keep this small at 10,000 boxes."""
        digest = hash(event_id)
        if self.event_ids is None:
            self.event_ids = array("q", bytes(8 * EVENT_IDS))
        elif digest in self.event_ids:
            return True
        self.event_ids[self.event_pos] = digest
        self.event_pos = (self.event_pos + 1) % EVENT_IDS
        return False

    def _keep_event(self, raw: bytes) -> None:
        if self.events is None:
            self.events = deque()
        packed = _deflate(raw)
        self.events.append(packed)
        self.event_bytes += len(packed)
        while len(self.events) > 1 and (
            len(self.events) > MAX_EVENTS or self.event_bytes > EVENT_BYTES
        ):
            self.event_bytes -= len(self.events.popleft())


class FleetModel:
    def __init__(
        self,
        base_topic: str = "posd",
        *,
        state_interval_s: float = STATE_INTERVAL_S,
        max_boxes: int = MAX_BOXES,
        bad_input: BadInput | None = None,
    ) -> None:
        self.base_topic = base_topic
        self._prefix = base_topic + "/"
        self.stale_after_s = 2 * state_interval_s
        self.max_boxes = max_boxes
        self.bad = bad_input if bad_input is not None else BadInput()
        self.boxes: dict[str, Box] = {}
        # Indexes of what the API filters and counts on, kept as each box changes.
        self.by_status: dict[Status, set[str]] = {status: set() for status in STATUSES}
        self.deaf: set[str] = set()
        self.saf_old: set[str] = set()
        self.readers_disconnected: set[str] = set()
        self._stale_heap: list[tuple[float, str]] = []
        self.messages = 0
        self.duplicates = 0
        self.late_wills = 0
        self.old_states = 0

    # -- reading -----------------------------------------------------------------------------

    def summary_counts(self) -> dict[str, int]:
        return {
            "boxes": len(self.boxes),
            "online": len(self.by_status["online"]),
            "offline": len(self.by_status["offline"]),
            "stale": len(self.by_status["stale"]),
            "deaf": len(self.deaf),
            "saf_old": len(self.saf_old),
            "readers_disconnected": len(self.readers_disconnected),
        }

    def select(
        self, status: Status | None = None, deaf: bool | None = None, q: str | None = None
    ) -> Iterator[Box]:
        """Boxes matching every filter given, by terminal id; `q` is a case-insensitive
        substring of the terminal id, merchant id or version."""
        if status is not None:
            ids: Iterable[str] = self.by_status[status]
            if deaf is True:
                ids = self.by_status[status] & self.deaf
        elif deaf is True:
            ids = self.deaf
        else:
            ids = self.boxes
        needle = q.lower() if q else None
        for terminal_id in sorted(ids):
            box = self.boxes[terminal_id]
            if deaf is False and box.deaf:
                continue
            if needle is not None and needle not in box.search:
                continue
            yield box

    # -- feeding -----------------------------------------------------------------------------

    def ingest(self, topic: str, payload: bytes, retain: bool, received_at: float) -> Change | None:
        """Apply one broker message; None when it changed nothing (refused, duplicate, old)."""
        self.messages += 1
        where = parse_topic(self._prefix, topic)
        if isinstance(where, Bad):
            self.bad.refuse(where, topic, received_at)
            return None
        terminal_id = where.terminal_id
        box = self.boxes.get(terminal_id)
        if not payload:
            if retain and box is not None:
                return self._clear(box, where.kind, received_at)
            return None
        if where.kind == "state":
            parsed: State | Event | Availability | Bad = parse_state(terminal_id, payload)
        elif where.kind == "availability":
            parsed = parse_availability(payload)
        else:
            assert where.event_kind is not None
            parsed = parse_event(where.event_kind, payload)
        if isinstance(parsed, Bad):
            self.bad.refuse(parsed, topic, received_at)
            return None
        if box is None:
            if len(self.boxes) >= self.max_boxes:
                self.bad.refuse(
                    Bad("too_many_boxes", f"already {self.max_boxes} boxes"), topic, received_at
                )
                return None
            box = self.boxes[terminal_id] = Box(terminal_id)
            self._account(box, +1)
            if not retain:
                box.since = received_at  # first heard of now; _refresh corrects other statuses
        before = box.row_key()
        change = Change()
        self._account(box, -1)
        if isinstance(parsed, State):
            self._state(box, parsed, retain, received_at, change)
        elif isinstance(parsed, Event):
            self._event(box, parsed, received_at, change)
        else:
            self._availability(box, parsed, retain, received_at)
        self._refresh(box, received_at, live=not retain)
        self._account(box, +1)
        if box.row_key() != before:
            change.rows.append(terminal_id)
        return change if change.rows or change.calls else None

    def tick(self, now: float) -> Change | None:
        """Turn stale the online boxes whose last sign of life is now too old."""
        change = Change()
        heap = self._stale_heap
        while heap and heap[0][0] <= now:
            deadline, terminal_id = heapq.heappop(heap)
            box = self.boxes.get(terminal_id)
            if box is None or box.stale_at != deadline or box.status != "online":
                continue  # superseded by a newer sign of life, or no longer online
            self._account(box, -1)
            self._refresh(box, now, live=True)
            self._account(box, +1)
            change.rows.append(terminal_id)
        return change if change.rows else None

    def _account(self, box: Box, sign: int) -> None:
        terminal_id = box.terminal_id
        if sign > 0:
            self.by_status[box.status].add(terminal_id)
            if box.deaf:
                self.deaf.add(terminal_id)
            if box.saf_old:
                self.saf_old.add(terminal_id)
            if box.reader_disconnected:
                self.readers_disconnected.add(terminal_id)
        else:
            self.by_status[box.status].discard(terminal_id)
            self.deaf.discard(terminal_id)
            self.saf_old.discard(terminal_id)
            self.readers_disconnected.discard(terminal_id)

    def _refresh(self, box: Box, now: float, *, live: bool) -> None:
        """Recompute the status; `since` is now for a live change, unknown for a retained one
        (and exact for stale: the moment the last sign of life became too old)."""
        status: Status
        stale_at = None if box.heard_at is None else box.heard_at + self.stale_after_s
        if box.avail == "offline":
            status = "offline"
        elif stale_at is not None and now >= stale_at:
            status = "stale"
        else:
            status = "online"
        new_deadline = stale_at != box.stale_at or box.status != "online"
        if status == "online" and stale_at is not None and new_deadline:
            heapq.heappush(self._stale_heap, (stale_at, box.terminal_id))
        box.stale_at = stale_at
        if status != box.status:
            box.status = status
            if status == "stale":
                box.since = stale_at
            else:
                box.since = now if live else None

    def _availability(
        self, box: Box, value: Availability, retain: bool, received_at: float
    ) -> None:
        if retain:
            box.owed = 0  # the broker's current value supersedes what live order implied
        if value == "online":
            box.avail = "online"
            box.offline_rx = None
            if not retain:
                box.heard_at = max(box.heard_at or received_at, received_at)
                box.heard_guess = False
            elif box.heard_at is None:
                # No state yet: stale unless one comes in time; the state's ts replaces this.
                box.heard_at = received_at
                box.heard_guess = True
            return
        if not retain and box.owed > 0:
            box.owed -= 1
            self.late_wills += 1
            return
        box.avail = "offline"
        box.conn_closed = True
        box.offline_rx = None if retain else received_at

    def _state(
        self, box: Box, state: State, retain: bool, received_at: float, change: Change
    ) -> None:
        new_conn = (state.boot_id, state.connects) != (box.conn_boot, box.conn_connects)
        if box.state_ts is not None:
            assert box.conn_boot is not None
            if state.boot_id == box.conn_boot and state.connects != box.conn_connects:
                newer = state.connects > box.conn_connects
            else:
                newer = state.ts >= box.state_ts
            if not newer:
                self.old_states += 1
                return
        later_connection = False
        if new_conn:
            later_connection = box.conn_boot is not None
            if not retain and later_connection and not box.conn_closed:
                box.owed += 1
            box.conn_boot, box.conn_connects = state.boot_id, state.connects
            box.conn_closed = retain and box.avail == "offline"
        if (
            not retain
            and box.avail == "offline"
            and box.offline_rx is not None
            # The offline ended an earlier connection than this state's, or this state was
            # built after the offline arrived: either way the box is connected again.
            and (later_connection or state.ts > box.offline_rx + REVIVE_MARGIN_S)
        ):
            box.avail = "online"
            box.offline_rx = None
            box.conn_closed = False
        box.state_ts = state.ts
        box.state_raw = state.raw
        if box.heard_guess:
            box.heard_at, box.heard_guess = None, False
        box.heard_at = max(min(state.ts, received_at), box.heard_at or float("-inf"))
        if box.merchant_id != state.merchant_id or box.version != state.version:
            box.merchant_id = state.merchant_id
            box.version = state.version
            box.search = " ".join(
                part.lower() for part in (box.terminal_id, state.merchant_id, state.version) if part
            )
        box.ledger_link = state.ledger_link
        box.card_reader = state.card_reader
        box.saf_pending = state.saf_pending
        box.saf_oldest_age_s = state.saf_oldest_age_s
        box.orders_alerting = state.orders_alerting
        box.missed_today = state.missed_today
        if state.can_alert is not None or state.orders_link == "disabled":
            deaf = state.can_alert is False
            self._hearing(box, deaf, state.ts, state.deaf_reason if deaf else None, change)

    def _event(self, box: Box, event: Event, received_at: float, change: Change) -> None:
        if box._seen_event(event.id):
            self.duplicates += 1
            return
        box._keep_event(event.raw)
        if box.state_ts is None and box.avail is None:
            # Known by its events alone: they are its only sign of life.
            box.heard_at = max(min(event.ts, received_at), box.heard_at or float("-inf"))
        if event.kind != "order":
            return
        if event.order_state == "missed":
            assert event.order_id is not None and event.placed_at is not None
            change.calls.append(
                MissedOrder(box.terminal_id, box.merchant_id, event.order_id, event.placed_at)
            )
        elif event.order_state in ("deaf", "hearing"):
            self._hearing(box, event.order_state == "deaf", event.ts, event.reason, change)

    def _hearing(self, box: Box, deaf: bool, ts: float, reason: str | None, change: Change) -> None:
        if ts < box.deaf_ts:
            return  # older evidence than what set the current value
        box.deaf_ts = ts
        reason = reason if deaf else None
        if deaf == box.deaf:
            box.deaf_reason = reason if deaf and reason is not None else box.deaf_reason
            return
        box.deaf = deaf
        box.deaf_reason = reason
        change.calls.append(DeafChanged(box.terminal_id, box.merchant_id, deaf, ts, reason))

    def _clear(self, box: Box, kind: str, received_at: float) -> Change | None:
        if kind == "event":
            return None
        self._account(box, -1)
        if kind == "availability":
            box.avail = None
            box.offline_rx = None
        else:
            box.state_ts = None
            box.state_raw = None
            box.conn_boot = None
            box.conn_connects = 0
        if box.avail is None and box.state_raw is None:
            del self.boxes[box.terminal_id]
            return Change(removed=[box.terminal_id])
        self._refresh(box, received_at, live=False)
        self._account(box, +1)
        return Change(rows=[box.terminal_id])
