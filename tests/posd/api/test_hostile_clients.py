"""Clients that do not play by HTTP's rules, on the real Unix socket: every answer is the JSON
error of local-api.md with a fitting status, nothing writes a traceback, idle and trickling
connections are closed, and the connection cap holds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import posd.api.connections
import posd.api.routes
from posd.api import MAX_EVENT_STREAMS
from tests.helpers.payment_service import WAIT_S, RunningApi, running_api

GOOD = {"amount": 10000, "method": "card", "idempotency_key": "sale-1", "benefit_plus": False}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with running_api(tmp_path) as running:
        yield running


@pytest.fixture
def api_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


async def until(predicate: Callable[[], object], timeout_s: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def raw(served: RunningApi, data: bytes, *, timeout_s: float = WAIT_S) -> bytes:
    """Everything the API answers to `data`, until it closes the connection."""
    reader, writer = await asyncio.open_unix_connection(str(served.socket_path))
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()


def parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


def assert_json_error(answer: bytes, status: int, code: str) -> None:
    got, headers, body = parse(answer)
    assert got == status, answer
    assert headers["content-type"].startswith("application/json")
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


# ---- what aiohttp's parser refuses -------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: posd\r\n\r\n", 431, "request_too_large"),
        (b"GET /v1/status HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431, "request_too_large"),
        (b"BREW /v1/status HTTP/1.1\r\nHost: posd\r\n\r\n", 501, "unknown_method"),
        (b"G\x01T /v1/status HTTP/1.1\r\n\r\n", 501, "unknown_method"),
        (
            b"POST /v1/payments HTTP/1.1\r\nHost: posd\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"POST /v1/payments HTTP/1.1\r\nHost: posd\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            "bad_request",
        ),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "bad_request"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 501, "unknown_method"),
    ],
    ids=[
        "long-line",
        "long-header",
        "unknown-method",
        "garbage-method",
        "cl-and-chunked",
        "bad-chunk",
        "http2",
        "tls",
    ],
)
async def test_requests_the_parser_refuses_get_a_json_error_and_no_traceback(
    served: RunningApi, api_log: pytest.LogCaptureFixture, data: bytes, status: int, code: str
) -> None:
    assert_json_error(await raw(served, data), status, code)
    no_traceback(api_log)


async def test_a_flood_of_bad_requests_is_logged_a_few_times_with_a_count(
    served: RunningApi, api_log: pytest.LogCaptureFixture
) -> None:
    for _ in range(40):
        await raw(served, b"BREW / HTTP/1.1\r\n\r\n")
    refused = [r for r in api_log.records if "bad HTTP request refused" in r.getMessage()]
    assert len(refused) == posd.api.connections.BAD_REQUEST_LOG_BURST
    no_traceback(api_log)


# ---- bodies --------------------------------------------------------------------------------


async def test_a_lone_surrogate_in_a_key_is_a_400_naming_it_escaped(
    served: RunningApi, api_log: pytest.LogCaptureFixture
) -> None:
    body = b'{"amount": 1000, "\\ud800x": 1}'
    answer = await raw(
        served,
        b"POST /v1/payments HTTP/1.1\r\nHost: posd\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert_json_error(answer, 400, "invalid_request")
    assert parse(answer)[2]["error"]["field"] == "\\ud800x"
    no_traceback(api_log)


async def test_a_client_that_drops_mid_body_costs_no_500_and_no_traceback(
    served: RunningApi, api_log: pytest.LogCaptureFixture
) -> None:
    _, writer = await asyncio.open_unix_connection(str(served.socket_path))
    writer.write(
        b"POST /v1/payments HTTP/1.1\r\nHost: posd\r\nContent-Type: application/json\r\n"
        b'Content-Length: 500\r\n\r\n{"amount": 10'
    )
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    await until(lambda: any("POST /v1/payments" in r.getMessage() for r in api_log.records))
    [line] = [r.getMessage() for r in api_log.records if "POST /v1/payments" in r.getMessage()]
    assert " 400 " in line
    no_traceback(api_log)
    assert served.service.payments == {}


async def test_a_trickled_body_is_answered_408_and_its_connection_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(posd.api.routes, "BODY_TIMEOUT_S", 0.3)
    async with running_api(tmp_path) as served:
        reader, writer = await asyncio.open_unix_connection(str(served.socket_path))
        try:
            writer.write(
                b"POST /v1/payments HTTP/1.1\r\nHost: posd\r\nContent-Type: application/json\r\n"
                b"Content-Length: 90\r\n\r\n{"
            )
            answer = await asyncio.wait_for(reader.read(), WAIT_S)
        finally:
            writer.close()
        assert_json_error(answer, 408, "request_timeout")


async def test_a_compressed_body_is_refused(served: RunningApi) -> None:
    async with (
        served.session() as session,
        session.post(
            "/v1/payments",
            data=b"\x1f\x8b\x08\x00",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        ) as response,
    ):
        assert response.status == 415
        assert (await response.json())["error"]["code"] == "unsupported_media_type"


# ---- idle and trickling connections ----------------------------------------------------------


async def test_idle_and_trickling_connections_are_closed_after_the_request_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(posd.api.connections, "REQUEST_TIMEOUT_S", 0.3)
    async with running_api(tmp_path) as served:
        idle_reader, idle = await asyncio.open_unix_connection(str(served.socket_path))
        trickle_reader, trickle = await asyncio.open_unix_connection(str(served.socket_path))

        async def dribble() -> None:
            for byte in b"GET /v1/status HTTP/1.1\r\nHost: posd\r\nX-Slow: " + b"a" * 100:
                trickle.write(bytes([byte]))
                await asyncio.sleep(0.02)

        dribbling = asyncio.create_task(dribble())
        try:
            assert await asyncio.wait_for(idle_reader.read(), WAIT_S) == b""
            assert await asyncio.wait_for(trickle_reader.read(), WAIT_S) == b""
        finally:
            dribbling.cancel()
            idle.close()
            trickle.close()
        assert served.api.listeners()["connections"] == 0


async def test_a_keep_alive_connection_is_closed_after_the_request_timeout_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(posd.api.connections, "REQUEST_TIMEOUT_S", 0.3)
    async with running_api(tmp_path) as served:
        reader, writer = await asyncio.open_unix_connection(str(served.socket_path))
        try:
            writer.write(b"GET /v1/status HTTP/1.1\r\nHost: posd\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(parse(head)[1]["content-length"])
            await reader.readexactly(length)
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
        finally:
            writer.close()


# ---- the connection cap ----------------------------------------------------------------------


async def test_at_the_cap_the_longest_idle_connection_gives_way_and_the_cap_is_logged_once(
    tmp_path: Path, api_log: pytest.LogCaptureFixture
) -> None:
    async with running_api(tmp_path, max_connections=4) as served:
        idle = [await asyncio.open_unix_connection(str(served.socket_path)) for _ in range(4)]
        await until(lambda: served.api.listeners()["connections"] == 4)
        for _ in range(10):
            async with served.session() as session, session.get("/v1/status") as response:
                assert response.status == 200
        # The oldest idle ones were closed to make room.
        assert await asyncio.wait_for(idle[0][0].read(), WAIT_S) == b""
        assert served.api.listeners()["connections"] <= 4
        for _, writer in idle:
            writer.close()
    cap_lines = [r for r in api_log.records if "the most it takes" in r.getMessage()]
    assert len(cap_lines) == 1
    assert "at most 4 connections at once" in api_log.text
    no_traceback(api_log)


async def test_at_the_cap_with_every_connection_busy_a_new_one_waits_for_a_free_one(
    tmp_path: Path,
) -> None:
    cap = 3
    async with (
        running_api(tmp_path, max_connections=cap) as served,
        contextlib.AsyncExitStack() as stack,
    ):
        streams = []
        for _ in range(cap):
            session = await stack.enter_async_context(served.session())
            stream = await stack.enter_async_context(session.get("/v1/events"))
            await stream.content.readuntil(b"\n\n")
            streams.append((session, stream))
        waiting = asyncio.create_task(_status(served))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        streams[0][1].close()
        assert await asyncio.wait_for(waiting, WAIT_S) == 200


async def _status(served: RunningApi) -> int:
    async with served.session() as session, session.get("/v1/status") as response:
        return response.status


async def test_accept_errors_are_logged_once_a_minute_with_a_count_and_recovered_from(
    served: RunningApi, api_log: pytest.LogCaptureFixture
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.setblocking(False)
    try:
        # Every descriptor taken but the client's: posd's accept fails with EMFILE, for real.
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
        with contextlib.suppress(OSError):
            while True:
                fillers.append(os.dup(0))
        with contextlib.suppress(BlockingIOError):
            client.connect(str(served.socket_path))
        connections = served.api._connections
        assert connections is not None
        await until(lambda: connections.accept_errors >= 10)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    errors = [r for r in api_log.records if "accepting a connection failed" in r.getMessage()]
    assert len(errors) == 1
    assert "Too many open files" in errors[0].getMessage()
    reader, writer = await asyncio.open_unix_connection(sock=client)
    try:
        writer.write(b"GET /v1/status HTTP/1.1\r\nHost: posd\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), WAIT_S)).startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


# ---- event streams -------------------------------------------------------------------------


async def test_a_closed_event_stream_frees_its_slot_at_once(served: RunningApi) -> None:
    async with contextlib.AsyncExitStack() as stack:
        streams = []
        for _ in range(MAX_EVENT_STREAMS):
            session = await stack.enter_async_context(served.session())
            stream = await stack.enter_async_context(session.get("/v1/events"))
            await stream.content.readuntil(b"\n\n")
            streams.append(session)
        await streams[0].close()
        # The heartbeat is 15 s away: the slot is freed by the connection's loss itself.
        await until(lambda: served.service.subscribers < MAX_EVENT_STREAMS, timeout_s=2)
        async with served.session() as session, session.get("/v1/events") as again:
            assert again.status == 200


async def test_head_of_the_event_stream_sends_no_body_and_takes_no_slot(
    served: RunningApi,
) -> None:
    for _ in range(MAX_EVENT_STREAMS + 2):
        answer = await raw(
            served, b"HEAD /v1/events HTTP/1.1\r\nHost: posd\r\nConnection: close\r\n\r\n"
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"text/event-stream" in head
        assert body == b""
    assert served.service.subscribers == 0
    async with served.session() as session, session.get("/v1/events") as stream:
        assert stream.status == 200


# ---- TCP listener ----------------------------------------------------------------------------


async def test_a_taken_tcp_port_leaves_the_unix_socket_serving_and_says_so(
    tmp_path: Path, api_log: pytest.LogCaptureFixture
) -> None:
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    token = "tcp-taken-test-token-0123456789"
    try:
        async with running_api(tmp_path, tcp_port=port, token=token, tcp_retry_s=0.1) as served:
            async with served.session() as session, session.get("/v1/status") as response:
                assert response.status == 200
                tcp = (await response.json())["api"]["tcp"]
            assert tcp["state"] == "error" and tcp["port"] == port
            assert f"127.0.0.1:{port}" in tcp["last_error"] and "in use" in tcp["last_error"]
            assert "the Unix socket" in api_log.text
            holder.close()
            await until(
                lambda: served.api.listeners()["tcp"]["state"] == "listening"  # type: ignore[index]
            )
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/v1/status", headers=headers) as response,
            ):
                assert response.status == 200
    finally:
        holder.close()
    refused = f"cannot listen on 127.0.0.1:{port}"
    assert len([r for r in api_log.records if refused in r.getMessage()]) == 1
