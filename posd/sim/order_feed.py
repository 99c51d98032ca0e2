"""The 배달서구 platform's side of the orders topic (mqtt.md), for `posd demo`, tests and the
bench: it publishes orders at QoS 1, sends acknowledgements, and reads what posd publishes on
`{topic}/{order_id}/status`.

A peer, not a friend: it publishes like the platform (QoS 1, not retained, whenever it likes,
posd running or not), sends the same order again if asked, and holds posd's statuses to the
contract: a status that is not JSON with the topic's order_id and one of the three states
lands in `bad_statuses` for the test to fail on; `retained` reads what a platform that
subscribes later gets (the broker forwards live messages without their retain flag).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self

import aiomqtt

__all__ = ["STATUS_STATES", "OrderFeed"]

STATUS_STATES = frozenset({"alerting", "acknowledged", "missed"})
_ids = itertools.count(1)


class OrderFeed:
    """`async with OrderFeed(host, port, merchant_id) as feed:` — connected and subscribed to
    the statuses (retained ones included) when the block starts."""

    def __init__(
        self,
        host: str,
        port: int,
        merchant_id: str = "M00000000000001",
        *,
        topic: str = "baedal/{merchant_id}/orders",
        protocol: Literal["3.1.1", "5"] = "5",
        client_id: str | None = None,
    ) -> None:
        self.topic = topic.replace("{merchant_id}", merchant_id)
        self._address = (host, port)
        self._protocol = (
            aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
        )
        self._client = aiomqtt.Client(
            host,
            port,
            identifier=client_id or f"baedal-platform-sim-{next(_ids)}",
            protocol=self._protocol,
        )
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        """Every status posd published, by order id, in arrival order."""
        self.bad_statuses: list[tuple[str, bytes]] = []
        self._changed = asyncio.Condition()
        self._collector: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.topic}/+/status", qos=1)
        self._collector = asyncio.create_task(self._collect())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._collector
        await self._client.__aexit__(exc_type, exc, tb)

    # ---- the platform's orders ---------------------------------------------------------------

    @staticmethod
    def order(
        order_id: str | None = None,
        *,
        items: list[Mapping[str, object]] | None = None,
        placed_at: dt.datetime | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """An order as the platform sends it; the total is the items' (no delivery fee)."""
        items = items or [
            {"name": "짜장면", "qty": 2, "price": 7_000},
            {"name": "탕수육 (소)", "qty": 1, "price": 16_000},
        ]
        placed = placed_at or dt.datetime.now(dt.UTC)
        return {
            "order_id": order_id or f"B{dt.datetime.now():%Y%m%d}-{next(_ids):05d}",
            "placed_at": placed.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "items": items,
            "total": sum(int(i["qty"]) * int(i["price"]) for i in items),  # type: ignore[call-overload]
            "requested_prep_min": 20,
            "note": note,
        }

    async def send(self, order: Mapping[str, object] | bytes) -> None:
        """Publishes an order (or any payload: the platform has bugs too) at QoS 1 and waits
        for the broker's PUBACK."""
        payload = order if isinstance(order, bytes) else json.dumps(order, ensure_ascii=False)
        await self._client.publish(self.topic, payload, qos=1)

    async def ack(self, order_id: str, payload: bytes = b"") -> None:
        """The shop accepted the order in the platform's own merchant app."""
        await self._client.publish(f"{self.topic}/{order_id}/ack", payload, qos=1)

    # ---- posd's statuses ---------------------------------------------------------------------

    async def _collect(self) -> None:
        async for message in self._client.messages:
            topic = str(message.topic)
            raw = message.payload if isinstance(message.payload, bytes) else b""
            order_id = topic[len(self.topic) + 1 : -len("/status")]
            try:
                status = json.loads(raw)
                ok = (
                    isinstance(status, dict)
                    and status.get("order_id") == order_id
                    and status.get("state") in STATUS_STATES
                )
            except ValueError:
                ok = False
            async with self._changed:
                if ok:
                    self.statuses.setdefault(order_id, []).append(status)
                else:
                    self.bad_statuses.append((topic, raw))
                self._changed.notify_all()

    async def retained(self, order_id: str, timeout_s: float = 10.0) -> dict[str, Any] | None:
        """The retained status of `order_id`, as a platform subscribing now would get it."""
        host, port = self._address
        async with aiomqtt.Client(
            host, port, identifier=f"baedal-platform-late-{next(_ids)}", protocol=self._protocol
        ) as late:
            await late.subscribe(f"{self.topic}/{order_id}/status", qos=1)
            try:
                async with asyncio.timeout(timeout_s):
                    async for message in late.messages:
                        if message.retain and isinstance(message.payload, bytes):
                            found: dict[str, Any] = json.loads(message.payload)
                            return found
            except TimeoutError:
                return None
        return None

    def state_of(self, order_id: str) -> str | None:
        seen = self.statuses.get(order_id)
        return str(seen[-1]["state"]) if seen else None

    async def wait_status(
        self, order_id: str, state: str, timeout_s: float = 15.0
    ) -> dict[str, Any]:
        """The latest status of `order_id` once it says `state`."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self.state_of(order_id) == state)
            return self.statuses[order_id][-1]
