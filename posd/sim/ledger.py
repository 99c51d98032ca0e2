"""The reference ledger: a server speaking ledger-iso8583.md, for the demo, labs and tests.

`LedgerRules` decides answers (no I/O); `LedgerSimulator` serves it over TCP or mutual TLS
with 2-byte framing, and has fault modes (`Faults`) a test can set while it runs. Log lines
name messages by MTI, STAN and masked account only.

The answers, in the order they are decided:
- bad MAC: 63, not acted on and not remembered; before this connection's sign-on: 91; a
  terminal other than the one that signed on here, or outside `terminals`: 58;
- same terminal, STAN and field 7 as a message already answered: that first answer if the
  message is the same (a repeat differs only in its MTI's last digit), else 94;
- purchase: unknown account 14; a card used as a QR account or the reverse 57; QR without
  QT 30; blocked 05; expired (by the ledger's record and clock) 54; 혜택플러스 field 48 whose
  DA is not floor((amount + DA) * BP / 10000) with BP 300-700: 13; over the account's single
  payment limit 61; over the balance 51; else 00 with a new RRN and approval code;
- refund (3=200000): the payment named by 37 and 90 must exist, be approved, not reversed
  and not a refund itself (else 12); refunds totalling more than it: 13;
- advice (0220/0221): booked even below zero (posd approved it within its offline limits),
  with posd's approval code; unknown account 14;
- reversal: of a payment never seen, 00 (and that payment is refused 12 should it come);
  of a declined one, 00; amount not the original's, 13; else the money moves back, 00;
- the rules raising (a bug): 96.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from posd.sim.ledger_accounts import Account, AccountBook
from protocols.emv import mask_pan
from protocols.ledger_messages import (
    LedgerFormatError,
    LedgerRequest,
    LedgerResponse,
    NetworkRequest,
    decode_request,
    encode,
    field7,
    respond,
    respond_network,
    response_mti_for,
)
from protocols.length_prefix import FramingError, LengthPrefixDecoder, frame

log = logging.getLogger(__name__)

BENEFIT_RATES: Final = range(300, 701)
_FIRST_TRANSMISSION: Final = {"0221": "0220", "0401": "0400"}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Payment:
    """A payment the ledger approved: what moved, and what has been undone since."""

    request: LedgerRequest
    account: Account
    rrn: str
    refunded: int = 0
    reversed: bool = False
    refund_of: _Payment | None = None


@dataclass
class LedgerRules:
    """The ledger's decisions. `process` never raises on a well-formed request."""

    accounts: AccountBook
    clock: Callable[[], dt.datetime] = _utc_now
    terminals: frozenset[str] | None = None  # None: any terminal may pay
    _answers: dict[tuple[str, int, str], tuple[LedgerRequest, LedgerResponse]] = field(
        default_factory=dict
    )
    _by_rrn: dict[str, _Payment] = field(default_factory=dict)
    _reversed_unseen: set[tuple[str, int, str]] = field(default_factory=set)
    _serial: int = 0

    def process(self, request: LedgerRequest, mac_valid: bool) -> LedgerResponse:
        if not mac_valid:
            return respond(request, "63")  # not acted on, and not remembered
        key = request.idempotency_key
        prior = self._answers.get(key)
        if prior is not None:
            first_request, first_response = prior
            if _first(first_request) == _first(request):
                return first_response
            return respond(request, "94")  # same STAN and field 7, different message
        if self.terminals is not None and request.terminal_id not in self.terminals:
            response = respond(request, "58")
        elif key in self._reversed_unseen:
            response = respond(request, "12")  # reversed before it arrived: never booked
        elif request.mti == "0200" and request.kind == "purchase":
            response = self._purchase(request)
        elif request.mti == "0200":
            response = self._refund(request)
        elif request.mti in ("0220", "0221"):
            response = self._advice(request)
        else:
            response = self._reversal(request)
        self._answers[key] = (request, response)
        return response

    def balance(self, number: str) -> int | None:
        account = self.accounts.get(number)
        return None if account is None else account.balance

    def _approve(
        self,
        request: LedgerRequest,
        account: Account,
        *,
        auth_code: str | None = None,
        refund_of: _Payment | None = None,
    ) -> LedgerResponse:
        self._serial += 1
        rrn = f"{self._serial:012d}"
        self._by_rrn[rrn] = _Payment(request, account, rrn, refund_of=refund_of)
        code = auth_code if auth_code is not None else f"{self._serial % 1_000_000:06d}"
        return respond(request, "00", rrn=rrn, auth_code=code)

    def _purchase(self, request: LedgerRequest) -> LedgerResponse:
        account = self.accounts.get(request.pan)
        if account is None:
            return respond(request, "14")
        if (request.entry_mode == "qr") != (account.kind == "qr"):
            return respond(request, "57")
        if request.entry_mode == "qr" and request.additional.qr_token is None:
            return respond(request, "30")
        if account.blocked:
            return respond(request, "05")
        if account.expired(self.clock().strftime("%y%m")):
            return respond(request, "54")
        if not _benefit_consistent(request):
            return respond(request, "13")
        if request.amount > account.limit:
            return respond(request, "61")
        if request.amount > account.balance:
            return respond(request, "51")
        account.balance -= request.amount
        return self._approve(request, account)

    def _original_payment(self, request: LedgerRequest) -> _Payment | None:
        original = request.original
        if original is None:
            return None
        prior = self._answers.get((request.terminal_id, original.stan, original.transmission))
        if prior is None or prior[1].rrn is None:
            return None
        return self._by_rrn.get(prior[1].rrn)

    def _refund(self, request: LedgerRequest) -> LedgerResponse:
        payment = self._original_payment(request)
        if (
            payment is None
            or payment.rrn != request.rrn
            or payment.reversed
            or payment.refund_of is not None
        ):
            return respond(request, "12")
        if payment.refunded + request.amount > payment.request.amount:
            return respond(request, "13")
        payment.refunded += request.amount
        payment.account.balance += request.amount
        return self._approve(request, payment.account, refund_of=payment)

    def _advice(self, request: LedgerRequest) -> LedgerResponse:
        account = self.accounts.get(request.pan)
        if account is None:
            return respond(request, "14")
        # posd approved it already, within its offline limits: the ledger books it even
        # if the balance goes below zero, since the customer has the goods.
        account.balance -= request.amount
        return self._approve(request, account, auth_code=request.auth_code)

    def _reversal(self, request: LedgerRequest) -> LedgerResponse:
        original = request.original
        assert original is not None  # the profile requires field 90 in a reversal
        prior = self._answers.get((request.terminal_id, original.stan, original.transmission))
        if prior is None:
            self._reversed_unseen.add((request.terminal_id, original.stan, original.transmission))
            return respond(request, "00")  # never seen: nothing to undo, and it never will be
        if not prior[1].approved:
            return respond(request, "00")  # declined: nothing moved
        if prior[0].amount != request.amount:
            return respond(request, "13")
        payment = self._original_payment(request)
        if payment is None or payment.reversed:
            return respond(request, "00")
        payment.reversed = True
        if payment.refund_of is not None:
            payment.refund_of.refunded -= payment.request.amount
            payment.account.balance -= payment.request.amount
        else:
            payment.account.balance += payment.request.amount - payment.refunded
        return respond(request, "00", rrn=payment.rrn)


