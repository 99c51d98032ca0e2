"""posd.api.ApiClient against the real API on a real Unix socket."""

from __future__ import annotations

import asyncio
import datetime
import socket
from pathlib import Path

import pytest

from posd.api import ApiClient, ApiRequestError, ApiUnavailable
from tests.helpers.payment_service import WAIT_S, running_api


async def test_payment_calls_round_trip(tmp_path: Path) -> None:
    async with running_api(tmp_path) as served, ApiClient(served.socket_path) as api:
        created = await api.create_payment(5000, "card", "c-1", benefit_plus=True)
        assert created["state"] == "waiting_for_card"
        assert await api.payment(created["payment_id"]) == created
        cancelled = await api.cancel(created["payment_id"])
        assert cancelled["state"] == "cancelled"
        second = await api.create_payment(8000, "qr", "c-2")
        served.service.set_state(second["payment_id"], "approved")
        refund = await api.refund(second["payment_id"], 3000, "r-1")
        assert refund["original_payment_id"] == second["payment_id"]
        assert (await api.status())["terminal_id"] == "T0000001"
        assert (await api.totals(datetime.date(2026, 1, 2)))["date"] == "2026-01-02"
        assert await api.saf() == []
        assert await api.saf_flush() == {"forwarded": 0, "pending": 0}


async def test_error_answers_raise_with_code_and_field(tmp_path: Path) -> None:
    async with running_api(tmp_path) as served, ApiClient(served.socket_path) as api:
        with pytest.raises(ApiRequestError) as bad:
            await api.create_payment(0, "card", "c-1")
        assert (bad.value.status, bad.value.code, bad.value.field) == (
            400,
            "invalid_request",
            "amount",
        )
        with pytest.raises(ApiRequestError) as unknown:
            await api.payment("nope")
        assert (unknown.value.status, unknown.value.code) == (404, "unknown_payment")


async def test_events_context_is_subscribed_on_entry(tmp_path: Path) -> None:
    async with running_api(tmp_path) as served, ApiClient(served.socket_path) as api:
        async with api.events() as stream:
            created = await api.create_payment(1000, "any", "e-1")
            event = await asyncio.wait_for(anext(stream), WAIT_S)
        assert event["payment"]["payment_id"] == created["payment_id"]


async def test_absent_socket_is_unavailable(tmp_path: Path) -> None:
    async with ApiClient(tmp_path / "absent.sock") as api:
        with pytest.raises(ApiUnavailable):
            await api.status()


async def test_stale_socket_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    async with ApiClient(path) as api:
        with pytest.raises(ApiUnavailable):
            await api.status()
        with pytest.raises(ApiUnavailable):
            async with api.events():
                pass
