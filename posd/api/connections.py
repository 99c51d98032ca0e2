"""The local API's connections: accepted by posd's own loop, capped, timed out, and answered in
JSON even when aiohttp's parser refuses the request.

Every local process may connect, and the TCP listener takes connections before any token is
seen, so nothing here trusts a client:

- Cap: at most `connection_cap(open-files limit)` connections over all listeners, well below
  the limit, so the journal, the ledger link and the devices always have descriptors. At the
  cap a new connection takes the place of the one idle the longest (no request in progress);
  when every connection has a request in progress, accepting waits for one to end.
- Timeouts: a connection must send a complete request head within REQUEST_TIMEOUT_S of
  connecting or of its last answer (aiohttp's keep-alive timer, which it arms at
  connection_made: web_protocol.RequestHandler.connection_made / _process_keepalive); a body
  must arrive within BODY_TIMEOUT_S (routes.py).
- Accepting is `loop.sock_accept` in a task per listener (asyncio's own accept loop would log
  every EMFILE with a traceback, once a second); an accept error is logged at most once a
  minute, with how many there were.
- Requests aiohttp's parser refuses (bad request line, unknown method, Content-Length with
  Transfer-Encoding, a line too long) are answered by `ApiProtocol.handle_error`, the hook
  aiohttp's RequestHandler calls for them (web_protocol.py `_make_error_handler`), with the JSON
  error of local-api.md and one throttled log line, no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, HttpProcessingError, LineTooLong
from aiohttp.typedefs import Handler

from posd.api.errors import error_response
from posd.logs import Throttle, held_note

log = logging.getLogger(__package__)

# Most connections at once, whatever the open-files limit: a shop's POS apps need a handful.
MAX_CONNECTIONS: Final = 1024
# Descriptors kept for the rest of posd: journal, ledger, devices, MQTT, audio, threads.
RESERVED_FDS: Final = 128
FEWEST_CONNECTIONS: Final = 16
REQUEST_TIMEOUT_S: Final = 5.0
# Unread body left after an early answer (a 413, a 415) is drained at most this long.
LINGER_S: Final = 1.0
ACCEPT_ERROR_LOG_S: Final = 60.0
# A failed accept (EMFILE) is retried after this: the listening socket stays readable.
ACCEPT_RETRY_S: Final = 0.1
# Lines a flood of bad requests could repeat: this many per 10 s, then one with the count.
BAD_REQUEST_LOG_BURST: Final = 5
BAD_REQUEST_LOG_S: Final = 10.0
# Request heads: the API's are a line and a few short headers.
MAX_LINE_SIZE: Final = 8190
MAX_FIELD_SIZE: Final = 8190
MAX_HEADERS: Final = 64


def connection_cap(open_files_limit: int) -> int:
    """The API's connection cap for a process allowed `open_files_limit` descriptors."""
    return max(FEWEST_CONNECTIONS, min(MAX_CONNECTIONS, (open_files_limit - RESERVED_FDS) // 2))


class Connections:
    """Every API connection of every listener; the cap and who gives way to a new one."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        # Insertion order is the order of last activity: the first idle one has waited longest.
        self._open: dict[ApiProtocol, None] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._accept_errors = Throttle(ACCEPT_ERROR_LOG_S)
        self._cap_reached = Throttle(ACCEPT_ERROR_LOG_S)
        self.bad_requests = Throttle(BAD_REQUEST_LOG_S, BAD_REQUEST_LOG_BURST)
        self.evicted = 0
        self.accept_errors = 0

    @property
    def count(self) -> int:
        return len(self._open)

    def opened(self, protocol: ApiProtocol) -> None:
        self._open[protocol] = None
        self._update_room()

    def closed(self, protocol: ApiProtocol) -> None:
        if protocol in self._open:
            del self._open[protocol]
            self._update_room()

    def active(self, protocol: ApiProtocol) -> None:
        """A request on `protocol` began or ended: it is the most recently active now."""
        if protocol in self._open:
            del self._open[protocol]
            self._open[protocol] = None
        self._update_room()

    def _idlest(self) -> ApiProtocol | None:
        return next((p for p in self._open if p.requests == 0), None)

    def _update_room(self) -> None:
        if len(self._open) < self.cap or self._idlest() is not None:
            self._room.set()
        else:
            self._room.clear()

    async def room(self) -> None:
        """Until a connection may be accepted: below the cap, or an idle one can give way."""
        await self._room.wait()

    def make_room(self) -> bool:
        """At the cap, close the connection idle the longest; False if none can give way."""
        if len(self._open) < self.cap:
            return True
        idlest = self._idlest()
        if idlest is None:
            return False
        self.evicted += 1
        held = self._cap_reached.allow()
        if held is not None:
            log.warning(
                "local API: %d connections open, the most it takes; closing the one idle the "
                "longest for each new one (%d closed so far)",
                len(self._open),
                self.evicted,
            )
        self.closed(idlest)
        idlest.force_close()
        return True

    def accept_failed(self, exc: OSError) -> None:
        self.accept_errors += 1
        held = self._accept_errors.allow()
        if held is not None:
            log.error(
                "local API: accepting a connection failed: %s%s",
                exc.strerror or exc,
                held_note(held),
            )


class ApiProtocol(web.RequestHandler):
    """aiohttp's RequestHandler, counted by `Connections`, answering parser errors in JSON."""

    def __init__(self, manager: web.Server, connections: Connections, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.connections = connections
        self.requests = 0
        """Requests in progress (the API's middleware counts them)."""
        self.lost = asyncio.Event()
        """Set when the client is gone: an event stream ends at once, its slot freed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.connections.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.connections.closed(self)
        self.lost.set()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # As aiohttp's own: an answer is on its way already, the connection is broken.
            raise ConnectionError("an answer was sent already; cannot send an error")
        if status >= 500:
            log.error("unhandled error answering a request", exc_info=exc)
            response = error_response(500, "internal_error", "internal error; see the posd log")
        else:
            status, code, text = _parser_refusal(exc)
            held = self.connections.bad_requests.allow()
            if held is not None:
                log.info("bad HTTP request refused (%d %s)%s", status, code, held_note(held))
            response = error_response(status, code, text)
        response.force_close()
        return response


def _parser_refusal(exc: BaseException | None) -> tuple[int, str, str]:
    """Status, code and message for a request aiohttp's parser refused; the message never
    quotes the request (it may be anything, card data included)."""
    if isinstance(exc, LineTooLong):
        return (
            431,
            "request_too_large",
            f"a request line or header is longer than {MAX_LINE_SIZE} bytes",
        )
    if isinstance(exc, BadHttpMethod):
        return 501, "unknown_method", "the request's method is not an HTTP method posd knows"
    if isinstance(exc, BadStatusLine):
        return 400, "bad_request", "the request line is not HTTP/1.x: METHOD /path HTTP/1.1"
    if isinstance(exc, HttpProcessingError) and "Transfer-Encoding" in str(exc):
        return 400, "bad_request", "Content-Length and Transfer-Encoding together: send one"
    if isinstance(exc, HttpProcessingError) and "too many headers" in str(exc).lower():
        return 431, "request_too_large", f"more than {MAX_HEADERS} header lines"
    return 400, "bad_request", f"not a valid HTTP request ({HTTPStatus(400).phrase})"


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: a connection with a request in progress never gives way."""
    protocol = request.protocol
    if not isinstance(protocol, ApiProtocol):
        return await handler(request)
    protocol.requests += 1
    protocol.connections.active(protocol)
    try:
        return await handler(request)
    finally:
        protocol.requests -= 1
        protocol.connections.active(protocol)


class BoundedSite(web.BaseSite):
    """A listening socket whose connections are accepted by posd (see the module doc)."""

    __slots__ = ("_accepting", "_connections", "_listen", "_site_name")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        connections: Connections,
        name: str,
    ) -> None:
        super().__init__(runner)
        self._listen = sock
        self._connections = connections
        self._site_name = name
        self._accepting: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self._site_name

    async def start(self) -> None:
        await super().start()
        self._listen.setblocking(False)
        self._listen.listen(128)
        self._accepting = asyncio.create_task(self._accept(), name=f"accept {self._site_name}")

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.wait({self._accepting})  # keeps a cancellation of our own
            self._accepting = None
        self._listen.close()
        await super().stop()

    def _protocol(self) -> ApiProtocol:
        server = self._runner.server
        assert server is not None
        return ApiProtocol(
            server,
            self._connections,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=REQUEST_TIMEOUT_S,
            lingering_time=LINGER_S,
            max_line_size=MAX_LINE_SIZE,
            max_field_size=MAX_FIELD_SIZE,
            max_headers=MAX_HEADERS,
            # Bodies are a few hundred bytes of JSON: a compressed one is refused (routes.py).
            auto_decompress=False,
            access_log=None,
        )

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._connections.room()
            try:
                conn, _ = await loop.sock_accept(self._listen)
            except OSError as exc:
                # EMFILE/ENFILE, ENOBUFS: the socket stays readable, so pause, then retry.
                self._connections.accept_failed(exc)
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            if not self._connections.make_room():
                # Every connection got a request in flight since room() said otherwise.
                conn.close()
                continue
            try:
                await loop.connect_accepted_socket(self._protocol, conn)
            except OSError as exc:
                conn.close()
                self._connections.accept_failed(exc)
