"""Fan-out of posd's state changes to any number of subscribers: the API's SSE streams (payment
and order changes) and the monitoring link (every kind). The hub is `Runtime.events`.

An event is `{"seq": int, "type": kind, kind: body}`; `seq` increases by one per event across
the process. Kinds in use: payment and order (local-api.md's event stream; an order event is
an order's change, or the shop going deaf or hearing again), and device, ledger, saf, config,
security and error, whose bodies have the fields of mqtt.md's event of that kind (without
`id`, `ts` and `kind`, which posd.monitoring adds).

Each subscriber has a bounded queue: one too slow to keep up is ended, never allowed to hold
memory without bound, and never slows the payment flow down. A subscriber may take only some
kinds; the others never enter its queue.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Collection

SUBSCRIBER_BACKLOG = 1000


class _Overflowed:
    pass


_OVERFLOW = _Overflowed()

_Queue = asyncio.Queue[dict[str, object] | _Overflowed]


class EventHub:
    def __init__(self, backlog: int = SUBSCRIBER_BACKLOG) -> None:
        self._backlog = backlog
        self._seq = itertools.count(1)
        self._subscribers: dict[_Queue, frozenset[str] | None] = {}

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event_type: str, key: str, body: dict[str, object]) -> None:
        event: dict[str, object] = {"seq": next(self._seq), "type": event_type, key: body}
        for queue, kinds in list(self._subscribers.items()):
            if kinds is not None and event_type not in kinds:
                continue
            if queue.qsize() >= self._backlog:
                # The last slot is kept for the marker that ends this subscriber.
                self._subscribers.pop(queue, None)
                queue.put_nowait(_OVERFLOW)
            else:
                queue.put_nowait(event)

    def subscribe(self, kinds: Collection[str] | None = None) -> Subscription:
        """Registered at once, so nothing published after this call is missed. `kinds`: the
        event types to receive (None: all)."""
        queue: _Queue = asyncio.Queue()
        self._subscribers[queue] = None if kinds is None else frozenset(kinds)
        return Subscription(self._subscribers, queue)


class Subscription(AsyncIterator[dict[str, object]]):
    def __init__(self, registry: dict[_Queue, frozenset[str] | None], queue: _Queue) -> None:
        self._registry = registry
        self._queue = queue
        self._closed = False

    async def __anext__(self) -> dict[str, object]:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _Overflowed):
            self._close()
            raise StopAsyncIteration
        return item

    def pending(self) -> list[dict[str, object]]:
        """The events queued now, taken without waiting: for a subscriber that must pass on
        what it was given before it stops."""
        taken: list[dict[str, object]] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Overflowed):
                self._close()
                break
            taken.append(item)
        return taken

    def _close(self) -> None:
        self._closed = True
        self._registry.pop(self._queue, None)

    async def aclose(self) -> None:
        if not self._closed:
            self._close()
            # Ends a reader already waiting in __anext__.
            self._queue.put_nowait(_OVERFLOW)
