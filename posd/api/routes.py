"""The local API's routes (local-api.md): HTTP turned into calls on a `PaymentService`, and its
answers and refusals back into HTTP; every payment rule lives behind that interface.
`GET /v1/status` answers what the `StateSource` builds (posd.monitoring.StateBuilder.build:
the same object as the MQTT state).

Extensions to local-api.md, documented in docs/local-api-guide.md: `GET /v1/saf` (the
store-and-forward queue, masked) and `POST /v1/saf/flush`, used by `posd saf`. The order
endpoints (`GET /v1/orders`, `POST /v1/orders/{order_id}/ack`) answer from posd.orders. The
event stream is the service's `events()`: payment and order changes only (posd's hub also
carries device, ledger, error... events, for monitoring).

Limits a misbehaving client meets: bodies over MAX_BODY_BYTES (413), compressed (415), not
complete within BODY_TIMEOUT_S (408) or cut short (400 incomplete_body), nested too deeply to
parse (400 invalid_json); more than MAX_EVENT_STREAMS open event streams (503
too_many_streams); an event stream whose client takes no write for two heartbeats is ended,
and one whose client goes away ends at once. The request log is throttled (REQUEST_LOG_BURST
lines per REQUEST_LOG_S, then a count). Connections, their cap and timeouts, and what the HTTP
parser refuses are connections.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, Final, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.typedefs import Handler, Middleware

from posd.api.connections import count_requests
from posd.api.errors import ApiError, dumps, error_response, invalid, shown_key
from posd.logs import Throttle, held_note
from posd.orders import (
    OrderDesk,
    OrderEnded,
    OrderError,
    OrdersLookup,
    OrdersUnavailable,
    UnknownOrder,
)
from posd.payments import (
    IDEMPOTENCY_KEY_MAX_LEN,
    MAX_AMOUNT,
    METHODS,
    DeviceNotReady,
    IdempotencyKeyReused,
    InvalidRequest,
    PaymentConflict,
    PaymentError,
    PaymentService,
    UnknownPayment,
    WrongState,
)
from protocols.strict_json import RequestBodyError, request_object

log = logging.getLogger(__package__)

# Request log lines: this many per 10 s, then one saying how many more there were.
REQUEST_LOG_BURST: Final = 50
REQUEST_LOG_S: Final = 10.0
# Every request body is a handful of fields; anything bigger is a client bug or an attack.
MAX_BODY_BYTES: Final = 64 * 1024
# A body is sent at once; one trickling in holds a connection and a handler.
BODY_TIMEOUT_S: Final = 5.0
# Writing a comment this often makes a vanished SSE client fail a write and be dropped.
HEARTBEAT_S: Final = 15.0
# Event streams open at once across both listeners: each holds a subscription and a task, and
# a shop's POS apps need a handful at most.
MAX_EVENT_STREAMS: Final = 16

StateSource = Callable[[], Awaitable[Mapping[str, object]]]

_PAYMENT_ERROR_STATUS: Final[Mapping[type[PaymentError], int]] = {
    InvalidRequest: 400,
    UnknownPayment: 404,
    PaymentConflict: 409,
    WrongState: 409,
    IdempotencyKeyReused: 409,
    DeviceNotReady: 503,
}
_ORDER_ERROR_STATUS: Final[Mapping[type[OrderError], int]] = {
    UnknownOrder: 404,
    OrderEnded: 409,
    OrdersUnavailable: 503,
}
_HTTP_ERROR_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_STREAM_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

_T = TypeVar("_T")


class _ClientNotReading(Exception):
    """An event stream write did not complete in time: the client stopped reading."""


async def _read_body(request: web.Request) -> bytes:
    """The whole body, within BODY_TIMEOUT_S; a client that trickles it, or goes away halfway,
    gets an answer (if still there) and its connection closed, never a 500."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"the request body did not arrive within {BODY_TIMEOUT_S:g} s",
            close=True,
        ) from None
    except (ConnectionError, web.RequestPayloadError, PayloadEncodingError):
        # The connection dropped mid-body, or the body broke its framing (chunked).
        raise ApiError(
            400, "incomplete_body", "the request body ended before it was complete", close=True
        ) from None


