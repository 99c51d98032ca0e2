"""The card reader: an SRL/1 device on a serial port (RS-232 or USB-CDC).

`CardReader` is a component: `run()` opens the port (a path, or `auto`:
/dev/posd-reader if it exists, else every candidate port is PINGed and the
first to PONG is used), PINGs, and keeps the link up: an unplugged reader
(the device node vanishes, reads fail with EIO) is looked for again with a
doubling delay, and a link that goes down after its retransmissions is
closed, reopened and PINGed again.

`read_card()` and `complete()` are the payment flow's operations; one runs
at a time. They raise `ReaderUnavailable` when the reader is not ready or
the link drops under them. The first read on every link is preceded by a
CANCEL (a reader keeps a read from before a crash or a dropped link), and a
`busy` answer to START_READ gets a CANCEL and one retry. Card numbers never
appear whole in a log line, an exception or a repr; vendor text (PONG, ERROR)
is kept and shown only as protocols.vendor_text.display_text makes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import serial_asyncio_fast

from drivers.card_reader.session import (
    LOST,
    PORT_CLOSE_TIMEOUT_S,
    WARNING_INTERVAL_S,
    ReaderUnavailable,
    Session,
    Throttle,
)
from drivers.serial_ports import (
    OPEN_ERRORS,
    open_errno,
    open_error_detail,
    reader_candidates,
    without_ports,
)
from protocols import srl_messages as srl
from protocols.ber_tlv import TlvError, decode_tlv, find_tag
from protocols.emv import EmvError, Track2, expiry_from_5f24, mask_pan, pan_from_5a
from protocols.srl_link import (
    LinkStats,
)
from protocols.vendor_text import display_text

__all__ = [
    "CardDataError",
    "CardRead",
    "CardReader",
    "CompleteResult",
    "ReadFailed",
    "ReaderInfo",
    "ReaderState",
    "ReaderUnavailable",
    "card_read_from",
    "ping_port",
]

log = logging.getLogger(__package__)

ReaderState = Literal["ready", "busy", "disconnected", "error"]
EntryModeName = Literal["chip", "contactless", "magstripe"]

_ENTRY_NAMES: dict[srl.EntryMode, EntryModeName] = {
    srl.EntryMode.CHIP: "chip",
    srl.EntryMode.CONTACTLESS: "contactless",
    srl.EntryMode.MAGSTRIPE: "magstripe",
}

# A PING is answered at once; three retransmissions take 1.2 s at most.
PING_TIMEOUT_S = 2.0
# READ_STARTED, CANCELLED: the reader answers without waiting for a card.
REPLY_TIMEOUT_S = 2.0
# COMPLETE runs the card's second GENERATE AC, which takes a slow card a second or two.
COMPLETE_TIMEOUT_S = 5.0
# Opening runs in an executor thread too; a probe ended early waits this long for it.
PORT_OPEN_TIMEOUT_S = 2.0


class CardDataError(ValueError):
    """CARD_DATA whose TLV lacks what a payment needs; the message never quotes card data."""


@dataclass(frozen=True, slots=True)
class ReaderInfo:
    """What the reader says it is, as it may be shown (protocols.vendor_text.display_text):
    it is logged, kept in the state object and printed by `posd status`."""

    model: str
    firmware: str
    serial: str

    @classmethod
    def from_pong(cls, pong: srl.Pong) -> ReaderInfo:
        return cls(display_text(pong.model), display_text(pong.firmware), display_text(pong.serial))


class ReaderBusy(ReaderUnavailable):
    """The reader answered ERROR busy: a read is in progress that posd did not start."""


@dataclass(frozen=True, slots=True)
class CardRead:
    """A card as read: what the payment and the ledger request need."""

    entry_mode: EntryModeName
    pan: str
    expiry: str | None
    """YYMM."""
    track2: str | None
    """ISO 8583 field 35 form (PAN '=' YYMM service code ...)."""
    pan_sequence: int | None
    tlv: bytes = field(repr=False)
    """The BER-TLV as the reader sent it: field 55, and encrypted storage."""

    def __repr__(self) -> str:
        return (
            f"CardRead(entry_mode={self.entry_mode!r}, pan={mask_pan(self.pan)!r}, "
            f"tlv=<{len(self.tlv)} bytes>)"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class ReadFailed:
    """A read that ended without a card: timeout, cancelled, card_error, use_chip,
    card_removed or unsupported_card."""

    reason: str


@dataclass(frozen=True, slots=True)
class CompleteResult:
    """The card's verdict at COMPLETE: approved (TC) or declined (AAC)."""

    approved: bool
    tlv: bytes = field(default=b"", repr=False)


