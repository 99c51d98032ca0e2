"""The local API over a real Unix socket: endpoints, validation, error mapping, socket file."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from posd.api import MAX_BODY_BYTES, ApiStartError, LocalApi, bind_unix_socket
from posd.payments import MAX_AMOUNT
from tests.helpers.payment_service import (
    MemoryPaymentService,
    RunningApi,
    running_api,
    start_api,
)

GOOD = {"amount": 10000, "method": "card", "idempotency_key": "sale-1", "benefit_plus": False}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with running_api(tmp_path) as running:
        yield running


async def call(
    served: RunningApi,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    data: bytes | None = None,
    content_type: str | None = None,
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": content_type} if content_type else None
    async with (
        served.session() as session,
        session.request(method, path, json=json_body, data=data, headers=headers) as response,
    ):
        body = await response.json(content_type=None)
        return response.status, body, dict(response.headers)


def assert_error(body: Any, code: str, field: str | None = None) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert error["field"] == field
        assert field in error["message"]


# ---- POST /v1/payments ------------------------------------------------------------------------


async def test_create_answers_202_with_the_payment(served: RunningApi) -> None:
    status, body, headers = await call(served, "POST", "/v1/payments", json_body=GOOD)
    assert status == 202
    assert headers["Content-Type"].startswith("application/json")
    assert body["state"] == "waiting_for_card"
    assert body["amount"] == 10000 and body["method"] == "card"
    assert body["payment_id"] in served.service.payments


async def test_benefit_plus_defaults_to_false_and_true_is_passed_on(served: RunningApi) -> None:
    without = {k: v for k, v in GOOD.items() if k != "benefit_plus"}
    status, body, _ = await call(served, "POST", "/v1/payments", json_body=without)
    assert (status, body["discount"]) == (202, 0)
    served.service.set_state(body["payment_id"], "approved")
    plus = GOOD | {"idempotency_key": "sale-2", "benefit_plus": True}
    status, body, _ = await call(served, "POST", "/v1/payments", json_body=plus)
    assert (status, body["discount"], body["charged"]) == (202, 500, 9500)


async def test_same_idempotency_key_returns_the_same_payment(served: RunningApi) -> None:
    _, first, _ = await call(served, "POST", "/v1/payments", json_body=GOOD)
    status, again, _ = await call(served, "POST", "/v1/payments", json_body=GOOD)
    assert status == 202
    assert again["payment_id"] == first["payment_id"]
    assert len(served.service.payments) == 1


async def test_idempotency_key_with_other_parameters_is_409(served: RunningApi) -> None:
    await call(served, "POST", "/v1/payments", json_body=GOOD)
    status, body, _ = await call(served, "POST", "/v1/payments", json_body=GOOD | {"amount": 20000})
    assert status == 409
    assert_error(body, "idempotency_key_reused")
    assert len(served.service.payments) == 1


async def test_second_payment_while_one_waits_is_409(served: RunningApi) -> None:
    await call(served, "POST", "/v1/payments", json_body=GOOD)
    status, body, _ = await call(
        served, "POST", "/v1/payments", json_body=GOOD | {"idempotency_key": "sale-2"}
    )
    assert status == 409
    assert_error(body, "payment_in_progress")


async def test_reader_not_ready_is_503(served: RunningApi) -> None:
    served.service.reader_ready = False
    status, body, _ = await call(served, "POST", "/v1/payments", json_body=GOOD)
    assert status == 503
    assert_error(body, "device_not_ready")


def _without(field: str) -> dict[str, object]:
    return {k: v for k, v in GOOD.items() if k != field}


BAD_FIELDS: list[tuple[str, dict[str, object], str]] = [
    ("amount missing", _without("amount"), "amount"),
    ("amount string", GOOD | {"amount": "10000"}, "amount"),
    ("amount decimal", GOOD | {"amount": 10000.0}, "amount"),
    ("amount fraction", GOOD | {"amount": 99.5}, "amount"),
    ("amount bool", GOOD | {"amount": True}, "amount"),
    ("amount null", GOOD | {"amount": None}, "amount"),
    ("amount zero", GOOD | {"amount": 0}, "amount"),
    ("amount negative", GOOD | {"amount": -100}, "amount"),
    ("amount over max", GOOD | {"amount": MAX_AMOUNT + 1}, "amount"),
    ("amount huge", GOOD | {"amount": 10**40}, "amount"),
    ("method missing", _without("method"), "method"),
    ("method unknown", GOOD | {"method": "cash"}, "method"),
    ("method case", GOOD | {"method": "CARD"}, "method"),
    ("method number", GOOD | {"method": 1}, "method"),
    ("key missing", _without("idempotency_key"), "idempotency_key"),
    ("key null", GOOD | {"idempotency_key": None}, "idempotency_key"),
    ("key empty", GOOD | {"idempotency_key": ""}, "idempotency_key"),
    ("key too long", GOOD | {"idempotency_key": "k" * 65}, "idempotency_key"),
    ("key space", GOOD | {"idempotency_key": "sale 1"}, "idempotency_key"),
    ("key control", GOOD | {"idempotency_key": "sale\n1"}, "idempotency_key"),
    ("key non-ascii", GOOD | {"idempotency_key": "판매-1"}, "idempotency_key"),
    ("key number", GOOD | {"idempotency_key": 123}, "idempotency_key"),
    ("benefit_plus string", GOOD | {"benefit_plus": "yes"}, "benefit_plus"),
    ("benefit_plus number", GOOD | {"benefit_plus": 1}, "benefit_plus"),
    ("benefit_plus null", GOOD | {"benefit_plus": None}, "benefit_plus"),
    ("unknown field", GOOD | {"tip": 100}, "tip"),
]


@pytest.mark.parametrize(
    ("body", "field"), [(b, f) for _, b, f in BAD_FIELDS], ids=[name for name, _, _ in BAD_FIELDS]
)
async def test_each_bad_field_is_400_naming_it(
    served: RunningApi, body: dict[str, object], field: str
) -> None:
    status, answer, _ = await call(served, "POST", "/v1/payments", json_body=body)
    assert status == 400
    assert_error(answer, "invalid_request", field)
    assert served.service.payments == {}


async def test_key_of_64_visible_characters_is_accepted(served: RunningApi) -> None:
    key = "".join(chr(c) for c in range(0x21, 0x61))
    assert len(key) == 64
    status, _, _ = await call(
        served, "POST", "/v1/payments", json_body=GOOD | {"idempotency_key": key}
    )
    assert status == 202


BAD_BODIES: list[tuple[str, bytes | None, str | None, int, str, str | None]] = [
    ("no body", None, None, 400, "invalid_request", "amount"),
    ("empty object", b"{}", "application/json", 400, "invalid_request", "amount"),
    ("not json", b"amount=1000", "application/json", 400, "invalid_json", None),
    ("truncated json", b'{"amount": 1', "application/json", 400, "invalid_json", None),
    ("not utf-8", b'{"amount": "\xff"}', "application/json", 400, "invalid_json", None),
    ("array", b"[1, 2]", "application/json", 400, "invalid_json", None),
    ("string", b'"pay"', "application/json", 400, "invalid_json", None),
    ("null", b"null", "application/json", 400, "invalid_json", None),
    ("NaN amount", b'{"amount": NaN}', "application/json", 400, "invalid_json", None),
    (
        "duplicate key",
        b'{"amount": 1, "amount": 2, "method": "card", "idempotency_key": "k"}',
        "application/json",
        400,
        "invalid_request",
        "amount",
    ),
    (
        "form",
        b"amount=1000",
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
        None,
    ),
    ("text", b'{"amount": 1000}', "text/plain", 415, "unsupported_media_type", None),
    ("nested arrays", b"[" * 60000, "application/json", 400, "invalid_json", None),
    ("nested objects", b'{"a":' * 12000, "application/json", 400, "invalid_json", None),
    ("1000 levels", b"[" * 1000 + b"]" * 1000, "application/json", 400, "invalid_json", None),
]


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code", "field"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
async def test_each_bad_body_is_a_json_error(
    served: RunningApi,
    data: bytes | None,
    content_type: str | None,
    status: int,
    code: str,
    field: str | None,
) -> None:
    got, answer, _ = await call(
        served, "POST", "/v1/payments", data=data, content_type=content_type
    )
    assert got == status
    assert_error(answer, code, field)
    assert served.service.payments == {}


async def test_body_over_the_cap_is_413(served: RunningApi) -> None:
    padding = "x" * MAX_BODY_BYTES
    status, body, _ = await call(
        served, "POST", "/v1/payments", json_body=GOOD | {"idempotency_key": padding}
    )
    assert status == 413
    assert_error(body, "body_too_large")
    assert served.service.payments == {}


async def test_charset_parameter_is_accepted(served: RunningApi) -> None:
    status, _, _ = await call(
        served,
        "POST",
        "/v1/payments",
        data=b'{"amount": 1000, "method": "qr", "idempotency_key": "k"}',
        content_type="application/json; charset=utf-8",
    )
    assert status == 202


# ---- GET /v1/payments/{id}, cancel, refund ------------------------------------------------------


async def test_get_known_and_unknown_payment(served: RunningApi) -> None:
    _, created, _ = await call(served, "POST", "/v1/payments", json_body=GOOD)
    status, body, _ = await call(served, "GET", f"/v1/payments/{created['payment_id']}")
    assert (status, body) == (200, created)
    status, body, _ = await call(served, "GET", "/v1/payments/nope")
    assert status == 404
    assert_error(body, "unknown_payment")


async def test_cancel_waiting_then_again_answers_the_cancelled_payment(
    served: RunningApi,
) -> None:
    _, created, _ = await call(served, "POST", "/v1/payments", json_body=GOOD)
    path = f"/v1/payments/{created['payment_id']}/cancel"
    status, body, _ = await call(served, "POST", path)
    assert (status, body["state"]) == (200, "cancelled")
    status, body, _ = await call(served, "POST", path, json_body={})
    assert (status, body["state"]) == (200, "cancelled")


async def test_cancel_unknown_is_404_and_fields_are_refused(served: RunningApi) -> None:
    status, body, _ = await call(served, "POST", "/v1/payments/nope/cancel")
    assert status == 404
    assert_error(body, "unknown_payment")
    _, created, _ = await call(served, "POST", "/v1/payments", json_body=GOOD)
    status, body, _ = await call(
        served, "POST", f"/v1/payments/{created['payment_id']}/cancel", json_body={"why": "x"}
    )
    assert status == 400
    assert_error(body, "invalid_request", "why")
    assert served.service.payments[created["payment_id"]].state == "waiting_for_card"


async def _approved(served: RunningApi) -> str:
    _, created, _ = await call(served, "POST", "/v1/payments", json_body=GOOD)
    served.service.set_state(created["payment_id"], "approved")
    return str(created["payment_id"])


async def test_refund_answers_202_with_a_refund_payment(served: RunningApi) -> None:
    original = await _approved(served)
    status, body, _ = await call(
        served, "POST", f"/v1/payments/{original}/refund", json_body={"amount": 4000}
    )
    assert status == 202
    assert body["amount"] == 4000
    assert body["original_payment_id"] == original
    assert body["payment_id"] != original


async def test_refund_over_what_is_left_is_400_naming_amount(served: RunningApi) -> None:
    original = await _approved(served)
    status, body, _ = await call(
        served, "POST", f"/v1/payments/{original}/refund", json_body={"amount": 10001}
    )
    assert status == 400
    assert_error(body, "invalid_request", "amount")


async def test_refund_of_a_waiting_payment_is_409_and_unknown_404(served: RunningApi) -> None:
    _, created, _ = await call(served, "POST", "/v1/payments", json_body=GOOD)
    status, body, _ = await call(
        served, "POST", f"/v1/payments/{created['payment_id']}/refund", json_body={"amount": 1}
    )
    assert status == 409
    assert_error(body, "wrong_state")
    status, body, _ = await call(
        served, "POST", "/v1/payments/nope/refund", json_body={"amount": 1}
    )
    assert status == 404
    assert_error(body, "unknown_payment")


BAD_REFUNDS: list[tuple[str, dict[str, object], str]] = [
    ("amount missing", {}, "amount"),
    ("amount string", {"amount": "1000"}, "amount"),
    ("amount bool", {"amount": False}, "amount"),
    ("amount zero", {"amount": 0}, "amount"),
    ("key empty", {"amount": 1000, "idempotency_key": ""}, "idempotency_key"),
    ("key number", {"amount": 1000, "idempotency_key": 5}, "idempotency_key"),
    ("unknown field", {"amount": 1000, "reason": "broken"}, "reason"),
]


@pytest.mark.parametrize(
    ("body", "field"), [(b, f) for _, b, f in BAD_REFUNDS], ids=[name for name, _, _ in BAD_REFUNDS]
)
async def test_each_bad_refund_field_is_400(
    served: RunningApi, body: dict[str, object], field: str
) -> None:
    original = await _approved(served)
    status, answer, _ = await call(
        served, "POST", f"/v1/payments/{original}/refund", json_body=body
    )
    assert status == 400
    assert_error(answer, "invalid_request", field)
    assert len(served.service.payments) == 1


# ---- status, totals, saf -----------------------------------------------------------------------


async def test_status_is_the_state_object(served: RunningApi) -> None:
    status, body, _ = await call(served, "GET", "/v1/status")
    assert status == 200
    api = body.pop("api")
    assert body == await served.service.status()
    # The API's own part: where it listens and how many connections it holds.
    assert api["socket"] == str(served.api.socket_path)
    assert api["connections"] >= 1 and api["max_connections"] >= api["connections"]


async def test_totals_for_a_date_and_for_today(served: RunningApi) -> None:
    status, body, _ = await call(served, "GET", "/v1/totals?date=2026-02-28")
    assert (status, body["date"]) == (200, "2026-02-28")
    status, body, _ = await call(served, "GET", "/v1/totals")
    assert status == 200
    assert served.service.totals_asked == [datetime.date(2026, 2, 28), datetime.date.today()]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("date=2026-13-01", "date"),
        ("date=2026-02-30", "date"),
        ("date=20261125", "date"),
        ("date=today", "date"),
        ("date=", "date"),
        ("date=2026-11-25&date=2026-11-26", "date"),
        ("day=2026-11-25", "day"),
    ],
)
async def test_bad_totals_query_is_400_naming_it(
    served: RunningApi, query: str, field: str
) -> None:
    status, body, _ = await call(served, "GET", f"/v1/totals?{query}")
    assert status == 400
    assert_error(body, "invalid_request", field)
    assert served.service.totals_asked == []


async def test_saf_listing_and_flush(served: RunningApi) -> None:
    entry: dict[str, object] = {"payment_id": "p1", "kind": "advice", "amount": 5000}
    served.service.saf_queue.append(entry)
    status, body, _ = await call(served, "GET", "/v1/saf")
    assert (status, body) == (200, {"queue": [entry]})
    served.service.ledger_up = False
    status, body, _ = await call(served, "POST", "/v1/saf/flush")
    assert status == 503
    assert_error(body, "device_not_ready")
    served.service.ledger_up = True
    status, body, _ = await call(served, "POST", "/v1/saf/flush")
    assert (status, body) == (200, {"forwarded": 1, "pending": 0})


# ---- routing and internal errors ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/v1/orders/o1", "/v1/orders/o1/ack/x", "/v1/payments/p1/x"])
async def test_unknown_route_is_json_404(served: RunningApi, path: str) -> None:
    status, body, _ = await call(served, "GET", path)
    assert status == 404
    assert_error(body, "not_found")


async def test_orders_without_the_order_alerts_are_503(served: RunningApi) -> None:
    status, body, _ = await call(served, "GET", "/v1/orders")
    assert status == 503
    assert_error(body, "device_not_ready")
    status, body, _ = await call(served, "POST", "/v1/orders/o1/ack")
    assert status == 503


async def test_wrong_method_is_json_405_with_allow(served: RunningApi) -> None:
    status, body, headers = await call(served, "DELETE", "/v1/payments")
    assert status == 405
    assert_error(body, "method_not_allowed")
    assert "POST" in headers["Allow"]
    status, body, _ = await call(served, "POST", "/v1/status")
    assert status == 405


async def test_internal_error_is_500_and_says_nothing_of_it(served: RunningApi) -> None:
    served.service.fail_with = RuntimeError("sensitive detail")
    status, body, _ = await call(served, "POST", "/v1/payments", json_body=GOOD)
    assert status == 500
    assert_error(body, "internal_error")
    assert "sensitive" not in body["error"]["message"]


async def test_request_log_has_no_body(
    served: RunningApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="posd.api")
    marker = "body-marker-9f3c"
    await call(served, "POST", "/v1/payments", json_body=GOOD | {"idempotency_key": marker})
    lines = [r.getMessage() for r in caplog.records if r.name == "posd.api"]
    assert any(line.startswith("POST /v1/payments 202 ") for line in lines)
    assert not any(marker in line for line in lines)


async def test_deep_nesting_logs_no_error(
    served: RunningApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status, body, _ = await call(
        served, "POST", "/v1/payments", data=b"[" * 5000, content_type="application/json"
    )
    assert status == 400
    assert body["error"]["message"] == "the body nests too deeply to be a request"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ---- the socket file ---------------------------------------------------------------------------


async def test_socket_is_0660_and_removed_at_stop(tmp_path: Path) -> None:
    async with running_api(tmp_path) as running:
        mode = os.stat(running.socket_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
        path = running.socket_path
    assert not path.exists()


async def test_socket_is_0660_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        async with running_api(tmp_path) as running:
            assert stat.S_IMODE(os.stat(running.socket_path).st_mode) == 0o660
    finally:
        os.umask(previous)


def test_bound_socket_refuses_connections_until_it_listens(tmp_path: Path) -> None:
    # The mode is set between bind and listen: nobody can connect while it is still the umask's.
    path = tmp_path / "api.sock"
    previous = os.umask(0)
    try:
        sock = bind_unix_socket(path, None)
    finally:
        os.umask(previous)
    with sock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with pytest.raises(ConnectionRefusedError):
            client.connect(str(path))


async def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "run" / "api.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    async with running_api(tmp_path) as running:
        status, _, _ = await call(running, "GET", "/v1/status")
        assert status == 200


async def test_a_regular_file_in_the_way_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    path.write_text("not a socket")
    service = MemoryPaymentService()
    api = LocalApi(service, path, state=service.status, group=None)
    with pytest.raises(ApiStartError, match="not a socket"):
        await asyncio.wait_for(api.run(lambda: None), 5)
    assert path.read_text() == "not a socket"


async def test_a_live_socket_of_another_process_is_not_stolen(tmp_path: Path) -> None:
    async with running_api(tmp_path) as running:
        service = MemoryPaymentService()
        second = LocalApi(service, running.socket_path, state=service.status, group=None)
        with pytest.raises(ApiStartError, match="already"):
            await asyncio.wait_for(second.run(lambda: None), 5)
        status, _, _ = await call(running, "GET", "/v1/status")
        assert status == 200


async def test_too_long_socket_path_is_a_clear_error(tmp_path: Path) -> None:
    service = MemoryPaymentService()
    api = LocalApi(service, tmp_path / ("d" * 120) / "api.sock", state=service.status, group=None)
    with pytest.raises(ApiStartError, match="longer than"):
        await asyncio.wait_for(api.run(lambda: None), 5)


async def test_restart_after_stop_serves_again(tmp_path: Path) -> None:
    service = MemoryPaymentService()
    api = LocalApi(service, tmp_path / "api.sock", state=service.status, group=None)
    for _ in range(2):
        task = await start_api(api)
        running = RunningApi(api, service, tmp_path / "api.sock", task)
        status, _, _ = await call(running, "GET", "/v1/status")
        assert status == 200
        await running.stop()
