"""Fan-out of state changes to any number of subscribers (the API's SSE streams, later the
monitoring link). Event types: "payment" (a payment changed), "order" (an order changed, or
the shop went deaf or hearing), "error" (bad input from a peer, e.g. an order that does not
parse), "device" (a device's state changed). Each event is `{"seq", "type", <key>: body}`.

Each subscriber has a bounded queue: one too slow to keep up is ended, never allowed to hold
memory without bound, and never slows the payment flow down.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

SUBSCRIBER_BACKLOG = 1000


class _Overflowed:
    pass


_OVERFLOW = _Overflowed()


class EventHub:
    def __init__(self, backlog: int = SUBSCRIBER_BACKLOG) -> None:
        self._backlog = backlog
        self._seq = itertools.count(1)
        self._subscribers: set[asyncio.Queue[dict[str, object] | _Overflowed]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event_type: str, key: str, body: dict[str, object]) -> None:
        event: dict[str, object] = {"seq": next(self._seq), "type": event_type, key: body}
        for queue in list(self._subscribers):
            if queue.qsize() >= self._backlog:
                # The last slot is kept for the marker that ends this subscriber.
                self._subscribers.discard(queue)
                queue.put_nowait(_OVERFLOW)
            else:
                queue.put_nowait(event)

    def subscribe(self) -> Subscription:
        """Registered at once, so nothing published after this call is missed."""
        queue: asyncio.Queue[dict[str, object] | _Overflowed] = asyncio.Queue()
        self._subscribers.add(queue)
        return Subscription(self._subscribers, queue)


class Subscription(AsyncIterator[dict[str, object]]):
    def __init__(
        self,
        registry: set[asyncio.Queue[dict[str, object] | _Overflowed]],
        queue: asyncio.Queue[dict[str, object] | _Overflowed],
    ) -> None:
        self._registry = registry
        self._queue = queue
        self._closed = False

    async def __anext__(self) -> dict[str, object]:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _Overflowed):
            self._closed = True
            self._registry.discard(self._queue)
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._registry.discard(self._queue)
            # Ends a reader already waiting in __anext__.
            self._queue.put_nowait(_OVERFLOW)
