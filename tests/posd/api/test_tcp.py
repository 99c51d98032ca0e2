"""The optional loopback TCP listener: bearer token required, loopback only."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from posd.api import LocalApi
from tests.helpers.payment_service import MemoryPaymentService, RunningApi, running_api

TOKEN = "tcp-token-6b1d0c2e9a"
UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "unauthorized"}}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with running_api(tmp_path, tcp_port=0, token=TOKEN) as running:
        yield running


async def tcp_call(
    served: RunningApi, method: str, path: str, authorization: str | None, json_body: Any = None
) -> tuple[int, Any]:
    port = served.api.tcp_bound_port
    assert port is not None
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"http://127.0.0.1:{port}{path}", headers=headers, json=json_body
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_the_right_token_is_served(served: RunningApi) -> None:
    status, body = await tcp_call(served, "GET", "/v1/status", f"Bearer {TOKEN}")
    assert status == 200
    assert body["terminal_id"] == "T0000001"
    status, body = await tcp_call(
        served,
        "POST",
        "/v1/payments",
        f"bearer {TOKEN}",
        {"amount": 100, "method": "qr", "idempotency_key": "t1"},
    )
    assert status == 202


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        f"Token {TOKEN}",
    ],
    ids=["missing", "empty", "no-token", "blank", "longer", "shorter", "basic", "bare", "scheme"],
)
async def test_missing_or_wrong_token_is_401_and_nothing_else(
    served: RunningApi, authorization: str | None
) -> None:
    status, body = await tcp_call(
        served,
        "POST",
        "/v1/payments",
        authorization,
        {"amount": 100, "method": "qr", "idempotency_key": "t1"},
    )
    assert (status, body) == (401, UNAUTHORIZED)
    assert served.service.payments == {}


async def test_unknown_route_without_token_is_401_not_404(served: RunningApi) -> None:
    assert await tcp_call(served, "GET", "/v1/nothing", None) == (401, UNAUTHORIZED)


async def test_unix_socket_needs_no_token(served: RunningApi) -> None:
    async with served.session() as session, session.get("/v1/status") as response:
        assert response.status == 200


def _non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # No packet is sent: connecting a UDP socket only picks the outgoing interface.
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


async def test_listens_on_loopback_only(served: RunningApi) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    port = served.api.tcp_bound_port
    assert port is not None
    with pytest.raises(OSError):
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
        writer.close()


def test_tcp_without_a_token_is_refused_at_construction(tmp_path: Path) -> None:
    service = MemoryPaymentService()
    for token in (None, ""):
        with pytest.raises(ValueError, match="token"):
            LocalApi(service, tmp_path / "api.sock", state=service.status, tcp_port=0, token=token)
