"""The link to the central ledger (ledger-iso8583.md): one persistent connection, a component.

- TLS 1.2+ with the terminal's client certificate, the ledger checked against the configured
  CA and host name; plain TCP only when `ledger.tls = false`.
- Sign-on (0800/001) after every connect; `link` is "up" only after its 0810 39=00, so no
  financial message goes out before. An echo (0800/301) follows 60 s without traffic from the
  ledger, and comes at once after a request timed out; no answer in 10 s, a closed socket or a
  framing error takes the link down, and it is rebuilt with capped exponential backoff
  (1 s doubling to 60 s), each wait drawn over its whole interval; a refused sign-on counts
  as a failure like a refused connect. Sign-off (0800/002) on an orderly stop.
- `send` MACs a request, writes it, and waits for the answer with the same MTI class and STAN
  (answers may come out of order). An answer echoes its request: one that contradicts it on
  41, or on 4 where it carries 4, is malformed (protocols.ledger_answers). What went wrong
  decides what the caller must do:
  LedgerUnavailable (nothing went out), LedgerTimeout and its subclasses (it went out and no
  valid answer came: reverse it), LedgerSecurityError (the answer's MAC is wrong: treat it as
  no answer; the payment must be reversed too). A malformed answer fails its request as soon
  as it arrives (LedgerBadResponse) whenever its MTI and STAN can be read, which the profile
  layer does from their fixed places even when the rest of the message is broken.
- Every 0810 carries the ledger's clock in field 7: `clock_skew_s` is how far it is ahead of
  posd's (negative: behind), measured against the middle of the exchange; beyond
  CLOCK_MAX_SKEW_S (QR expiry checks depend on posd's clock) it is a warning in the log as
  it crosses the bound, then at most hourly while it lasts.
Log lines name messages by MTI and STAN only: no card data passes through a log call here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from posd.config import Config, read_mac_key
from posd.logs import Throttle
from protocols.ledger_answers import AnswerMismatch, check_answer
from protocols.ledger_fields import clock_skew_s
from protocols.ledger_messages import (
    ECHO,
    SIGN_OFF,
    SIGN_ON,
    LedgerFormatError,
    LedgerRequest,
    LedgerResponse,
    NetworkCode,
    NetworkRequest,
    NetworkResponse,
    decode_response,
    encode,
    network_request,
)
from protocols.length_prefix import FramingError, LengthPrefixDecoder, frame

log = logging.getLogger(__package__)

Link = Literal["up", "down", "connecting"]
StanSource = Callable[[], Awaitable[int]]
_Answer = LedgerResponse | NetworkResponse
_Request = LedgerRequest | NetworkRequest

CLOCK_MAX_SKEW_S = 30.0
"""How far posd's clock may be from the ledger's (ledger-iso8583.md) before it is a warning."""
CLOCK_WARNING_INTERVAL_S = 3600.0
"""While the clocks stay too far apart, the warning is repeated this often, not per echo."""


class LedgerError(Exception):
    """Base of the ledger link's errors."""


class LedgerUnavailable(LedgerError):
    """The link is down: the request was not sent, nothing went out."""


class LedgerTimeout(LedgerError):
    """The request went out and no valid answer came in time: the caller must reverse it."""


class LedgerLinkLost(LedgerTimeout):
    """The link dropped after the request went out (the ledger may have acted on it)."""


class LedgerBadResponse(LedgerTimeout):
    """The answer broke the profile (malformed, or for another terminal): no valid answer."""


class LedgerSecurityError(LedgerError):
    """The answer's MAC is wrong: it is no valid answer, and the link may be tampered with."""


@dataclass(frozen=True)
class LedgerTls:
    """Mutual TLS: the CA that signed the ledger's certificate, and this terminal's own."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def context(self) -> ssl.SSLContext:
        # Reads the files on every connect, so renewed certificates take effect on reconnect.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass(frozen=True)
class LedgerTimings:
    """The link's intervals (ledger-iso8583.md's values by default; tests shorten them)."""

    connect_timeout_s: float = 10.0
    sign_on_timeout_s: float = 10.0
    echo_idle_s: float = 60.0
    echo_timeout_s: float = 10.0
    sign_off_timeout_s: float = 2.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"ledger timing {name} must be positive")
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("ledger timing backoff_initial_s must not exceed backoff_max_s")

    def backoff(self, failures: int) -> float:
        """Delay before reconnect attempt after `failures` consecutive failures: anywhere in
        the whole interval up to the doubling ceiling ("full jitter"), so thousands of
        terminals coming back after a ledger outage spread over it instead of arriving in
        step. The floor (a tenth of the first interval) keeps a client from spinning."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(failures - 1, 30))
        return random.uniform(self.backoff_floor_s, ceiling)

    @property
    def backoff_floor_s(self) -> float:
        return self.backoff_initial_s / 10