def card_read_from(msg: srl.CardData) -> CardRead:
    """The CardRead in a CARD_DATA message. Raises CardDataError when it has no usable PAN."""
    entry = _ENTRY_NAMES[msg.entry]
    try:
        items = decode_tlv(msg.tlv)
        track2: Track2 | None = None
        found_57 = find_tag(items, 0x57)
        if found_57 is not None:
            track2 = Track2.parse(found_57.value)
        if entry == "magstripe":
            if track2 is None:
                raise CardDataError("magstripe CARD_DATA without track 2 (tag 57)")
            return CardRead(
                entry, track2.pan, track2.expiry, track2.iso8583_field35(), None, msg.tlv
            )
        found_5a = find_tag(items, 0x5A)
        if found_5a is not None:
            pan = pan_from_5a(found_5a.value)
        elif track2 is not None:
            pan = track2.pan
        else:
            raise CardDataError(f"{entry} CARD_DATA without a PAN (tag 5A or 57)")
        found_5f24 = find_tag(items, 0x5F24)
        if found_5f24 is not None:
            expiry: str | None = expiry_from_5f24(found_5f24.value)[:4]
        else:
            expiry = track2.expiry if track2 is not None else None
        found_5f34 = find_tag(items, 0x5F34)
        sequence = _pan_sequence(found_5f34.value) if found_5f34 is not None else None
    except (TlvError, EmvError) as exc:
        raise CardDataError(f"{entry} CARD_DATA: {exc}") from None
    return CardRead(
        entry,
        pan,
        expiry,
        track2.iso8583_field35() if track2 is not None else None,
        sequence,
        msg.tlv,
    )


def _pan_sequence(value: bytes) -> int:
    digits = value.hex()
    if len(value) != 1 or not digits.isdecimal():
        raise CardDataError("5F34: PAN sequence number is not one BCD byte")
    return int(digits)


"""Put in a session's inbox when its link ends, to wake whoever waits on it."""


def _add_stats(a: LinkStats, b: LinkStats) -> LinkStats:
    return LinkStats(**{f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(a)})


class _OpenFailed(Exception):
    def __init__(self, state: ReaderState, message: str) -> None:
        super().__init__(message)
        self.state: ReaderState = state


