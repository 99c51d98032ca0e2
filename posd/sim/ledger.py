"""The reference ledger: a server speaking ledger-iso8583.md, for the demo, labs and tests.

`LedgerRules` decides answers (no I/O); `LedgerSimulator` serves it over TCP or mutual TLS
with 2-byte framing, and has fault modes (`Faults`) a test can set while it runs. Log lines
name messages by MTI, STAN and masked account only.

Like a real host it answers in profile 2 (the MAC last, 64 or 128), echoes every field a
request carried (`echo=False`: only 11 and 41), puts the issuer's data (91, and the
`issuer_script` 71/72 if one is set) in 55 of its 0210 to a chip payment, and its own clock
(`clock_offset_s` off true UTC) in 7 of its 0810. `latency_s` delays every answer as a WAN
round trip would, in order. Listeners (`add_listener`) are called when a message arrives
and when an answer has been written (`LedgerEvent`), so a test can kill posd at that instant.

The answers, in the order they are decided:
- bad or missing MAC: 63, not acted on and not remembered; malformed: 30; before this
  connection's sign-on: 91; a terminal other than the one that signed on here, or outside
  `terminals`: 58;
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
import hashlib
import inspect
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Final, Literal, TypeVar

from posd.sim.ledger_accounts import Account, AccountBook
from protocols.ber_tlv import Tlv, TlvError, decode_tlv, encode_tlv, find_tag
from protocols.emv import mask_pan
from protocols.iso8583_profile import MAC_FIELDS, FieldValue, encode_message
from protocols.ledger_layout import response_mti_for
from protocols.ledger_messages import (
    LedgerFormatError,
    LedgerRequest,
    LedgerResponse,
    NetworkRequest,
    decode_request,
    encode,
    respond,
    respond_network,
)
from protocols.length_prefix import FramingError, LengthPrefixDecoder, frame

log = logging.getLogger(__name__)

BENEFIT_RATES: Final = range(300, 701)
_FIRST_TRANSMISSION: Final = {"0221": "0220", "0401": "0400"}
_ISSUER_SCRIPT_TAGS: Final = frozenset({0x71, 0x72})
_T = TypeVar("_T")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def issuer_authentication_data(request: LedgerRequest, response_code: str) -> bytes:
    """Tag 91 for a chip payment's 0210: an ARPC (8 bytes) and the ARC (2), as EMV's ARPC
    method 1 lays it out. The ARPC here is a digest of the card's ARQC and the ARC: the
    simulated card does not check it, a real one would check a MAC under the issuer's key."""
    arqc = b""
    with contextlib.suppress(TlvError):
        found = find_tag(decode_tlv(request.icc or b""), 0x9F26)
        arqc = b"" if found is None else found.value
    arc = response_code.encode("ascii")
    arpc = hashlib.sha256(b"ARPC" + arqc + arc).digest()[:8]
    return encode_tlv([Tlv(0x91, arpc + arc)])


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
    """The ledger's decisions. `process` never raises on a well-formed request.

    `echo`: answers carry every field of their request (False: only 11 and 41 of it).
    `issuer_script`: a 71 or 72 template (BER-TLV) added after 91 in the 0210 to a chip
    payment the ledger approves."""

    accounts: AccountBook
    clock: Callable[[], dt.datetime] = _utc_now
    terminals: frozenset[str] | None = None  # None: any terminal may pay
    echo: bool = True
    issuer_script: bytes | None = None
    _answers: dict[tuple[str, int, str], tuple[LedgerRequest, LedgerResponse]] = field(
        default_factory=dict
    )
    _by_rrn: dict[str, _Payment] = field(default_factory=dict)
    _reversed_unseen: set[tuple[str, int, str]] = field(default_factory=set)
    _serial: int = 0

    def __post_init__(self) -> None:
        if self.issuer_script is not None:
            try:
                tags = [item.tag for item in decode_tlv(self.issuer_script)]
            except TlvError:
                tags = []
            if not tags or not set(tags) <= _ISSUER_SCRIPT_TAGS:
                raise ValueError("issuer_script must be BER-TLV of 71 or 72 templates")

    def answer(
        self,
        request: LedgerRequest,
        response_code: str,
        *,
        rrn: str | None = None,
        auth_code: str | None = None,
        icc: bytes | None = None,
    ) -> LedgerResponse:
        """`request` answered `response_code`, echoing it as `echo` says."""
        echo = None if self.echo else ()
        return respond(request, response_code, rrn=rrn, auth_code=auth_code, icc=icc, echo=echo)

    def process(self, request: LedgerRequest, mac_valid: bool) -> LedgerResponse:
        if not mac_valid:
            return self.answer(request, "63")  # not acted on, and not remembered
        key = request.idempotency_key
        prior = self._answers.get(key)
        if prior is not None:
            first_request, first_response = prior
            if _first(first_request) == _first(request):
                return first_response
            return self.answer(request, "94")  # same STAN and field 7, different message
        if self.terminals is not None and request.terminal_id not in self.terminals:
            response = self.answer(request, "58")
        elif key in self._reversed_unseen:
            response = self.answer(request, "12")  # reversed before it arrived: never booked
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
        icc: bytes | None = None,
    ) -> LedgerResponse:
        self._serial += 1
        rrn = f"{self._serial:012d}"
        self._by_rrn[rrn] = _Payment(request, account, rrn, refund_of=refund_of)
        code = auth_code if auth_code is not None else f"{self._serial % 1_000_000:06d}"
        return self.answer(request, "00", rrn=rrn, auth_code=code, icc=icc)

    def _purchase(self, request: LedgerRequest) -> LedgerResponse:
        code = self._purchase_decline(request)
        chip = request.entry_mode == "chip" and request.icc is not None
        icc = issuer_authentication_data(request, code or "00") if chip else None
        if code is not None:
            return self.answer(request, code, icc=icc)
        account = self.accounts.get(request.pan)
        assert account is not None
        account.balance -= request.amount
        if icc is not None and self.issuer_script is not None:
            icc += self.issuer_script
        return self._approve(request, account, icc=icc)

    def _purchase_decline(self, request: LedgerRequest) -> str | None:
        account = self.accounts.get(request.pan)
        if account is None:
            return "14"
        if (request.entry_mode == "qr") != (account.kind == "qr"):
            return "57"
        if request.entry_mode == "qr" and request.additional.qr_token is None:
            return "30"
        if account.blocked:
            return "05"
        if account.expired(self.clock().strftime("%y%m")):
            return "54"
        if not _benefit_consistent(request):
            return "13"
        if request.amount > account.limit:
            return "61"
        if request.amount > account.balance:
            return "51"
        return None

    def _original_payment(self, request: LedgerRequest) -> _Payment | None:
        original = request.original
        if original is None:
            return None
        prior = self._answers.get((request.terminal_id, original.stan, original.transmission))
        if prior is None or not prior[1].approved or prior[1].rrn is None:
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
            return self.answer(request, "12")
        if payment.refunded + request.amount > payment.request.amount:
            return self.answer(request, "13")
        payment.refunded += request.amount
        payment.account.balance += request.amount
        return self._approve(request, payment.account, refund_of=payment)

    def _advice(self, request: LedgerRequest) -> LedgerResponse:
        account = self.accounts.get(request.pan)
        if account is None:
            return self.answer(request, "14")
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
            return self.answer(request, "00")  # never seen: nothing to undo, and it never will be
        if not prior[1].approved:
            return self.answer(request, "00")  # declined: nothing moved
        if prior[0].amount != request.amount:
            return self.answer(request, "13")
        payment = self._original_payment(request)
        if payment is None or payment.reversed:
            return self.answer(request, "00")
        payment.reversed = True
        if payment.refund_of is not None:
            payment.refund_of.refunded -= payment.request.amount
            payment.account.balance -= payment.request.amount
        else:
            payment.account.balance += payment.request.amount - payment.refunded
        return self.answer(request, "00", rrn=payment.rrn)


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
    duplicate: bool = False  # every financial answer is sent twice
    # Per message, as a host that chokes on one request or routes one kind slowly does:
    # financial requests with these STANs are acted on, their answers never sent; ...
    no_answer_stans: set[int] = field(default_factory=set)
    # ... answered with this code, not acted on; ...
    respond_with_stans: dict[int, str] = field(default_factory=dict)
    # ... and answers to these request MTIs wait this long more, each on its own (like delay_s).
    delay_mti: dict[str, float] = field(default_factory=dict)
    # Financial answers carry these field values in place of their own (or beside them),
    # MACed as sent: an echo that contradicts its request, e.g. {4: "000000000001"}.
    tamper: dict[int, FieldValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    """A message the simulator received, as tests check it (no card data)."""

    mti: str
    stan: int
    network_code: str | None = None
    mac_valid: bool = True


EventKind = Literal["received", "answered", "cut"]


@dataclass(frozen=True)
class LedgerEvent:
    """What a listener is told, no card data in it.

    `received`: a message arrived and decoded, before the ledger acts on it. `answered`: an
    answer's last byte has been written to the connection. `cut`: the connection was cut
    after half an answer (`Faults.drop_mid_message`). `mti` and `stan` are the message's;
    `response_code` is the answer's 39.
    """

    kind: EventKind
    mti: str
    stan: int
    network_code: str | None = None
    response_code: str | None = None

    def as_json(self) -> str:
        """One line of JSON, e.g. for a process reporting its events to a test outside it."""
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})


