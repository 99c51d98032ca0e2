"""The console's HTTP face (fleet-console.md): the page, the JSON API and its event stream.

Every answer is JSON, errors in local-api.md's shape `{"error": {"code", "message"}}` (400s
name the offending `field`). With a token, every `/api/` request needs `Authorization:
Bearer <token>`; the page and its two files carry no data and are served to anyone, and the
page asks for the token. Without a token (loopback only) a request must name a loopback host
(`Host: 127.0.0.1:8790`, `localhost`), so a web page elsewhere cannot reach the API through a
DNS name pointed at 127.0.0.1.

Extensions to fleet-console.md: `GET /api/console` (the console's own health: broker link,
refused messages), and the SSE event names: `box`, `box_removed`, `summary`, `call`,
`console`, each with one JSON object.

Limits: bodies over MAX_BODY_BYTES (413); at most MAX_STREAMS event streams (503
too_many_streams); a stream whose client takes no write for two heartbeats is ended.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.resources
import ipaddress
import json
import logging
import time
from collections.abc import Mapping
from functools import partial
from http import HTTPStatus
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from posd.fleet.calls import MAX_NOTE_CHARS, UnknownCall
from posd.fleet.commands import CommandError
from posd.fleet.console import Console
from posd.fleet.hub import TooManyStreams, Watcher
from posd.fleet.model import STATUSES, Status
from posd.fleet.payloads import compact
from protocols.strict_json import RequestBodyError, request_object

log = logging.getLogger(__package__)

MAX_BODY_BYTES: Final = 16 * 1024
MAX_QUERY_CHARS: Final = 100
HEARTBEAT_S: Final = 15.0
# Events written per write: a stream catching up on 10,000 rows writes in slices, each one
# within the write timeout.
EVENTS_PER_WRITE: Final = 500
# A burst of changes is coalesced into one write at most this often per stream.
MIN_WRITE_INTERVAL_S: Final = 0.2
_SHUTDOWN_TIMEOUT_S: Final = 3.0

_STATIC: Final[Mapping[str, str]] = {
    "index.html": "text/html",
    "console.css": "text/css",
    "console.js": "text/javascript",
}
_SECURITY_HEADERS: Final[Mapping[str, str]] = {
    # Nothing but this origin's own files, no inline script or style: a value that escaped
    # escaping still could not run.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_HTTP_ERROR_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}

_dumps = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    error: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error}, status=status, headers=headers, dumps=_dumps)


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{field}: {message}", field)


async def _read_object(request: web.Request, allowed: frozenset[str]) -> dict[str, object]:
    """The body as a JSON object with only `allowed` keys; {} when there is none."""
    if not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send JSON with Content-Type: application/json"
        )
    try:
        return request_object(await request.read(), allowed)
    except RequestBodyError as exc:
        if exc.field is not None:
            raise _invalid(exc.field, exc.problem) from None
        raise ApiError(400, exc.code, exc.problem) from None


def _query(request: web.Request, allowed: frozenset[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key in request.query:
        if key not in allowed:
            raise _invalid(key, f"unknown query parameter (expected {', '.join(sorted(allowed))})")
        found = request.query.getall(key)
        if len(found) > 1:
            raise _invalid(key, "given more than once")
        values[key] = found[0]
    return values


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


class _ClientNotReading(Exception):
    pass


class _Routes:
    def __init__(self, console: Console, closing: asyncio.Event, heartbeat_s: float) -> None:
        self.console = console
        self.closing = closing
        self.heartbeat_s = heartbeat_s
        self.write_timeout_s = 2 * heartbeat_s
        self.files = {
            name: importlib.resources.files("posd.fleet").joinpath("static", name).read_bytes()
            for name in _STATIC
        }

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/favicon.ico", self.no_icon)
        app.router.add_get("/api/summary", self.summary)
        app.router.add_get("/api/boxes", self.boxes)
        app.router.add_get("/api/boxes/{terminal_id}", self.box)
        app.router.add_post("/api/boxes/{terminal_id}/commands/{command}", self.command)
        app.router.add_get("/api/calls", self.calls)
        app.router.add_post("/api/calls/{call_id}/called", self.called)
        app.router.add_get("/api/events", self.events)
        app.router.add_get("/api/console", self.console_state)

    async def page(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC or name == "index.html":
            raise ApiError(404, "not_found", "no such file")
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        return web.Response(body=self.files[name], content_type=_STATIC[name], charset="utf-8")

    async def summary(self, request: web.Request) -> web.Response:
        _query(request, frozenset())
        return _json(self.console.summary())

    async def boxes(self, request: web.Request) -> web.Response:
        query = _query(request, frozenset({"status", "deaf", "q"}))
        status: Status | None = None
        if "status" in query:
            status = next((s for s in STATUSES if s == query["status"]), None)
            if status is None:
                raise _invalid("status", f"must be one of {', '.join(STATUSES)}")
        deaf: bool | None = None
        if "deaf" in query:
            if query["deaf"] not in ("true", "false"):
                raise _invalid("deaf", "must be true or false")
            deaf = query["deaf"] == "true"
        q = query.get("q")
        if q is not None and len(q) > MAX_QUERY_CHARS:
            raise _invalid("q", f"must be at most {MAX_QUERY_CHARS} characters")
        rows = [box.row() for box in self.console.model.select(status, deaf, q or None)]
        return _json(rows)

    async def box(self, request: web.Request) -> web.Response:
        _query(request, frozenset())
        terminal_id = request.match_info["terminal_id"]
        box = self.console.model.boxes.get(terminal_id)
        if box is None:
            raise ApiError(404, "not_found", f"no box {terminal_id!r} is known")
        # The stored state and events are compact JSON already: spliced in, not re-parsed.
        body = b"".join(
            (
                compact(box.row())[:-1],
                b',"state":',
                box.state_raw if box.state_raw is not None else b"null",
                b',"events":[',
                b",".join(box.recent_events()),
                b"]}",
            )
        )
        return web.Response(body=body, content_type="application/json")

    async def calls(self, request: web.Request) -> web.Response:
        _query(request, frozenset())
        return _json([call.to_json() for call in self.console.call_list()])

    async def called(self, request: web.Request) -> web.Response:
        text = request.match_info["call_id"]
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise _invalid("id", "must be a call's id, a whole number")
        body = await _read_object(request, frozenset({"note"}))
        note = body.get("note", "")
        if not isinstance(note, str):
            raise _invalid("note", "must be a string")
        if len(note) > MAX_NOTE_CHARS:
            raise _invalid("note", f"must be at most {MAX_NOTE_CHARS} characters")
        if any(char < " " and char not in "\t\n" for char in note):
            raise _invalid("note", "holds a control character")
        try:
            call = await self.console.mark_called(int(text), note)
        except UnknownCall:
            raise ApiError(404, "not_found", f"no call {text}") from None
        return _json(call.to_json())

    async def command(self, request: web.Request) -> web.Response:
        body = await _read_object(request, frozenset({"args"}))
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise _invalid("args", "must be an object")
        try:
            answer = await self.console.command(
                request.match_info["terminal_id"], request.match_info["command"], args
            )
        except CommandError as exc:
            raise ApiError(exc.status, exc.code, exc.message, exc.field) from None
        return _json(answer)

    async def console_state(self, request: web.Request) -> web.Response:
        _query(request, frozenset())
        return _json(self.console.console_state())

    async def events(self, request: web.Request) -> web.StreamResponse:
        _query(request, frozenset())
        try:
            watcher = self.console.hub.watch()
        except TooManyStreams:
            raise ApiError(
                503,
                "too_many_streams",
                f"{self.console.hub.limit} event streams are already open; close one and retry",
            ) from None
        try:
            return await self._stream(request, watcher)
        finally:
            self.console.hub.unwatch(watcher)

    def _frames(self, watcher: Watcher) -> list[bytes]:
        rows, removed, calls, summary, console = watcher.take()
        model = self.console.model
        frames: list[bytes] = []
        if console:
            frames.append(b"event: console\ndata: " + compact(self.console.console_state()))
        if summary:
            frames.append(b"event: summary\ndata: " + compact(self.console.summary()))
        for terminal_id in sorted(removed):
            if terminal_id not in model.boxes:
                frames.append(b"event: box_removed\ndata: " + compact({"terminal_id": terminal_id}))
        for terminal_id in sorted(rows | (removed & model.boxes.keys())):
            box = model.boxes.get(terminal_id)
            if box is not None:
                frames.append(b"event: box\ndata: " + compact(box.row()))
        for call_id in sorted(calls):
            call = self.console.calls.get(call_id)
            if call is not None:
                frames.append(b"event: call\ndata: " + compact(call.to_json()))
        return frames

    async def _write(self, request: web.Request, response: web.StreamResponse, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await response.write(data)
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()
            raise _ClientNotReading from None

    async def _stream(self, request: web.Request, watcher: Watcher) -> web.StreamResponse:
        response = web.StreamResponse(headers={**_SECURITY_HEADERS, "X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream"
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            await response.prepare(request)
            await self._write(request, response, b": connected\n\n")
            while True:
                woken = asyncio.ensure_future(watcher.wake.wait())
                done, _ = await asyncio.wait(
                    {woken, closing}, timeout=self.heartbeat_s, return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
                if closing in done:
                    break
                if woken not in done:
                    await self._write(request, response, b": heartbeat\n\n")
                    continue
                frames = self._frames(watcher)
                for start in range(0, len(frames), EVENTS_PER_WRITE):
                    chunk = frames[start : start + EVENTS_PER_WRITE]
                    await self._write(request, response, b"\n\n".join(chunk) + b"\n\n")
                # Rate limit, not synchronisation: changes meanwhile wait in the watcher.
                await asyncio.sleep(MIN_WRITE_INTERVAL_S)
        except ConnectionResetError:
            log.debug("events client went away")
        except _ClientNotReading:
            log.warning("events client took nothing for %g s; stream ended", self.write_timeout_s)
        finally:
            closing.cancel()
        return response


def _host_is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    if not response.prepared:
        response.headers.update(_SECURITY_HEADERS)
    log.debug(
        "%s %s %d %.1fms",
        request.method,
        request.path,
        response.status,
        (time.perf_counter() - started) * 1000,
    )
    return response


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_ERROR_CODES.get(exc.status, f"http_{exc.status}")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = HTTPStatus(exc.status).phrase
        if exc.status == 413:
            message = f"the body is larger than {MAX_BODY_BYTES} bytes"
        return error_response(exc.status, code, message, headers=headers)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the console's log")


def _access_middleware(token: str | None) -> Middleware:
    digest = None if token is None else hashlib.sha256(token.encode()).digest()

    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        if digest is None:
            if not _host_is_loopback(request.host):
                return error_response(
                    403, "forbidden", "this console answers only to a loopback Host name"
                )
        elif request.path.startswith("/api/"):
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            offered = hashlib.sha256(value.strip().encode("utf-8", "surrogateescape")).digest()
            if not (hmac.compare_digest(offered, digest) and scheme.lower() == "bearer"):
                return error_response(
                    401, "unauthorized", "unauthorized", headers={"WWW-Authenticate": "Bearer"}
                )
        return await handler(request)

    return access


def build_app(
    console: Console,
    *,
    token: str | None,
    closing: asyncio.Event,
    heartbeat_s: float = HEARTBEAT_S,
) -> web.Application:
    app = web.Application(
        middlewares=[_headers, _json_errors, _access_middleware(token)],
        client_max_size=MAX_BODY_BYTES,
    )
    _Routes(console, closing, heartbeat_s).add_to(app)
    return app


class ConsoleServer:
    """The app listening on one address; `port` is known once `start()` returned."""

    def __init__(
        self,
        console: Console,
        host: str,
        port: int,
        *,
        token: str | None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.console = console
        self.host = host
        self.port = port
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(
            build_app(console, token=token, closing=self._closing, heartbeat_s=heartbeat_s),
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site.port
        log.info("console listening on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        self._closing.set()
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
