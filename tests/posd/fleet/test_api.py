"""The console's JSON API and event stream over a real loopback socket, good requests and bad."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from posd.fleet.web import MAX_BODY_BYTES
from tests.posd.fleet.fleetdata import order_event, state, terminal, topic
from tests.posd.fleet.support import WAIT_S, Served, next_event, read_event, running_console

TOKEN = "0123456789abcdef0123"
SUMMARY_KEYS = {
    "boxes",
    "online",
    "offline",
    "stale",
    "deaf",
    "missed_uncalled",
    "saf_old",
    "readers_disconnected",
    "as_of",
}
CALL_KEYS = {
    "id",
    "kind",
    "terminal_id",
    "merchant_id",
    "order_id",
    "at",
    "called",
    "called_at",
    "note",
}


def fleet(served: Served, count: int = 5) -> float:
    """`count` online boxes; box 2 deaf, box 3 offline, box 4 with a disconnected reader."""
    now = time.time()
    for n in range(1, count + 1):
        tid = terminal(n)
        served.console.feed(topic(tid, "availability"), b"online", True, now)
        payload = state(
            tid,
            now,
            merchant_id=f"SHOP-{n}",
            can_alert=n != 2,
            reason="no audio output" if n == 2 else None,
            reader="disconnected" if n == 4 else "ready",
        )
        served.console.feed(topic(tid, "state"), payload, True, now)
    served.console.feed(topic(terminal(3), "availability"), b"offline", False, now + 1)
    return now


def assert_error(body: dict[str, object], code: str, field: str | None = None) -> None:
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error.get("field") == field


async def test_summary_boxes_and_one_box(tmp_path: Path) -> None:
    async with running_console(tmp_path / "c.db") as served, served.session() as http:
        now = fleet(served)
        served.console.feed(
            topic(terminal(1), "event/payment"),
            b'{"id":"p1","ts":"2026-12-02T09:00:00Z","kind":"payment","amount":5000}',
            False,
            now,
        )
        async with http.get("/api/summary") as response:
            assert response.status == 200
            summary = await response.json()
        assert set(summary) == SUMMARY_KEYS
        assert {k: v for k, v in summary.items() if k != "as_of"} == {
            "boxes": 5,
            "online": 4,
            "offline": 1,
            "stale": 0,
            "deaf": 1,
            "missed_uncalled": 0,
            "saf_old": 0,
            "readers_disconnected": 1,
        }
        async with http.get("/api/boxes") as response:
            rows = await response.json()
        assert [row["terminal_id"] for row in rows] == [terminal(n) for n in range(1, 6)]
        async with http.get("/api/boxes", params={"status": "offline"}) as response:
            assert [row["terminal_id"] for row in await response.json()] == [terminal(3)]
        async with http.get("/api/boxes", params={"deaf": "true"}) as response:
            deaf = await response.json()
        assert [(r["terminal_id"], r["deaf_reason"]) for r in deaf] == [
            (terminal(2), "no audio output")
        ]
        async with http.get("/api/boxes", params={"q": "shop-5", "status": "online"}) as response:
            assert [row["terminal_id"] for row in await response.json()] == [terminal(5)]
        async with http.get(f"/api/boxes/{terminal(1)}") as response:
            assert response.status == 200
            box = await response.json()
        assert box["terminal_id"] == terminal(1) and box["status"] == "online"
        assert box["state"]["terminal_id"] == terminal(1)
        assert box["state"]["orders"]["can_alert"] is True
        assert box["events"] == [
            {"id": "p1", "ts": "2026-12-02T09:00:00Z", "kind": "payment", "amount": 5000}
        ]


async def test_calls_list_and_marking_one_called(tmp_path: Path) -> None:
    async with running_console(tmp_path / "c.db") as served, served.session() as http:
        now = fleet(served)
        served.console.feed(
            topic(terminal(5), "event/order"),
            order_event(now, "O-9", "missed", placed_at=now - 300),
            False,
            now,
        )
        await served.console.settle()
        async with http.get("/api/calls") as response:
            calls = await response.json()
        assert [set(call) for call in calls] == [CALL_KEYS, CALL_KEYS]
        assert [(c["kind"], c["terminal_id"], c["order_id"]) for c in calls] == [
            ("missed_order", terminal(5), "O-9"),  # placed 300 s before the deaf state
            ("deaf", terminal(2), None),
        ]
        missed = calls[0]
        assert missed["merchant_id"] == "SHOP-5" and missed["called"] is False
        async with http.get("/api/summary") as response:
            assert (await response.json())["missed_uncalled"] == 1
        async with http.post(
            f"/api/calls/{missed['id']}/called", json={"note": "사장님 통화함, 주문 확인"}
        ) as response:
            assert response.status == 200
            done = await response.json()
        assert done["called"] is True and done["note"] == "사장님 통화함, 주문 확인"
        assert done["called_at"] is not None
        async with http.get("/api/summary") as response:
            assert (await response.json())["missed_uncalled"] == 0


BAD_REQUESTS = [
    ("GET", "/api/boxes?status=dead", None, 400, "invalid_request", "status"),
    ("GET", "/api/boxes?deaf=yes", None, 400, "invalid_request", "deaf"),
    ("GET", "/api/boxes?deaf=true&deaf=false", None, 400, "invalid_request", "deaf"),
    ("GET", "/api/boxes?colour=red", None, 400, "invalid_request", "colour"),
    ("GET", "/api/boxes?q=" + "x" * 101, None, 400, "invalid_request", "q"),
    ("GET", "/api/summary?x=1", None, 400, "invalid_request", "x"),
    ("GET", "/api/boxes/T9999999", None, 404, "not_found", None),
    ("GET", "/api/boxes/%3Cscript%3E", None, 404, "not_found", None),
    ("GET", "/api/nowhere", None, 404, "not_found", None),
    ("GET", "/static/../cli.py", None, 404, "not_found", None),
    ("GET", "/static/model.py", None, 404, "not_found", None),
    ("DELETE", "/api/calls", None, 405, "method_not_allowed", None),
    ("POST", "/api/summary", None, 405, "method_not_allowed", None),
    ("POST", "/api/calls/abc/called", {"note": ""}, 400, "invalid_request", "id"),
    ("POST", "/api/calls/-1/called", {"note": ""}, 400, "invalid_request", "id"),
    ("POST", "/api/calls/99999999999999999999999/called", {}, 400, "invalid_request", "id"),
    ("POST", "/api/calls/424242/called", {"note": ""}, 404, "not_found", None),
    ("POST", "/api/calls/1/called", {"note": 5}, 400, "invalid_request", "note"),
    ("POST", "/api/calls/1/called", {"note": "x" * 1001}, 400, "invalid_request", "note"),
    ("POST", "/api/calls/1/called", {"note": "a\x00b"}, 400, "invalid_request", "note"),
    ("POST", "/api/calls/1/called", {"nose": "x"}, 400, "invalid_request", "nose"),
    ("POST", "/api/calls/1/called", b"[1]", 400, "invalid_json", None),
    ("POST", "/api/calls/1/called", b"{not json", 400, "invalid_json", None),
    ("POST", "/api/calls/1/called", b'{"note":"a","note":"b"}', 400, "invalid_request", "note"),
    ("POST", "/api/calls/1/called", b"\xff\xfe", 400, "invalid_json", None),
    ("POST", "/api/calls/1/called", b"[" * 100_00 + b"]" * 100_00, 413, "body_too_large", None),
    ("POST", "/api/calls/1/called", b"[" * 5000 + b"]" * 5000, 400, "invalid_json", None),
    ("POST", "/api/calls/1/called", b'{"note": NaN}', 400, "invalid_json", None),
    ("POST", f"/api/boxes/{terminal(1)}/commands/chime_test", {"args": []}, 400,
     "invalid_request", "args"),
    ("POST", f"/api/boxes/{terminal(1)}/commands/chime_test", {"arg": {}}, 400,
     "invalid_request", "arg"),
    ("POST", f"/api/boxes/{terminal(1)}/commands/chime_test", {}, 503, "no_operator_key", None),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "field"), BAD_REQUESTS)
async def test_every_bad_request_gets_the_json_error_shape(
    tmp_path: Path,
    method: str,
    path: str,
    body: object,
    status: int,
    code: str,
    field: str | None,
) -> None:
    async with running_console(tmp_path / "c.db") as served, served.session() as http:
        fleet(served)
        kwargs: dict[str, object] = {}
        if isinstance(body, bytes):
            kwargs = {"data": body, "headers": {"Content-Type": "application/json"}}
        elif body is not None:
            kwargs = {"json": body}
        async with http.request(method, path, **kwargs) as response:  # type: ignore[arg-type]
            assert response.status == status
            assert response.content_type == "application/json"
            assert_error(await response.json(), code, field)


async def test_a_body_that_is_not_json_is_refused_by_its_content_type(tmp_path: Path) -> None:
    async with running_console(tmp_path / "c.db") as served, served.session() as http:
        async with http.post("/api/calls/1/called", data="note=x") as response:
            assert response.status == 415
            assert_error(await response.json(), "unsupported_media_type")
        assert MAX_BODY_BYTES < 20_000


async def test_with_a_token_every_api_request_needs_it_and_the_page_does_not(
    tmp_path: Path,
) -> None:
    async with running_console(tmp_path / "c.db", token=TOKEN) as served:
        for bearer in ("", "wrong-token-wrong-token", TOKEN + "x"):
            async with served.session(token=bearer) as http, http.get("/api/summary") as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert_error(await response.json(), "unauthorized")
        async with served.session() as http:
            async with http.get("/api/summary") as response:
                assert response.status == 200
            async with http.get("/api/events") as response:
                assert response.status == 200
        async with aiohttp.ClientSession(base_url=served.url) as anonymous:
            for path in ("/", "/static/console.js", "/static/console.css"):
                async with anonymous.get(path) as response:
                    assert response.status == 200
            async with anonymous.get("/api/events") as response:
                assert response.status == 401


async def test_without_a_token_only_a_loopback_host_name_is_answered(tmp_path: Path) -> None:
    async with running_console(tmp_path / "c.db") as served, served.session() as http:
        for host in ("evil.example", "evil.example:8790", "10.0.0.1:8790"):
            async with http.get("/api/summary", headers={"Host": host}) as response:
                assert response.status == 403
                assert_error(await response.json(), "forbidden")
        for host in ("localhost:8790", "127.0.0.1", "[::1]:8790"):
            async with http.get("/api/summary", headers={"Host": host}) as response:
                assert response.status == 200


async def test_the_page_and_its_files_are_served_with_a_strict_policy(tmp_path: Path) -> None:
    async with running_console(tmp_path / "c.db") as served, served.session() as http:
        async with http.get("/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            page = await response.text()
            policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        # No external resources at all: every src and href is this origin's.
        assert (
            "http://" not in page
            and "https://" not in page
            and "//" not in page.replace("<!--", "")
        )
        assert "<script>" not in page and "style=" not in page
        async with http.get("/static/console.js") as response:
            script = await response.text()
        assert response.content_type == "text/javascript"
        assert "innerHTML" not in script and "eval(" not in script
        assert "http" not in script.replace("http-equiv", "")


async def test_events_stream_rows_summary_and_calls_as_they_change(tmp_path: Path) -> None:
    async with running_console(tmp_path / "c.db") as served, served.session() as http:
        now = fleet(served)
        async with http.get("/api/events") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            first = await read_event(stream)
            assert first[0] == "console"
            summary = await next_event(stream, "summary", lambda s: True)
            assert summary["offline"] == 1
            served.console.feed(topic(terminal(1), "availability"), b"offline", False, now + 5)
            seen: dict[str, dict[str, object]] = {}
            while len(seen) < 2:  # one write carries both, the summary first
                name, data = await read_event(stream)
                if name in ("box", "summary"):
                    seen[name] = data
            assert (seen["box"]["terminal_id"], seen["box"]["status"]) == (terminal(1), "offline")
            assert seen["summary"]["offline"] == 2
            served.console.feed(
                topic(terminal(1), "event/order"), order_event(now, "O-1", "missed"), False, now
            )
            call = await next_event(stream, "call", lambda c: c["kind"] == "missed_order")
            assert (call["kind"], call["order_id"], call["called"]) == (
                "missed_order",
                "O-1",
                False,
            )
            served.console.feed(topic(terminal(5), "state"), b"", True, now + 6)
            served.console.feed(topic(terminal(5), "availability"), b"", True, now + 6)
            gone = await next_event(stream, "box_removed", lambda r: True)
            assert gone == {"terminal_id": terminal(5)}


async def test_a_burst_of_changes_to_one_box_is_coalesced_into_its_latest_row(
    tmp_path: Path,
) -> None:
    async with running_console(tmp_path / "c.db") as served, served.session() as http:
        now = fleet(served, 1)
        async with http.get("/api/events") as stream:
            await next_event(stream, "summary", lambda s: True)
            for n in range(1, 201):
                served.console.feed(
                    topic(terminal(1), "state"),
                    state(terminal(1), now + n, saf_pending=n),
                    False,
                    now,
                )
            seen = []
            while True:
                row = await next_event(stream, "box", lambda r: True)
                seen.append(row["saf_pending"])
                if row["saf_pending"] == 200:
                    break
        assert len(seen) < 20, "each write carries the current row, not every change"


async def test_event_streams_are_bounded(tmp_path: Path) -> None:
    async with (
        running_console(tmp_path / "c.db", max_streams=2) as served,
        served.session() as http,
    ):
        first = await http.get("/api/events")
        second = await http.get("/api/events")
        async with http.get("/api/events") as third:
            assert third.status == 503
            assert_error(await third.json(), "too_many_streams")
        first.close()
        second.close()
        # Closed streams free their slots (the server notices at its next write).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while served.console.hub.watchers and loop.time() < deadline:
            served.console.hub.summary()
            await asyncio.sleep(0.05)
        async with http.get("/api/events") as again:
            assert again.status == 200


async def test_a_stream_whose_client_stops_reading_is_ended(tmp_path: Path) -> None:
    async with running_console(tmp_path / "c.db", heartbeat_s=0.2) as served:
        fleet(served, 5000)
        ids = list(served.console.model.boxes)
        _, writer = await asyncio.open_connection("127.0.0.1", served.server.port)
        writer.write(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * WAIT_S
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            if not served.console.hub.watchers:
                break
            # 5,000 rows (2 MB) per write that the client never reads: the buffers fill up.
            served.console.hub.rows(ids)
        assert not served.console.hub.watchers
        writer.close()