class CardReader:
    """The card reader component. ``port`` None or "auto" finds the reader itself.

    ``exclude`` names ports `auto` never PINGs (the serial QR scanner's); a symlink such as
    /dev/posd-scanner counts as the tty it points at.
    """

    name = "card_reader"
    config_sections = ("card_reader",)

    def __init__(
        self,
        port: str | None = None,
        baudrate: int = 115200,
        *,
        candidates: Callable[[], Sequence[str]] = reader_candidates,
        exclude: Collection[str] = (),
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 5.0,
        trace: Callable[[str], None] | None = None,
        initial_seq: int | None = None,
    ) -> None:
        if not 0 < reconnect_initial_s <= reconnect_max_s:
            raise ValueError("reconnect delays need 0 < reconnect_initial_s <= reconnect_max_s")
        self._configured = None if port in (None, "auto") else port
        self.baudrate = baudrate
        self._candidates = candidates
        self._exclude = tuple(exclude)
        self._reconnect_initial_s = reconnect_initial_s
        self._reconnect_max_s = reconnect_max_s
        self._trace_fn = trace
        # SEQ carries on from one connection to the next, so a reader that kept its link
        # state never takes the new connection's PING for a repeat of the old one's.
        self._next_seq = random.randrange(256) if initial_seq is None else initial_seq & 0xFF
        self.state: ReaderState = "disconnected"
        self.port: str | None = self._configured
        """The port in use, or the configured one while none is."""
        self.info: ReaderInfo | None = None
        self.last_error: str | None = None
        self._session: Session | None = None
        self._past_stats = LinkStats()
        self._past_dropped = 0
        # Shared by every session, so reconnecting does not reset the warning rate.
        self._throttles = (Throttle(WARNING_INTERVAL_S), Throttle(WARNING_INTERVAL_S))
        self._lock = asyncio.Lock()
        self._state_changed = asyncio.Event()
        self.on_state: Callable[[ReaderState], None] | None = None
        """Called after every change of `state` (monitoring's device events); must not raise."""

    @property
    def stats(self) -> LinkStats:
        """Link statistics over every connection since start."""
        if self._session is None:
            return _add_stats(self._past_stats, LinkStats())
        return _add_stats(self._past_stats, self._session.link.stats)

    @property
    def dropped_messages(self) -> int:
        """Reader messages dropped since start: sent while no operation waited for one (a
        faulty reader's flood, a late event), or the oldest beyond INBOX_LIMIT."""
        session_dropped = self._session.dropped if self._session is not None else 0
        return self._past_dropped + session_dropped

    # -- the component ----------------------------------------------------

    async def run(self, started: Callable[[], None]) -> None:
        self._set_state("disconnected")
        started()
        delay = self._reconnect_initial_s
        try:
            while True:
                try:
                    session = await self._connect()
                except _OpenFailed as exc:
                    if exc.state == "error" or str(exc) != self.last_error:
                        log.warning("card reader: %s", exc)
                    self.last_error = str(exc)
                    self._set_state(exc.state)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._reconnect_max_s)
                    continue
                delay = self._reconnect_initial_s
                self.last_error = await self._serve(session)
        finally:
            self._set_state("disconnected")

    async def _serve(self, session: Session) -> str:
        self._session = session
        self.port = session.path
        self.last_error = None
        self._set_state("ready")
        try:
            reason = await asyncio.shield(session.ended)
        except asyncio.CancelledError:
            # posd is stopping: the port is closed (its lock released, the transport's
            # closing task done) before run() returns.
            self._retire(session)
            session.end("posd is stopping")
            await session.wait_closed()
            raise
        try:
            await session.wait_closed()
        except asyncio.CancelledError:
            await session.wait_closed()
            raise
        return reason

    def _lost(self, session: Session, reason: str) -> None:
        if self._session is not session:
            return  # a probe, or a session already let go
        self._retire(session)
        self.last_error = reason
        self._set_state("disconnected")
        log.warning(
            "card reader link on %s down: %s; link stats: %s",
            session.path,
            reason,
            session.link.stats.as_dict(),
        )

    def _retire(self, session: Session) -> None:
        self._next_seq = session.link.next_seq
        if self._session is session:
            self._past_stats = _add_stats(self._past_stats, session.link.stats)
            self._past_dropped += session.dropped
            self._session = None
            self.port = self._configured

    async def _connect(self) -> Session:
        if self._configured is not None:
            paths: Sequence[str] = [self._configured]
        else:
            found = list(self._candidates())
            paths = without_ports(found, self._exclude)
            if not paths:
                skipped = f" (skipped {', '.join(found)}: not the reader's)" if found else ""
                raise _OpenFailed(
                    "disconnected", f"no serial port to look for a card reader on{skipped}"
                )
        if len(paths) == 1:
            session, info = await self._open_and_ping(self._new_session(paths[0]))
        else:
            session, info = await self._probe(paths)
        self._found(session, info)
        return session

    def _found(self, session: Session, info: ReaderInfo) -> None:
        if info != self.info:
            log.info(
                "card reader on %s: %s firmware %s serial %s",
                session.path,
                info.model,
                info.firmware,
                info.serial,
            )
        self.info = info
        self._trace(f"info {info.model} {info.firmware} {info.serial}")

    async def _probe(self, paths: Sequence[str]) -> tuple[Session, ReaderInfo]:
        """PING every candidate at once; the first to PONG is the reader.

        Every other probe is ended and awaited (bounded) before this returns or raises, so
        no port stays open behind the daemon's back and no probe's error goes unretrieved.
        """
        sessions = [self._new_session(path) for path in paths]
        tasks = [asyncio.create_task(self._open_and_ping(session)) for session in sessions]
        winner: tuple[Session, ReaderInfo] | None = None
        try:
            pending = set(tasks)
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if winner is None and not task.cancelled() and task.exception() is None:
                        winner = task.result()
        finally:
            for session in sessions:
                if winner is None or session is not winner[0]:
                    session.end("another port answered first" if winner else "probe over")
            await _settle(tasks)
        if winner is not None:
            return winner
        for task in tasks:
            exc = task.exception()
            if exc is not None and not isinstance(exc, _OpenFailed):
                raise exc
        raise _OpenFailed("disconnected", f"no card reader answered on {', '.join(paths)}")

    def _new_session(self, path: str) -> Session:
        return Session(
            path, self.baudrate, self._next_seq, self._trace, self._lost, self._throttles
        )

    async def _open_and_ping(self, session: Session) -> tuple[Session, ReaderInfo]:
        await self._open(session)
        try:
            info = await self._ping(session)
            if not session.alive:
                # Ended (a probe that lost the race) as its PONG came in.
                raise _OpenFailed("disconnected", f"{session.path}: {session.ended.result()}")
        except BaseException:
            session.end("no answer to PING")
            self._next_seq = session.link.next_seq
            await session.wait_closed()
            raise
        return session, info

    async def _open(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        # exclusive: two programs on one reader would each see half its frames.
        opening = asyncio.ensure_future(
            serial_asyncio_fast.create_serial_connection(
                loop, lambda: session, session.path, baudrate=self.baudrate, exclusive=True
            )
        )
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The open goes on in its thread: let it finish, then close what it opened
            # (the ended session aborts the transport it is given).
            session.end("posd is stopping")
            await _settle([opening], PORT_OPEN_TIMEOUT_S)
            if opening.done() and not opening.cancelled() and opening.exception() is None:
                await session.wait_closed()
            raise
        except OPEN_ERRORS as exc:
            raise _open_error(session.path, exc) from None

    async def _ping(self, session: Session) -> ReaderInfo:
        try:
            session.send(srl.Ping())
            pong = await self._expect(session, (srl.Pong,), PING_TIMEOUT_S, "PONG")
        except ReaderUnavailable as exc:
            raise _OpenFailed("disconnected", f"{session.path}: {exc}") from None
        assert isinstance(pong, srl.Pong)
        return ReaderInfo.from_pong(pong)

    # -- operations -----------------------------------------------------

    async def ping(self) -> ReaderInfo:
        """PING the connected reader; its PONG, as ReaderInfo."""
        async with self._operation() as session:
            return await self._ping_op(session)

    async def _ping_op(self, session: Session) -> ReaderInfo:
        session.send(srl.Ping())
        pong = await self._expect(session, (srl.Pong,), PING_TIMEOUT_S, "PONG")
        assert isinstance(pong, srl.Pong)
        self.info = ReaderInfo.from_pong(pong)
        return self.info

    async def read_card(self, amount: int, modes: int, timeout_s: int) -> CardRead | ReadFailed:
        """START_READ and wait for the card (or READ_FAILED).

        Cancelling the awaiting task sends CANCEL and waits for CANCELLED before the
        CancelledError goes on, so the reader is idle again when the caller resumes.
        """
        request = srl.StartRead(amount, srl.CURRENCY_KRW, modes, timeout_s)
        srl.encode_message(request)  # a bad amount, mode or timeout is the caller's bug
        async with self._operation() as session:
            try:
                await self._start_read(session, request)
                # The reader times the read out itself; the margin covers its clock and the link.
                msg = await self._expect(
                    session,
                    (srl.CardData, srl.ReadFailed),
                    timeout_s + REPLY_TIMEOUT_S,
                    "CARD_DATA or READ_FAILED",
                )
            except asyncio.CancelledError:
                await self._cancel_read(session)
                raise
            except ReaderUnavailable:
                # A reader that stopped answering mid-read, or reported an error, is told
                # to stop too, in case it is still waiting for a card.
                await self._cancel_read(session)
                raise
            if isinstance(msg, srl.ReadFailed):
                return ReadFailed(srl.ReadFailReason(msg.reason).name.lower())
            assert isinstance(msg, srl.CardData)
            try:
                read = card_read_from(msg)
            except CardDataError as exc:
                log.warning("card reader on %s: unusable card data: %s", session.path, exc)
                return ReadFailed("card_error")
            self._trace(f"card {read.entry_mode} {mask_pan(read.pan)}")
            return read

    async def _start_read(self, session: Session, request: srl.StartRead) -> None:
        """START_READ until READ_STARTED, the first on a link after CANCEL. A reader busy with
        a read posd did not start (a CANCEL it missed) is told CANCEL and asked once more: a
        second busy is an error, as is any other ERROR."""
        if session.left_read_possible:
            # reader-link.md "After (re)connecting": the reader keeps its state while the host
            # is away and may still be in a read posd no longer knows of (posd crashed or was
            # killed, the link dropped); one with no read in progress answers CANCELLED too.
            session.send(srl.Cancel())
            await self._expect(session, (srl.Cancelled,), REPLY_TIMEOUT_S, "CANCELLED")
            session.left_read_possible = False
        session.send(request)
        try:
            await self._expect(session, (srl.ReadStarted,), REPLY_TIMEOUT_S, "READ_STARTED")
        except ReaderBusy:
            log.warning(
                "card reader on %s is busy with a read posd did not start: CANCEL, then "
                "START_READ again",
                session.path,
            )
            await self._cancel_read(session)
            session.send(request)
            await self._expect(session, (srl.ReadStarted,), REPLY_TIMEOUT_S, "READ_STARTED")

    async def complete(self, arc: str, issuer_data: bytes) -> CompleteResult:
        """COMPLETE with the ledger's ARC (and issuer data); the card's verdict."""
        request = srl.Complete(arc, issuer_data)
        srl.encode_message(request)
        async with self._operation() as session:
            session.send(request)
            msg = await self._expect(
                session, (srl.CompleteResult,), COMPLETE_TIMEOUT_S, "COMPLETE_RESULT"
            )
            assert isinstance(msg, srl.CompleteResult)
            return CompleteResult(msg.approved, msg.tlv)

    async def _cancel_read(self, session: Session) -> None:
        if not session.alive:
            return
        try:
            session.send(srl.Cancel())
            await self._expect(session, (srl.Cancelled,), REPLY_TIMEOUT_S, "CANCELLED")
        except ReaderUnavailable as exc:
            log.warning("card reader on %s: cancelling a read: %s", session.path, exc)

    @contextlib.asynccontextmanager
    async def _operation(self) -> AsyncIterator[Session]:
        session = self._session
        if session is None or not session.alive or self.state != "ready":
            raise ReaderUnavailable(f"the card reader is {self.state}")
        async with self._lock:
            self._set_state("busy")
            # Events left from an earlier operation (a late CARD_REMOVED) are not answers.
            while not session.inbox.empty():
                if session.inbox.get_nowait() is LOST:
                    session.put(LOST)
                    break
            try:
                yield session
            finally:
                if self._session is session and session.alive:
                    self._set_state("ready")

    async def _expect(
        self,
        session: Session,
        kinds: tuple[type[srl.Message], ...],
        timeout_s: float,
        what: str,
    ) -> srl.Message:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the message and
            # drops a cancellation that lands as it arrives, and a cancelled read then went on
            # waiting for a card with no CANCEL sent.
            async with asyncio.timeout(timeout_s):
                session.waiters += 1
                try:
                    return await self._next_of(session, kinds, what)
                finally:
                    session.waiters -= 1
        except TimeoutError:
            raise ReaderUnavailable(f"the card reader sent no {what} in {timeout_s:g} s") from None

    async def _next_of(
        self, session: Session, kinds: tuple[type[srl.Message], ...], what: str
    ) -> srl.Message:
        while True:
            item = await session.inbox.get()
            if item is LOST:
                session.put(LOST)
                raise ReaderUnavailable(f"card reader link lost waiting for {what}")
            assert isinstance(item, srl.Message)
            if isinstance(item, kinds):
                return item
            if isinstance(item, srl.ReaderError):
                error = ReaderBusy if item.code == srl.ErrorCode.BUSY else ReaderUnavailable
                raise error(
                    f"card reader error 0x{item.code:02X} waiting for {what}: "
                    f"{display_text(item.text)}"
                )
            log.debug(
                "card reader on %s: %s while waiting for %s", session.path, srl.describe(item), what
            )

    # -- state -------------------------------------------------------------

    def _set_state(self, state: ReaderState) -> None:
        if state != self.state:
            self.state = state
            self._trace(f"state {state}")
            self._state_changed.set()
            self._state_changed = asyncio.Event()
            if self.on_state is not None:
                self.on_state(state)

    async def wait_for_state(self, *states: ReaderState) -> None:
        """Until the state is one of ``states`` (the caller bounds the wait)."""
        while self.state not in states:
            await self._state_changed.wait()

    def _trace(self, line: str) -> None:
        if self._trace_fn is not None:
            self._trace_fn(line)


async def _settle(
    tasks: Collection[asyncio.Future[Any]],
    timeout_s: float = PORT_OPEN_TIMEOUT_S + PING_TIMEOUT_S + PORT_CLOSE_TIMEOUT_S,
) -> None:
    """Wait (bounded) for ended probes; whatever outlives the wait has its outcome retrieved
    when it ends, so asyncio never reports an exception nobody looked at."""
    try:
        await asyncio.wait(tasks, timeout=timeout_s)
    finally:
        for task in tasks:
            if task.done():
                _retrieve(task)
            else:
                task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _open_error(path: str, exc: BaseException) -> _OpenFailed:
    code = open_errno(exc)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO):
        return _OpenFailed("disconnected", f"{path} is not there (reader unplugged?)")
    if code == errno.EACCES:
        return _OpenFailed("error", f"no permission to open {path}: posd needs group dialout")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        return _OpenFailed("error", f"{path} is in use by another program")
    return _OpenFailed("error", f"cannot open {path}: {open_error_detail(exc)}")


async def ping_port(path: str, baudrate: int = 115200) -> ReaderInfo:
    """PING one port and return the reader's PONG; ReaderUnavailable if nothing answers.

    For `posd devices`: opens the port, asks, closes it again.
    """
    reader = CardReader(path, baudrate)
    try:
        session, info = await reader._open_and_ping(reader._new_session(path))
    except _OpenFailed as exc:
        raise ReaderUnavailable(str(exc)) from None
    session.end("probe done")
    await session.wait_closed()
    return info
