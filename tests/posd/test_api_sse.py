"""GET /v1/events: Server-Sent Events over the real Unix socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from tests.posd.test_api_support import WAIT_S, running_api

GOOD = {"amount": 3000, "method": "any", "idempotency_key": "sse-1"}


async def read_block(response: aiohttp.ClientResponse) -> list[str]:
    """One SSE block: the lines up to the blank line that ends it."""
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(response.content.readline(), WAIT_S)
        assert raw, "the stream ended"
        line = raw.decode().rstrip("\n")
        if line == "":
            return lines
        lines.append(line)


async def read_event(response: aiohttp.ClientResponse) -> tuple[int, dict[str, object]]:
    """The next event, skipping comment blocks (connected, heartbeat)."""
    while True:
        block = await read_block(response)
        if all(line.startswith(":") for line in block):
            continue
        fields = dict(line.split(": ", 1) for line in block)
        assert set(fields) == {"id", "data"}
        return int(fields["id"]), json.loads(fields["data"])


async def test_events_stream_every_state_change_with_ids(tmp_path: Path) -> None:
    async with running_api(tmp_path) as served, served.session() as session:
        async with session.get("/v1/events") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert await read_block(stream) == [": connected"]
            async with session.post("/v1/payments", json=GOOD) as created:
                payment_id = (await created.json())["payment_id"]
            async with session.post(f"/v1/payments/{payment_id}/cancel") as cancelled:
                assert cancelled.status == 200
            first_id, first = await read_event(stream)
            second_id, second = await read_event(stream)
        assert second_id == first_id + 1
        assert first["type"] == "payment"
        assert [first["payment"]["state"], second["payment"]["state"]] == [  # type: ignore[index]
            "waiting_for_card",
            "cancelled",
        ]


async def test_heartbeat_comments_flow_while_idle(tmp_path: Path) -> None:
    async with (
        running_api(tmp_path, heartbeat_s=0.02) as served,
        served.session() as session,
        session.get("/v1/events") as stream,
    ):
        assert await read_block(stream) == [": connected"]
        assert await read_block(stream) == [": heartbeat"]
        assert await read_block(stream) == [": heartbeat"]


async def test_a_client_that_goes_away_is_unsubscribed(tmp_path: Path) -> None:
    async with running_api(tmp_path, heartbeat_s=0.02) as served:
        async with served.session() as session, session.get("/v1/events") as stream:
            assert await read_block(stream) == [": connected"]
            assert served.service.subscribers == 1
        # The next heartbeat write fails on the closed connection and ends the handler.
        await asyncio.wait_for(served.service.unsubscribed.wait(), WAIT_S)
        assert served.service.subscribers == 0


async def test_stopping_the_api_ends_open_streams(tmp_path: Path) -> None:
    async with running_api(tmp_path) as served, served.session() as session:
        async with session.get("/v1/events") as stream:
            assert await read_block(stream) == [": connected"]
            await served.stop()
            rest = await asyncio.wait_for(stream.content.read(), WAIT_S)
        assert rest == b""
        assert served.service.subscribers == 0


async def test_a_failing_subscription_ends_its_stream_only(tmp_path: Path) -> None:
    async with running_api(tmp_path) as served, served.session() as session:
        async with session.get("/v1/events") as stream:
            assert await read_block(stream) == [": connected"]
            served.service.break_subscriptions(RuntimeError("event source broke"))
            rest = await asyncio.wait_for(stream.content.read(), WAIT_S)
        assert rest == b""
        async with session.get("/v1/status") as response:
            assert response.status == 200