class _LinkDown(Exception):
    """The current connection is finished; the message says why."""


@dataclass(eq=False)
class _Waiting:
    """A request that went out, and the future its answer is delivered to."""

    request: _Request
    future: asyncio.Future[_Answer]


@dataclass(eq=False)
class _Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    last_traffic: float  # when the ledger last sent a byte (or the connection was made)
    pending: dict[tuple[str, int], _Waiting] = field(default_factory=dict)
    drain_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    probe: asyncio.Event = field(default_factory=asyncio.Event)  # echo now, don't wait for idle
    signed_on: bool = False
    sign_off_stan: int | None = None
    dead: bool = False

    def fail_pending(self, reason: str) -> None:
        for waiting in self.pending.values():
            if not waiting.future.done():
                waiting.future.set_exception(LedgerLinkLost(reason))


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LedgerClient:
    """The ledger link component; `send` is what the payment flow and the SAF queue call."""

    name = "ledger"
    config_sections = ("terminal", "ledger")

    def __init__(
        self,
        *,
        host: str,
        port: int,
        terminal_id: str,
        mac_key: bytes | Callable[[], bytes],
        stan_source: StanSource,
        tls: LedgerTls | None = None,
        timings: LedgerTimings | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._host = host
        self._port = port
        self._terminal_id = terminal_id
        self._mac_key_source = mac_key
        self._mac_key = mac_key if isinstance(mac_key, bytes) else b""
        self._stan_source = stan_source
        self._tls = tls
        self._timings = timings or LedgerTimings()
        self._clock = clock
        self._link: Link = "down"
        self._session: _Session | None = None
        self._up = asyncio.Event()
        self.last_rtt_ms: float | None = None
        self.last_error: str | None = None
        self.clock_skew_s: float | None = None
        """Seconds the ledger's clock is ahead of posd's (its last 0810); None before one."""
        self._skew_warnings: Throttle | None = None  # while the skew is beyond the bound
        self.on_link: Callable[[Link], None] | None = None
        """Called after every change of `link` (monitoring's ledger events); must not raise."""

    @classmethod
    def from_config(
        cls, config: Config, stan_source: StanSource, timings: LedgerTimings | None = None
    ) -> LedgerClient:
        """The client of `config`'s [ledger]; the MAC key file is read when it runs."""
        ledger = config.ledger
        tls = None
        if ledger.tls:
            if ledger.ca_file is None or ledger.cert_file is None or ledger.key_file is None:
                raise ValueError("ledger.tls needs ca_file, cert_file and key_file")
            tls = LedgerTls(ledger.ca_file, ledger.cert_file, ledger.key_file)
        return cls(
            host=ledger.host,
            port=ledger.port,
            terminal_id=config.terminal.id,
            mac_key=lambda: read_mac_key(config),
            stan_source=stan_source,
            tls=tls,
            timings=timings,
        )

    # ---- what the flow and the status read ----------------------------------------------

    @property
    def link(self) -> Link:
        return self._link

    def is_up(self) -> bool:
        return self._link == "up"

    async def wait_up(self) -> None:
        """Return once the link is up (signed on). Callers bound it with a timeout."""
        while not self.is_up():
            await self._up.wait()

    async def send(self, message: LedgerRequest, timeout_s: float) -> LedgerResponse:
        """Send a financial request and return its answer (see the module doc for errors)."""
        session = self._session
        if session is None or not self.is_up() or session.dead or session.writer.is_closing():
            raise LedgerUnavailable(f"ledger link is {self._link}")
        answer = await self._exchange(
            session, message, timeout_s, f"{message.mti} stan {message.stan:06d}"
        )
        if not isinstance(answer, LedgerResponse):
            raise LedgerBadResponse("a network answer came for a financial request")
        return answer

    # ---- the component ----------------------------------------------------------------------

    async def run(self, started: Callable[[], None]) -> None:
        if not isinstance(self._mac_key_source, bytes):
            self._mac_key = self._mac_key_source()
        started()
        failures = 0
        try:
            while True:
                self._set_link("connecting")
                signed_on = False
                try:
                    session = await self._connect()
                except (OSError, TimeoutError) as exc:
                    self._down(f"cannot connect to {self._host}:{self._port}: {_describe(exc)}")
                else:
                    try:
                        await self._serve(session)
                    except _LinkDown as exc:
                        self._down(str(exc))
                    finally:
                        self._close(session)
                    signed_on = session.signed_on
                # A link that was up comes back after the shortest wait; failures back off.
                failures = 1 if signed_on else failures + 1
                delay = self._timings.backoff(failures)
                log.info("ledger: reconnecting in %.1f s", delay)
                await asyncio.sleep(delay)
        finally:
            self._set_link("down")

    # ---- internals -----------------------------------------------------------------------------

    def _set_link(self, link: Link) -> None:
        changed = link != self._link
        self._link = link
        if link == "up":
            self._up.set()
        else:
            self._up.clear()
        if changed and self.on_link is not None:
            self.on_link(link)

    def _down(self, reason: str) -> None:
        self.last_error = reason
        self._set_link("down")
        log.warning("ledger link down: %s", reason)

    async def _connect(self) -> _Session:
        context = self._tls.context() if self._tls is not None else None
        async with asyncio.timeout(self._timings.connect_timeout_s):
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=context,
                server_hostname=self._host if context is not None else None,
            )
        return _Session(reader, writer, asyncio.get_running_loop().time())

    def _close(self, session: _Session) -> None:
        session.dead = True
        session.fail_pending("ledger link closed")
        if self._session is session:
            self._session = None
        session.writer.transport.abort()

    async def _serve(self, session: _Session) -> None:
        reader_task = asyncio.create_task(self._read_loop(session))
        self._session = session
        try:
            await self._sign_on(session, reader_task)
            try:
                await self._keepalive(session, reader_task)
            except asyncio.CancelledError:
                await self._sign_off(session)
                raise
        finally:
            reader_task.cancel()
            # Not `await reader_task` under suppress(CancelledError): that also swallows this
            # task's own cancellation when it lands meanwhile, and the client never stops.
            await asyncio.wait({reader_task})

    async def _sign_on(self, session: _Session, reader_task: asyncio.Task[str]) -> None:
        timeout = self._timings.sign_on_timeout_s
        try:
            answer = await self._network(session, SIGN_ON, timeout, reader_task)
        except _LinkDown as exc:
            if self._tls is not None and reader_task.done():
                raise _LinkDown(
                    f"{exc} before the sign-on answer (a ledger that refuses this terminal's "
                    "certificate does this: check ledger.cert_file against the ledger's CA)"
                ) from None
            raise
        if not answer.approved:
            raise _LinkDown(f"sign-on refused by the ledger (39={answer.response_code})")
        # The sign-off's STAN is taken now: at shutdown the journal that hands them out may
        # already be closed.
        session.sign_off_stan = await self._stan_source()
        session.signed_on = True
        self._set_link("up")
        log.info(
            "ledger link up: %s:%d signed on (%.0f ms)",
            self._host,
            self._port,
            self.last_rtt_ms or 0.0,
        )

    async def _sign_off(self, session: _Session) -> None:
        """Best effort, while being cancelled: nothing here may replace the cancellation."""
        if not self.is_up() or session.sign_off_stan is None:
            return
        self._set_link("down")
        timeout = self._timings.sign_off_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await self._network(session, SIGN_OFF, timeout, None, session.sign_off_stan)
            log.info("ledger: signed off")
        except Exception as exc:
            log.info("ledger: no sign-off answer (%s)", exc)

    async def _keepalive(self, session: _Session, reader_task: asyncio.Task[str]) -> None:
        """Echo after echo_idle_s without a byte from the ledger, or at once after a request
        timed out: a link that swallows requests is found out before the next payment waits."""
        loop = asyncio.get_running_loop()
        while True:
            idle_left = self._timings.echo_idle_s - (loop.time() - session.last_traffic)
            if idle_left > 0 and not session.probe.is_set():
                probe = asyncio.ensure_future(session.probe.wait())
                try:
                    done, _ = await asyncio.wait(
                        {reader_task, probe}, timeout=idle_left, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    probe.cancel()
                if reader_task in done:
                    raise _LinkDown(reader_task.result())
                continue
            session.probe.clear()
            answer = await self._network(session, ECHO, self._timings.echo_timeout_s, reader_task)
            if not answer.approved:
                raise _LinkDown(f"echo refused by the ledger (39={answer.response_code})")

    async def _network(
        self,
        session: _Session,
        code: NetworkCode,
        timeout_s: float,
        reader_task: asyncio.Task[str] | None,
        stan: int | None = None,
    ) -> NetworkResponse:
        if stan is None:
            stan = await self._stan_source()
        sent_at = self._clock()
        request = network_request(
            code, stan=stan, transmitted_at=sent_at, terminal_id=self._terminal_id
        )
        what = f"0800/{code} stan {stan:06d}"
        try:
            answer = await self._exchange(session, request, timeout_s, what)
        except LedgerTimeout as exc:
            if reader_task is not None and reader_task.done() and not reader_task.cancelled():
                raise _LinkDown(reader_task.result()) from None
            raise _LinkDown(str(exc)) from None
        except LedgerError as exc:
            raise _LinkDown(str(exc)) from None
        if not isinstance(answer, NetworkResponse):
            raise _LinkDown("a financial answer came for a network request")
        # The ledger read its clock between the two: the middle is the best guess of when.
        received_at = self._clock()
        self._note_ledger_clock(answer, sent_at + (received_at - sent_at) / 2)
        return answer

    def _note_ledger_clock(self, answer: NetworkResponse, local: dt.datetime) -> None:
        try:
            skew = round(clock_skew_s(answer.transmission, local), 1)
        except LedgerFormatError:
            log.warning(
                "ledger: the clock in 0810 stan %06d (field 7) is not within a year of posd's",
                answer.stan,
            )
            return
        self.clock_skew_s = skew
        if abs(skew) <= CLOCK_MAX_SKEW_S:
            if self._skew_warnings is not None:
                log.info("ledger: posd's clock is within %.1f s of the ledger's again", abs(skew))
            self._skew_warnings = None
            return
        if self._skew_warnings is None:  # just crossed the bound: say it now
            self._skew_warnings = Throttle(
                CLOCK_WARNING_INTERVAL_S, clock=lambda: self._clock().timestamp()
            )
        if self._skew_warnings.allow() is not None:
            log.warning(
                "ledger: the ledger's clock is %+.0f s from posd's (more than %.0f s): QR codes "
                "are checked against posd's clock; check its time synchronisation",
                skew,
                CLOCK_MAX_SKEW_S,
            )

    async def _exchange(
        self, session: _Session, request: _Request, timeout_s: float, what: str
    ) -> _Answer:
        key = request.match_key
        if key in session.pending:
            raise ValueError(f"{what}: a request with this STAN is already waiting")
        message = encode(request, self._mac_key)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Answer] = loop.create_future()
        waiting = _Waiting(request, future)
        session.pending[key] = waiting
        try:
            # No await between this check and the write: what passes it goes out.
            if session.dead or session.writer.is_closing():
                raise LedgerUnavailable(f"{what}: the ledger link went down before sending")
            started = loop.time()
            session.writer.write(frame(message))
            try:
                async with session.drain_lock:
                    await session.writer.drain()
            except OSError as exc:
                raise LedgerLinkLost(f"{what}: link lost while sending: {_describe(exc)}") from None
            try:
                async with asyncio.timeout(timeout_s):
                    answer = await future
            except TimeoutError:
                session.probe.set()
                raise LedgerTimeout(f"{what}: no answer in {timeout_s:g} s") from None
            self.last_rtt_ms = (loop.time() - started) * 1000.0
            return answer
        finally:
            if session.pending.get(key) is waiting:
                del session.pending[key]

    async def _read_loop(self, session: _Session) -> str:
        """Read answers until the connection ends; returns why it ended."""
        decoder = LengthPrefixDecoder()
        reason = "ledger closed the connection"
        try:
            while data := await session.reader.read(4096):
                session.last_traffic = asyncio.get_running_loop().time()
                for message in decoder.feed(data):
                    self._dispatch(session, message)
                decoder.feed(b"")
        except FramingError as exc:
            reason = f"framing error from the ledger: {exc}"
        except OSError as exc:
            reason = f"connection error: {_describe(exc)}"
        finally:
            session.dead = True
            if self._session is session and self._link == "up":
                self._set_link("down")
            session.fail_pending(reason)
        return reason

    def _dispatch(self, session: _Session, data: bytes) -> None:
        try:
            inbound = decode_response(data, self._mac_key)
        except LedgerFormatError as exc:
            stan = "unreadable" if exc.stan is None else f"{exc.stan:06d}"
            log.warning("ledger: malformed answer (%s stan %s): %s", exc.mti, stan, exc)
            broken = None
            if exc.mti is not None and exc.stan is not None:
                broken = session.pending.get((exc.mti, exc.stan))
            if broken is not None and not broken.future.done():
                broken.future.set_exception(LedgerBadResponse(f"malformed answer: {exc}"))
            return
        answer = inbound.message
        waiting = session.pending.get(answer.match_key)
        if waiting is None or waiting.future.done():
            # Typically an answer that came after its request timed out (and is being reversed).
            log.warning(
                "ledger: answer %s stan %06d matches no waiting request", answer.mti, answer.stan
            )
            return
        future = waiting.future
        if not inbound.mac_valid:
            log.error("ledger: answer %s stan %06d has a wrong MAC", answer.mti, answer.stan)
            self.last_error = f"wrong MAC on {answer.mti} stan {answer.stan:06d}"
            future.set_exception(LedgerSecurityError(self.last_error))
            return
        try:
            # The echoes posd relies on: 41, and 4 where the answer carries it. The error
            # names the field, never its content (an echo may be card data).
            check_answer(waiting.request, answer)
        except AnswerMismatch as exc:
            log.warning(
                "ledger: answer %s stan %06d contradicts its request (%s): no answer",
                answer.mti,
                answer.stan,
                exc,
            )
            future.set_exception(LedgerBadResponse(f"answer contradicts its request: {exc}"))
            return
        future.set_result(answer)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text