def _first(request: LedgerRequest) -> LedgerRequest:
    """The request as first transmitted: a repeat differs only in its MTI's last digit."""
    return replace(request, mti=_FIRST_TRANSMISSION.get(request.mti, request.mti))


def _benefit_consistent(request: LedgerRequest) -> bool:
    """혜택플러스: the discount is floor(original * rate / 10000) of original = charged + DA."""
    rate, discount = request.additional.benefit_rate_bps, request.additional.discount
    if rate is None or discount is None:
        return True
    return rate in BENEFIT_RATES and (request.amount + discount) * rate // 10_000 == discount


# ---- the server -----------------------------------------------------------------------------


@dataclass
class Faults:
    """Misbehaviour a test switches on while the simulator runs."""

    no_answer: bool = False  # financial requests are acted on, their answers never sent
    no_network_answer: bool = False  # 0800s go unanswered
    delay_s: float = 0.0  # every answer waits this long (each on its own, so they can overtake)
    drop_mid_message: bool = False  # the next answer: half a frame, then the connection is cut
    wrong_mac: bool = False  # answers carry a MAC made with another key
    reverse_order: int = 0  # hold this many financial answers, then send them last first
    respond_with: str | None = None  # answer every financial request with this code, not acting


@dataclass(frozen=True)
class Seen:
    """A message the simulator received, as tests check it (no card data)."""

    mti: str
    stan: int
    network_code: str | None = None
    mac_valid: bool = True


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    terminal_id: str | None = None
    signed_on: bool = False
    held: list[bytes] = field(default_factory=list)