async def _read_object(request: web.Request, allowed: frozenset[str]) -> dict[str, object]:
    """The request body as a JSON object with only `allowed` keys; {} when there is none."""
    if not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send JSON with Content-Type: application/json"
        )
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise ApiError(
            415, "unsupported_media_type", "send the JSON body uncompressed (no Content-Encoding)"
        )
    try:
        return request_object(await _read_body(request), allowed)
    except RequestBodyError as exc:
        if exc.field is not None:
            raise invalid(exc.field, exc.problem) from None
        raise ApiError(400, exc.code, exc.problem) from None


def _amount(body: Mapping[str, object]) -> int:
    if "amount" not in body:
        raise invalid("amount", "required: the amount in won, an integer > 0")
    value = body["amount"]
    # bool is an int subclass in Python; true must not become a 1-won payment.
    if type(value) is not int:
        raise invalid("amount", "must be a whole number of won (a JSON integer)")
    if value < 1:
        raise invalid("amount", "must be at least 1 won")
    if value > MAX_AMOUNT:
        raise invalid("amount", f"must be at most {MAX_AMOUNT} won")
    return value


def _method(body: Mapping[str, object]) -> str:
    if "method" not in body:
        raise invalid("method", "required: one of " + ", ".join(METHODS))
    value = body["method"]
    if not isinstance(value, str) or value not in METHODS:
        raise invalid("method", "must be one of " + ", ".join(METHODS))
    return value


def _idempotency_key(body: Mapping[str, object], required: bool) -> str | None:
    if body.get("idempotency_key") is None:
        if required:
            raise invalid("idempotency_key", "required: a unique string per sale, e.g. a UUID")
        return None
    value = body["idempotency_key"]
    if not isinstance(value, str):
        raise invalid("idempotency_key", "must be a string")
    if not 1 <= len(value) <= IDEMPOTENCY_KEY_MAX_LEN:
        raise invalid("idempotency_key", f"must be 1 to {IDEMPOTENCY_KEY_MAX_LEN} characters")
    if not all("!" <= ch <= "~" for ch in value):
        raise invalid("idempotency_key", "must be visible ASCII characters only (no spaces)")
    return value


def _benefit_plus(body: Mapping[str, object]) -> bool:
    value = body.get("benefit_plus", False)
    if not isinstance(value, bool):
        raise invalid("benefit_plus", "must be true or false")
    return value


def _totals_date(request: web.Request) -> datetime.date:
    for key in request.query:
        if key != "date":
            raise invalid(key, "unknown query parameter (expected date)")
    values = request.query.getall("date", [])
    if not values:
        # The shop settles its own day: the box's local date.
        return datetime.date.today()
    if len(values) > 1:
        raise invalid("date", "given more than once")
    text = values[0]
    if _DATE_RE.fullmatch(text):
        with contextlib.suppress(ValueError):
            return datetime.date.fromisoformat(text)
    raise invalid("date", "must be a calendar date as YYYY-MM-DD")


async def _next(iterator: AsyncIterator[_T]) -> _T:
    return await anext(iterator)


