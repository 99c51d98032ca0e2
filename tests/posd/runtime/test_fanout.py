from __future__ import annotations

import asyncio

import pytest

from posd.runtime import EventHub


async def test_subscription_sees_what_follows_its_creation_in_order() -> None:
    hub = EventHub()
    hub.publish("payment", "payment", {"n": 0})  # before: not seen
    sub = hub.subscribe()
    hub.publish("payment", "payment", {"n": 1})
    hub.publish("payment", "payment", {"n": 2})
    first = await anext(sub)
    second = await anext(sub)
    assert first == {"seq": 2, "type": "payment", "payment": {"n": 1}}
    assert second["seq"] == 3
    await sub.aclose()
    assert hub.subscribers == 0


async def test_each_subscriber_gets_every_event() -> None:
    hub = EventHub()
    a, b = hub.subscribe(), hub.subscribe()
    hub.publish("payment", "payment", {"n": 1})
    assert (await anext(a))["payment"] == (await anext(b))["payment"] == {"n": 1}


async def test_slow_subscriber_is_ended_not_buffered_forever() -> None:
    hub = EventHub(backlog=3)
    slow = hub.subscribe()
    fast = hub.subscribe()
    for n in range(5):
        hub.publish("payment", "payment", {"n": n})
        assert (await anext(fast))["payment"] == {"n": n}
    assert hub.subscribers == 1
    got = [event async for event in slow]
    assert [e["payment"] for e in got] == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_closed_subscription_stops_and_unregisters() -> None:
    hub = EventHub()
    sub = hub.subscribe()
    waiter = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)
    await sub.aclose()
    hub.publish("payment", "payment", {"n": 1})
    assert hub.subscribers == 0
    async with asyncio.timeout(2):
        with pytest.raises(StopAsyncIteration):
            await waiter  # a reader already waiting is ended too
    assert [e async for e in sub] == []


async def test_a_subscriber_of_some_kinds_gets_only_those() -> None:
    hub = EventHub()
    stream = hub.subscribe(kinds=("payment", "order"))
    everything = hub.subscribe()
    hub.publish("device", "device", {"device": "card_reader"})
    hub.publish("order", "order", {"order_id": "o-1"})
    assert [e["type"] for e in stream.pending()] == ["order"]
    assert [e["type"] for e in everything.pending()] == ["device", "order"]
    assert stream.pending() == []  # taken once