def server_ssl_context(cert_file: Path, key_file: Path, client_ca_file: Path) -> ssl.SSLContext:
    """TLS 1.2+ server that requires a client certificate signed by `client_ca_file`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=client_ca_file)
    return context


class LedgerSimulator:
    """The reference ledger server. `async with LedgerSimulator(...) as sim:` listens on
    `sim.port` (port 0 picks a free one)."""

    def __init__(
        self,
        *,
        mac_key: bytes,
        accounts: AccountBook | None = None,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.rules = LedgerRules(accounts or AccountBook.default(), clock)
        self.faults = Faults()
        self.seen: list[Seen] = []
        self.connections_accepted = 0
        self._mac_key = mac_key
        self._wrong_key = bytes(b ^ 0xFF for b in mac_key)
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._message_seen = asyncio.Condition()

    @property
    def port(self) -> int:
        return self._port

    @property
    def connected(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self._host, self._port, ssl=self._ssl
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info(
            "ledger-sim listening on %s:%d (%s)",
            self._host,
            self._port,
            "TLS" if self._ssl else "plain TCP",
        )

    async def close(self) -> None:
        await self._stop_listening()
        self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Let the connection handlers see their aborted sockets and end, rather than be
        # cancelled at loop shutdown (which 3.11's asyncio.streams reports as an error).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                await asyncio.gather(*self._handlers, return_exceptions=True)

    async def __aenter__(self) -> LedgerSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def refuse_connections(self, refuse: bool) -> None:
        """Stop listening (connects are refused, current links cut), or listen again."""
        if refuse:
            await self._stop_listening()
            self.drop_connections()
        elif self._server is None:
            await self.start()

    def drop_connections(self) -> None:
        for connection in list(self._connections):
            connection.writer.transport.abort()

    async def wait_seen(self, predicate: Callable[[Seen], bool], timeout_s: float = 5.0) -> Seen:
        """The first received message matching `predicate`, waiting up to `timeout_s`."""
        async with asyncio.timeout(timeout_s), self._message_seen:
            while True:
                for seen in self.seen:
                    if predicate(seen):
                        return seen
                await self._message_seen.wait()

    async def _stop_listening(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        connection = _Connection(writer)
        self._connections.add(connection)
        self.connections_accepted += 1
        decoder = LengthPrefixDecoder()
        try:
            while data := await reader.read(4096):
                for message in decoder.feed(data):
                    await self._on_message(connection, message)
        except FramingError as exc:
            log.warning("ledger-sim: dropping a connection: %s", exc)
        except (ConnectionError, ssl.SSLError) as exc:
            log.info("ledger-sim: connection ended: %s", exc)
        finally:
            self._connections.discard(connection)
            writer.transport.abort()

    async def _record(self, seen: Seen) -> None:
        async with self._message_seen:
            self.seen.append(seen)
            self._message_seen.notify_all()

    async def _on_message(self, connection: _Connection, data: bytes) -> None:
        try:
            inbound = decode_request(data, self._mac_key)
        except LedgerFormatError as exc:
            log.warning("ledger-sim: rx malformed %s stan=%s: %s", exc.mti, exc.stan, exc)
            self._answer_format_error(connection, exc)
            return
        message = inbound.message
        if isinstance(message, NetworkRequest):
            await self._record(Seen(message.mti, message.stan, message.code))
            log.info("ledger-sim: rx 0800/%s stan=%06d", message.code, message.stan)
            if message.code == "001":
                connection.terminal_id, connection.signed_on = message.terminal_id, True
            elif message.code == "002":
                connection.signed_on = False
            if not self.faults.no_network_answer:
                self._send(connection, encode(respond_network(message, "00"), self._mac_key))
            return
        await self._record(Seen(message.mti, message.stan, None, inbound.mac_valid))
        pan = "-" if message.pan is None else mask_pan(message.pan)
        log.info(
            "ledger-sim: rx %s stan=%06d account=%s amount=%d mac=%s",
            message.mti,
            message.stan,
            pan,
            message.amount,
            "ok" if inbound.mac_valid else "BAD",
        )
        if not connection.signed_on:
            response = respond(message, "91")  # no payment before sign-on; not acted on
        elif message.terminal_id != connection.terminal_id:
            response = respond(message, "58")  # not the terminal that signed on here
        elif self.faults.respond_with is not None:
            response = respond(message, self.faults.respond_with)
        else:
            try:
                response = self.rules.process(message, inbound.mac_valid)
            except Exception:
                # A bug in the rules must not end the connection: the profile's 96 says it.
                log.exception("ledger-sim: system malfunction on %s", message.mti)
                response = respond(message, "96")
        log.info(
            "ledger-sim: tx %s stan=%06d rc=%s", response.mti, response.stan, response.response_code
        )
        if self.faults.no_answer:
            return
        key = self._wrong_key if self.faults.wrong_mac else self._mac_key
        data = encode(response, key)
        if self.faults.reverse_order > 0:
            connection.held.append(data)
            if len(connection.held) < self.faults.reverse_order:
                return
            held, connection.held = connection.held, []
            for item in reversed(held):
                self._send(connection, item)
            return
        self._send(connection, data)

    def _answer_format_error(self, connection: _Connection, exc: LedgerFormatError) -> None:
        if exc.mti is None or exc.stan is None or connection.terminal_id is None:
            return  # nothing to address an answer to
        try:
            response = LedgerResponse(
                mti=response_mti_for(exc.mti),
                stan=exc.stan,
                transmission=field7(self._clock()),
                response_code="30",
                terminal_id=connection.terminal_id,
            )
        except LedgerFormatError:
            return  # not a request MTI: no answer exists for it
        self._send(connection, encode(response, self._mac_key))

    def _send(self, connection: _Connection, message: bytes) -> None:
        task = asyncio.create_task(self._write(connection, frame(message)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, connection: _Connection, data: bytes) -> None:
        if self.faults.delay_s > 0:
            await asyncio.sleep(self.faults.delay_s)
        transport = connection.writer.transport
        if transport.is_closing():
            return
        if self.faults.drop_mid_message:
            self.faults.drop_mid_message = False
            connection.writer.write(data[: len(data) // 2])
            connection.writer.close()  # close, not abort: the half frame goes out first
            return
        connection.writer.write(data)
        with contextlib.suppress(ConnectionError):
            await connection.writer.drain()