# A listener returns None, or an awaitable the ledger waits for before it goes on (so an
# out-of-process test can hold the ledger at an event until it has acted).
Listener = Callable[[LedgerEvent], Awaitable[None] | None]


@dataclass(frozen=True)
class _Outgoing:
    data: bytes
    event: LedgerEvent
    due: float  # loop time


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    terminal_id: str | None = None
    signed_on: bool = False
    held: list[_Outgoing] = field(default_factory=list)
    last_write: asyncio.Task[None] | None = None


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
    `sim.port` (port 0 picks a free one). `echo`, `issuer_script`, `clock_offset_s` and
    `latency_s` are as the module says; the last two may be changed while it runs."""

    def __init__(
        self,
        *,
        mac_key: bytes,
        accounts: AccountBook | None = None,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], dt.datetime] = _utc_now,
        echo: bool = True,
        issuer_script: bytes | None = None,
        clock_offset_s: float = 0.0,
        latency_s: float = 0.0,
    ) -> None:
        self._true_clock = clock
        self.clock_offset_s = clock_offset_s
        self.latency_s = latency_s
        self.rules = LedgerRules(
            accounts or AccountBook.default(), self.now, echo=echo, issuer_script=issuer_script
        )
        self.faults = Faults()
        self.seen: list[Seen] = []
        self.events: list[LedgerEvent] = []
        self.connections_accepted = 0
        self._mac_key = mac_key
        self._wrong_key = bytes(b ^ 0xFF for b in mac_key)
        self._ssl = ssl_context
        self._host = host
        self._port = port
        self._listeners: list[Listener] = []
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

    def now(self) -> dt.datetime:
        """The ledger's own clock: the true time off by `clock_offset_s`."""
        return self._true_clock() + dt.timedelta(seconds=self.clock_offset_s)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` at every event from now on; returns what stops that."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

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
        return await self._wait(self.seen, predicate, timeout_s)

    async def wait_event(
        self, predicate: Callable[[LedgerEvent], bool], timeout_s: float = 5.0
    ) -> LedgerEvent:
        """The first event matching `predicate`, waiting up to `timeout_s`."""
        return await self._wait(self.events, predicate, timeout_s)

    async def _wait(self, items: list[_T], predicate: Callable[[_T], bool], timeout_s: float) -> _T:
        async with asyncio.timeout(timeout_s), self._message_seen:
            while True:
                for item in items:
                    if predicate(item):
                        return item
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

    async def _tell(self, event: LedgerEvent, seen: Seen | None = None) -> None:
        async with self._message_seen:
            if seen is not None:
                self.seen.append(seen)
            self.events.append(event)
            self._message_seen.notify_all()
        for listener in list(self._listeners):
            try:
                outcome = listener(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("ledger-sim: a listener failed on %s %s", event.kind, event.mti)

    async def _on_message(self, connection: _Connection, data: bytes) -> None:
        try:
            inbound = decode_request(data, self._mac_key)
        except LedgerFormatError as exc:
            log.warning("ledger-sim: rx malformed %s stan=%s: %s", exc.mti, exc.stan, exc)
            self._answer_format_error(connection, exc)
            return
        message = inbound.message
        if isinstance(message, NetworkRequest):
            received = LedgerEvent("received", message.mti, message.stan, message.code)
            await self._tell(received, Seen(message.mti, message.stan, message.code))
            log.info("ledger-sim: rx 0800/%s stan=%06d", message.code, message.stan)
            if message.code == "001":
                connection.terminal_id, connection.signed_on = message.terminal_id, True
            elif message.code == "002":
                connection.signed_on = False
            if not self.faults.no_network_answer:
                answer = respond_network(message, "00", ledger_time=self.now())
                event = LedgerEvent("answered", answer.mti, answer.stan, message.code, "00")
                self._send(connection, _Outgoing(encode(answer, self._mac_key), event, 0.0))
            return
        await self._tell(
            LedgerEvent("received", message.mti, message.stan),
            Seen(message.mti, message.stan, None, inbound.mac_valid),
        )
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
            response = self.rules.answer(message, "91")  # no payment before sign-on
        elif message.terminal_id != connection.terminal_id:
            response = self.rules.answer(message, "58")  # not the terminal that signed on here
        elif self.faults.respond_with is not None:
            response = self.rules.answer(message, self.faults.respond_with)
        elif message.stan in self.faults.respond_with_stans:
            response = self.rules.answer(message, self.faults.respond_with_stans[message.stan])
        else:
            try:
                response = self.rules.process(message, inbound.mac_valid)
            except Exception:
                # A bug in the rules must not end the connection: the profile's 96 says it.
                log.exception("ledger-sim: system malfunction on %s", message.mti)
                response = self.rules.answer(message, "96")
        log.info(
            "ledger-sim: tx %s stan=%06d rc=%s", response.mti, response.stan, response.response_code
        )
        if self.faults.no_answer or message.stan in self.faults.no_answer_stans:
            return
        key = self._wrong_key if self.faults.wrong_mac else self._mac_key
        event = LedgerEvent("answered", response.mti, response.stan, None, response.response_code)
        if self.faults.tamper:
            data = encode_message(response.mti, response.fields() | self.faults.tamper, key)
        else:
            data = encode(response, key)
        outgoing = _Outgoing(data, event, 0.0)
        slow = self.faults.delay_mti.get(message.mti, 0.0)
        if slow > 0:
            self._send(connection, outgoing, extra_s=slow)
            return
        if self.faults.reverse_order > 0:
            connection.held.append(outgoing)
            if len(connection.held) < self.faults.reverse_order:
                return
            held, connection.held = connection.held, []
            for item in reversed(held):
                self._send(connection, item)
            return
        self._send(connection, outgoing)
        if self.faults.duplicate:
            self._send(connection, outgoing)

    def _answer_format_error(self, connection: _Connection, exc: LedgerFormatError) -> None:
        if exc.mti is None or exc.stan is None or connection.terminal_id is None:
            return  # nothing to address an answer to
        # A MAC missing, or not where profile 2 puts it, is a security violation.
        code = "63" if exc.field in {str(n) for n in MAC_FIELDS} else "30"
        try:
            response = LedgerResponse(
                mti=response_mti_for(exc.mti),
                stan=exc.stan,
                response_code=code,
                terminal_id=connection.terminal_id,
            )
        except LedgerFormatError:
            return  # not a request MTI: no answer exists for it
        event = LedgerEvent("answered", response.mti, response.stan, None, code)
        self._send(connection, _Outgoing(encode(response, self._mac_key), event, 0.0))

    def _send(self, connection: _Connection, outgoing: _Outgoing, extra_s: float = 0.0) -> None:
        """Write `outgoing` `latency_s` from now, after the answers before it on this
        connection (a TCP path keeps order); `Faults.delay_s` and `extra_s` delay it on its
        own."""
        loop = asyncio.get_running_loop()
        alone_s = self.faults.delay_s + extra_s
        outgoing = replace(outgoing, due=loop.time() + self.latency_s + alone_s)
        after = None if alone_s > 0 else connection.last_write
        task = asyncio.create_task(self._write(connection, outgoing, after))
        if alone_s <= 0:
            connection.last_write = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(
        self, connection: _Connection, outgoing: _Outgoing, after: asyncio.Task[None] | None
    ) -> None:
        if after is not None and not after.done():
            await asyncio.wait([after])
        wait = outgoing.due - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        transport = connection.writer.transport
        if transport.is_closing():
            return
        data = frame(outgoing.data)
        if self.faults.drop_mid_message:
            self.faults.drop_mid_message = False
            connection.writer.write(data[: len(data) // 2])
            connection.writer.close()  # close, not abort: the half frame goes out first
            await self._tell(replace(outgoing.event, kind="cut"))
            return
        connection.writer.write(data)
        with contextlib.suppress(ConnectionError):
            await connection.writer.drain()
        await self._tell(outgoing.event)
