"""GET /v1/events: Server-Sent Events over the real Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp

from posd.api import MAX_EVENT_STREAMS
from tests.helpers.payment_service import WAIT_S, MemoryPayment, running_api

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


async def test_a_client_that_stops_reading_has_its_stream_ended(tmp_path: Path) -> None:
    async with running_api(tmp_path, heartbeat_s=0.05) as served:
        service = served.service
        reader, writer = await asyncio.open_unix_connection(str(served.socket_path))
        try:
            writer.write(b"GET /v1/events HTTP/1.1\r\nHost: posd\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b": connected\n\n"), WAIT_S)
            assert service.subscribers == 1
            service.payments["big"] = MemoryPayment("big", "approved", 1, "x" * 8000)
            # The client, still connected, reads no more: the writes back up until one times
            # out and the stream is ended.
            async with asyncio.timeout(WAIT_S):
                while service.subscribers:
                    for _ in range(20):
                        service.set_state("big", "approved")
                    await asyncio.sleep(0.01)
            assert not writer.is_closing()
        finally:
            writer.close()
        async with served.session() as session, session.get("/v1/status") as status:
            assert status.status == 200


async def test_event_streams_are_capped_across_both_listeners(tmp_path: Path) -> None:
    token = "sse-cap-test-token-0123456789"
    async with (
        running_api(tmp_path, tcp_port=0, token=token, heartbeat_s=0.05) as served,
        served.session() as session,
        contextlib.AsyncExitStack() as streams,
    ):
        opened = []
        for _ in range(MAX_EVENT_STREAMS):
            stream = await streams.enter_async_context(session.get("/v1/events"))
            assert await read_block(stream) == [": connected"]
            opened.append(stream)
        async with session.get("/v1/events") as refused:
            assert refused.status == 503
            body = await refused.json()
        assert body["error"]["code"] == "too_many_streams"
        port = served.api.tcp_bound_port
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as tcp,
            tcp.get(f"http://127.0.0.1:{port}/v1/events", headers=headers) as over_tcp,
        ):
            assert over_tcp.status == 503
        assert served.service.subscribers == MAX_EVENT_STREAMS
        served.service.unsubscribed.clear()
        opened[0].close()  # noticed at its next heartbeat write
        await asyncio.wait_for(served.service.unsubscribed.wait(), WAIT_S)
        assert served.service.subscribers == MAX_EVENT_STREAMS - 1
        async with session.get("/v1/events") as again:
            assert again.status == 200
            assert await read_block(again) == [": connected"]
