"""The local API over the real PaymentService: the whole daemon on simulated devices and the
reference ledger, driven only through HTTP on the Unix socket."""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from pathlib import Path
from typing import Any

import pytest

from posd.api import ApiClient, ApiRequestError
from posd.cli.status import render_status
from posd.sim import GOOD_QR_ACCOUNT
from tests.helpers.daemon import RunningDaemon, running_daemon
from tests.helpers.spec_objects import PAYMENT_OBJECT_KEYS, STATE_OBJECT_KEYS

pytestmark = pytest.mark.timeout(60)

WAIT_S = 10.0


async def next_payment_event(stream: Any) -> dict[str, Any]:
    event: dict[str, Any] = await asyncio.wait_for(anext(stream), WAIT_S)
    assert event["type"] == "payment"
    return event


async def test_a_qr_payment_seen_through_the_event_stream(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path) as d,
        ApiClient(d.config.api.socket) as api,
        api.events() as stream,
    ):
        token = d.issuer.valid(GOOD_QR_ACCOUNT)
        created = await api.create_payment(5_000, "qr", "real-qr-1")
        assert created["state"] == "waiting_for_card"
        assert created.keys() >= PAYMENT_OBJECT_KEYS
        await d.scanner.scan(token)
        events = [await next_payment_event(stream) for _ in range(3)]
        got = await api.payment(created["payment_id"])
    assert [e["payment"]["state"] for e in events] == [
        "waiting_for_card",
        "authorizing",
        "approved",
    ]
    assert [e["seq"] for e in events] == list(range(events[0]["seq"], events[0]["seq"] + 3))
    assert {e["payment"]["payment_id"] for e in events} == {created["payment_id"]}
    assert got == events[-1]["payment"]
    assert got["account_last4"] == GOOD_QR_ACCOUNT[-4:]
    # Neither the account number nor the QR token ever reaches the POS side.
    for event in events:
        text = repr(event)
        assert GOOD_QR_ACCOUNT not in text and token not in text


async def test_idempotency_conflicts_and_bad_input_on_the_real_service(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d, ApiClient(d.config.api.socket) as api:
        first = await api.create_payment(3_000, "qr", "real-key-1")
        again = await api.create_payment(3_000, "qr", "real-key-1")
        assert again["payment_id"] == first["payment_id"]
        with pytest.raises(ApiRequestError) as reused:
            await api.create_payment(3_001, "qr", "real-key-1")
        assert (reused.value.status, reused.value.code) == (409, "idempotency_key_reused")
        with pytest.raises(ApiRequestError) as busy:
            await api.create_payment(3_000, "qr", "real-key-2")
        assert (busy.value.status, busy.value.code) == (409, "payment_in_progress")
        cancelled = await api.cancel(first["payment_id"])
        assert cancelled["state"] == "cancelled"
        # A cancel repeated answers with the cancelled payment, never "too late".
        assert (await api.cancel(first["payment_id"]))["state"] == "cancelled"
        # The same key after the cancel is still that one payment, never a second.
        assert (await api.create_payment(3_000, "qr", "real-key-1"))["state"] == "cancelled"

        # A card payment with no reader configured: the device is not there.
        with pytest.raises(ApiRequestError) as no_device:
            await api.create_payment(3_000, "card", "real-key-4")
        assert (no_device.value.status, no_device.value.code) == (503, "device_not_ready")

        for body, field in (
            ({"amount": 0, "method": "qr", "idempotency_key": "bad-1"}, "amount"),
            ({"amount": 100, "method": "cash", "idempotency_key": "bad-2"}, "method"),
            ({"amount": 100, "method": "qr", "idempotency_key": ""}, "idempotency_key"),
        ):
            status, answer = await d.request("POST", "/v1/payments", body)
            assert (status, answer["error"]["field"]) == (400, field)
        with pytest.raises(ApiRequestError) as unknown:
            await api.payment("p_does_not_exist")
        assert (unknown.value.status, unknown.value.code) == (404, "unknown_payment")
        # Nothing of the refused requests holds the scanner: a new payment starts at once.
        assert (await api.create_payment(1_000, "qr", "real-key-5"))["state"] == "waiting_for_card"


async def _approved_qr(d: RunningDaemon, api: ApiClient, amount: int) -> dict[str, Any]:
    created = await api.create_payment(amount, "qr", f"approved-{amount}")
    await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
    return await d.wait_final(created["payment_id"])


async def test_refund_status_totals_and_saf_on_the_real_service(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d, ApiClient(d.config.api.socket) as api:
        paid = await _approved_qr(d, api, 8_000)
        assert paid["state"] == "approved"
        refund = await api.refund(paid["payment_id"], 3_000, "refund-1")
        assert refund["original_payment_id"] == paid["payment_id"]
        refund = await d.wait_final(refund["payment_id"])
        assert (refund["state"], refund["amount"]) == ("approved", 3_000)
        assert (await api.refund(paid["payment_id"], 3_000, "refund-1"))["payment_id"] == (
            refund["payment_id"]
        )
        with pytest.raises(ApiRequestError) as over:
            await api.refund(paid["payment_id"], 5_001, "refund-2")
        assert (over.value.status, over.value.field) == (400, "amount")

        state = await api.status()
        assert state.keys() >= STATE_OBJECT_KEYS
        assert state["ledger"]["link"] == "up"
        assert state["devices"]["qr_scanner"]["state"] == "ready"
        shown = render_status(state)
        assert "  ledger       up" in shown
        assert re.search(r"^  today +\d+ approved, \d+ declined, [\d,]+ won$", shown, re.M)
        totals = await api.totals(datetime.date.today())
        assert totals["date"] == datetime.date.today().isoformat()
        assert await api.saf() == []
        flushed = await api.saf_flush()
        assert flushed["pending"] == 0


@pytest.mark.parametrize("tz", ["UTC", "Asia/Seoul", "America/Los_Angeles"])
async def test_totals_at_the_ends_of_the_calendar_are_empty_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tz: str
) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        async with running_daemon(tmp_path) as d:
            for date in ("0001-01-01", "0001-01-02", "9999-12-30", "9999-12-31"):
                status, body = await d.request("GET", f"/v1/totals?date={date}")
                assert status == 200, body
                assert body["date"] == date and body["approved"]["count"] == 0
    finally:
        monkeypatch.undo()
        time.tzset()