def _bearer_ok(header: str, token_digest: bytes) -> bool:
    scheme, _, value = header.partition(" ")
    # Comparing digests keeps the comparison constant-time also in the token's length.
    offered = hashlib.sha256(value.strip().encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(offered, token_digest) and scheme.lower() == "bearer"


class StreamSlots:
    """How many event streams may be open at once; one instance shared by every listener."""

    def __init__(self, limit: int = MAX_EVENT_STREAMS) -> None:
        self.limit = limit
        self.open = 0


class Routes:
    def __init__(
        self,
        service: PaymentService,
        state: StateSource,
        closing: asyncio.Event,
        heartbeat_s: float,
        stream_slots: StreamSlots,
        orders: OrdersLookup | None = None,
    ) -> None:
        self._service = service
        self._state = state
        self._orders = orders
        self._closing = closing
        self._heartbeat_s = heartbeat_s
        # A client that has not taken a write in two heartbeats is not reading: end its stream
        # rather than hold its task and buffers for as long as the connection stays up.
        self._write_timeout_s = 2 * heartbeat_s
        self._slots = stream_slots
        self._local_seq = 0

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/v1/payments", self.create)
        app.router.add_get("/v1/payments/{payment_id}", self.get)
        app.router.add_post("/v1/payments/{payment_id}/cancel", self.cancel)
        app.router.add_post("/v1/payments/{payment_id}/refund", self.refund)
        app.router.add_get("/v1/events", self.events, allow_head=False)
        app.router.add_head("/v1/events", self.events_head)
        app.router.add_get("/v1/status", self.status)
        app.router.add_get("/v1/totals", self.totals)
        app.router.add_get("/v1/saf", self.saf)
        app.router.add_post("/v1/saf/flush", self.saf_flush)
        app.router.add_get("/v1/orders", self.orders)
        app.router.add_post("/v1/orders/{order_id}/ack", self.order_ack)

    async def create(self, request: web.Request) -> web.Response:
        body = await _read_object(
            request, frozenset({"amount", "method", "idempotency_key", "benefit_plus"})
        )
        amount = _amount(body)
        method = _method(body)
        key = _idempotency_key(body, required=True)
        assert key is not None
        benefit_plus = _benefit_plus(body)
        payment = await self._service.create(amount, method, key, benefit_plus)
        return web.json_response(payment.to_json(), status=202, dumps=dumps)

    async def get(self, request: web.Request) -> web.Response:
        payment_id = request.match_info["payment_id"]
        payment = await self._service.get(payment_id)
        if payment is None:
            raise UnknownPayment("no payment with this id")
        return web.json_response(payment.to_json(), dumps=dumps)

    async def cancel(self, request: web.Request) -> web.Response:
        await _read_object(request, frozenset())
        payment = await self._service.cancel(request.match_info["payment_id"])
        return web.json_response(payment.to_json(), dumps=dumps)

    async def refund(self, request: web.Request) -> web.Response:
        body = await _read_object(request, frozenset({"amount", "idempotency_key"}))
        amount = _amount(body)
        key = _idempotency_key(body, required=False)
        payment = await self._service.refund(request.match_info["payment_id"], amount, key)
        return web.json_response(payment.to_json(), status=202, dumps=dumps)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(await self._state(), dumps=dumps)

    def _desk(self) -> OrderDesk:
        desk = self._orders() if self._orders is not None else None
        if desk is None:
            raise OrdersUnavailable("the order alerts are not running; posd is starting")
        return desk

    async def orders(self, request: web.Request) -> web.Response:
        for key in request.query:
            raise invalid(key, "unknown query parameter (this endpoint takes none)")
        return web.json_response(await self._desk().orders(), dumps=dumps)

    async def order_ack(self, request: web.Request) -> web.Response:
        await _read_object(request, frozenset())
        order_id = request.match_info["order_id"]
        return web.json_response(await self._desk().acknowledge(order_id), dumps=dumps)

    async def totals(self, request: web.Request) -> web.Response:
        return web.json_response(await self._service.totals(_totals_date(request)), dumps=dumps)

    async def saf(self, request: web.Request) -> web.Response:
        return web.json_response({"queue": await self._service.saf()}, dumps=dumps)

    async def saf_flush(self, request: web.Request) -> web.Response:
        await _read_object(request, frozenset())
        return web.json_response(await self._service.saf_flush(), dumps=dumps)

    def _frame(self, event: Mapping[str, object]) -> bytes:
        seq = event.get("seq")
        if type(seq) is not int:
            self._local_seq += 1
            seq = self._local_seq
        return f"id: {seq}\ndata: {dumps(event)}\n\n".encode()

    async def events_head(self, request: web.Request) -> web.StreamResponse:
        """What GET would answer, without a stream: no body, no slot taken."""
        return web.Response(headers=_STREAM_HEADERS, content_type="text/event-stream")

    async def events(self, request: web.Request) -> web.StreamResponse:
        if self._slots.open >= self._slots.limit:
            raise ApiError(
                503,
                "too_many_streams",
                f"{self._slots.limit} event streams are already open; close one and retry",
            )
        self._slots.open += 1
        try:
            return await self._stream_events(request)
        finally:
            self._slots.open -= 1

    async def _write(self, request: web.Request, response: web.StreamResponse, data: bytes) -> None:
        try:
            async with asyncio.timeout(self._write_timeout_s):
                await response.write(data)
        except TimeoutError:
            # The connection is dropped, not just left: aiohttp would otherwise wait for the
            # same client to take the end of the stream.
            if request.transport is not None:
                request.transport.abort()
            raise _ClientNotReading from None

    async def _stream_events(self, request: web.Request) -> web.StreamResponse:
        subscription = self._service.events()
        next_event: asyncio.Future[dict[str, object]] | None = None
        closing = asyncio.ensure_future(self._closing.wait())
        # The client gone (its connection lost): end at once, freeing the slot, rather than
        # at the next heartbeat that fails.
        lost_event = getattr(request.protocol, "lost", None)
        lost = asyncio.ensure_future(
            lost_event.wait() if isinstance(lost_event, asyncio.Event) else asyncio.Future()
        )
        response = web.StreamResponse(headers=_STREAM_HEADERS)
        response.content_type = "text/event-stream"
        try:
            await response.prepare(request)
            # Tells the client the subscription is live: what happens from now on reaches it.
            await self._write(request, response, b": connected\n\n")
            while True:
                if next_event is None:
                    next_event = asyncio.ensure_future(_next(subscription))
                waiters: set[asyncio.Future[Any]] = {next_event, closing, lost}
                done, _ = await asyncio.wait(
                    waiters,
                    timeout=self._heartbeat_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if lost in done:
                    log.info("events client went away")
                    break
                if closing in done:
                    break
                if next_event not in done:
                    await self._write(request, response, b": heartbeat\n\n")
                    continue
                try:
                    event = next_event.result()
                except StopAsyncIteration:
                    break
                next_event = None
                await self._write(request, response, self._frame(event))
        except ConnectionResetError:
            log.info("events client went away")
        except _ClientNotReading:
            log.warning(
                "events client took nothing for %g s; its stream is ended", self._write_timeout_s
            )
        except Exception:
            if not response.prepared:
                raise
            # Headers are out: no error answer is possible any more, only ending the stream
            # (the client reconnects and catches up with GETs).
            log.exception("event stream failed; closing it")
        finally:
            pending = [task for task in (next_event, closing, lost) if task is not None]
            for task in pending:
                task.cancel()
            # The subscription cannot be closed while a cancelled read is still inside it.
            await asyncio.gather(*pending, return_exceptions=True)
            aclose = getattr(subscription, "aclose", None)
            if aclose is not None:
                await aclose()
        return response


def _request_log() -> Middleware:
    # A flood of requests (a hostile local client) must not flood the log: past a burst the
    # lines are counted, and the next one let through says how many were not logged.
    throttle = Throttle(REQUEST_LOG_S, REQUEST_LOG_BURST)

    @web.middleware
    async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Method, path, status and time only: a body or query may one day carry a token.
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            held = throttle.allow() if status < 500 else 0
            if held is not None:
                log.log(
                    logging.ERROR if status >= 500 else logging.INFO,
                    "%s %s %d %.1fms%s",
                    request.method,
                    shown_key(request.path),
                    status,
                    (time.perf_counter() - started) * 1000,
                    held_note(held),
                )

    return log_requests


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.field)
        if exc.close:
            response.force_close()
        return response
    except OrderError as exc:
        status = next((s for cls, s in _ORDER_ERROR_STATUS.items() if isinstance(exc, cls)), 500)
        return error_response(status, exc.code, exc.message)
    except ConnectionError:
        # The client went away: nobody to answer; aiohttp ends the connection quietly.
        raise
    except PaymentError as exc:
        status = next((s for cls, s in _PAYMENT_ERROR_STATUS.items() if isinstance(exc, cls)), 500)
        if isinstance(exc, InvalidRequest):
            message = exc.message
            if not message.startswith(exc.field):
                message = f"{exc.field}: {message}"
            return error_response(status, exc.code, message, exc.field)
        return error_response(status, exc.code, exc.message)
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
        return error_response(500, "internal_error", "internal error; see the posd log")


def _token_middleware(token: str) -> Middleware:
    digest = hashlib.sha256(token.encode("utf-8")).digest()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _bearer_ok(request.headers.get("Authorization", ""), digest):
            return error_response(
                401, "unauthorized", "unauthorized", headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)

    return require_token


def build_app(
    service: PaymentService,
    *,
    state: StateSource,
    token: str | None,
    closing: asyncio.Event,
    heartbeat_s: float = HEARTBEAT_S,
    stream_slots: StreamSlots | None = None,
    orders: OrdersLookup | None = None,
) -> web.Application:
    """The API application; with a `token`, every request must carry it as a bearer token.

    Apps given the same `stream_slots` share its limit on open event streams. `state` builds
    what `GET /v1/status` answers; `orders` finds the running order alerts.
    """
    middlewares: list[Middleware] = [count_requests, _request_log(), _json_errors]
    if token is not None:
        middlewares.append(_token_middleware(token))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    slots = stream_slots if stream_slots is not None else StreamSlots()
    Routes(service, state, closing, heartbeat_s, slots, orders).add_to(app)
    return app
