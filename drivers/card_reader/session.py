"""One open serial port of the card reader: the SRL/1 link machine (protocols.srl_link) driven
over asyncio, its retransmission timer, and the messages it delivered to the operation waiting
for them. `send_and_rearm` is the I/O half of driving a link, shared with the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable

from protocols import srl_messages as srl
from protocols.srl_link import (
    FrameRejected,
    LinkDown,
    MessageReceived,
    MessageRejected,
    SrlLink,
)

log = logging.getLogger(__package__)

# Closing runs in an executor thread; it is quick unless the kernel driver is wedged.
PORT_CLOSE_TIMEOUT_S = 2.0
# Messages held for the operation waiting on the reader. An operation takes a few; a faulty
# reader can send without end, so past this the oldest goes.
INBOX_LIMIT = 64
# A faulty reader can send ERROR or malformed messages without end: one warning per kind
# this often, the next one counting those held back.
WARNING_INTERVAL_S = 60.0


class ReaderUnavailable(Exception):
    """The reader cannot do this now: not connected, busy, or the link dropped mid-operation."""


LOST = object()


class Throttle:
    """Lets one log line through per interval; the next one says how many were held back."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next_at = -math.inf
        self._held = 0

    def allow(self, now: float) -> int | None:
        """None: hold this line back; else how many were held back since the last one."""
        if now < self._next_at:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._next_at = now + self._interval_s
        return held


def _held_note(held: int) -> str:
    return f" ({held} more since the last such warning)" if held else ""


class Session(asyncio.Protocol):
    """One open port: the link machine, its timer, and the messages it delivered.

    Only what arrives while an operation waits for an answer is kept: anything else is
    unsolicited (a reader's CARD_INSERTED with no read running, or a faulty one's flood) and
    no operation would take it, so it is dropped and counted rather than held without bound.
    """

    def __init__(
        self,
        path: str,
        baudrate: int,
        initial_seq: int,
        trace: Callable[[str], None],
        on_end: Callable[[Session, str], None],
        throttles: tuple[Throttle, Throttle] | None = None,
    ) -> None:
        self.path = path
        self._on_end = on_end
        self.link = SrlLink("host", baudrate=baudrate, initial_seq=initial_seq)
        self.inbox: asyncio.Queue[object] = asyncio.Queue(maxsize=INBOX_LIMIT)
        self.waiters = 0
        """Operations waiting on `inbox` (one at most: the reader's lock, or a probe's PING)."""
        self.dropped = 0
        """Messages not kept: unsolicited, or the oldest of a full inbox."""
        self.left_read_possible = True
        """No CANCEL sent on this link yet: the reader may be in a read from before it."""
        self._error_log, self._invalid_log = throttles or (
            Throttle(WARNING_INTERVAL_S),
            Throttle(WARNING_INTERVAL_S),
        )
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._trace = trace
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def alive(self) -> bool:
        return not self.ended.done()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self.alive:
            transport.abort()
            return
        self._pump()

    def data_received(self, data: bytes) -> None:
        if self.alive:
            self.link.receive_data(data, self._loop.time())
            self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.end(f"port closed ({exc})" if exc is not None else "port closed")
        if not self.closed.done():
            self.closed.set_result(None)

    async def wait_closed(self) -> None:
        """Until the port is closed (and its lock released), so it can be opened again."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that
        # lands as the awaited thing completes, and the caller would then never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PORT_CLOSE_TIMEOUT_S):
                await asyncio.shield(self.closed)

    def send(self, msg: srl.Message) -> None:
        if not self.alive:
            raise ReaderUnavailable("the card reader link is down")
        self.link.send(msg)
        self._pump()

    def end(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.ended.done():
            self.ended.set_result(reason)
            # Before the waiting operation hears of it: a caller told "link lost" finds
            # the reader disconnected already.
            self._on_end(self, reason)
            self.put(LOST)
        if self._transport is not None and not self._transport.is_closing():
            # abort, not close: a graceful close drains output first, which blocks on a
            # port whose other end is gone.
            self._transport.abort()

    def put(self, item: object) -> None:
        """Into the inbox, making room by dropping the oldest message when it is full."""
        if self.inbox.full():
            self.inbox.get_nowait()
            self.dropped += 1
        self.inbox.put_nowait(item)

    def _deliver(self, msg: srl.Message) -> None:
        if self.waiters:
            self.put(msg)
        else:
            self.dropped += 1

    def _on_timer(self) -> None:
        self._timer = None
        if self.alive:
            self.link.handle_timeout(self._loop.time())
            self._pump()

    def _pump(self) -> None:
        for event in self.link.events():
            match event:
                case MessageReceived(msg):
                    self._trace(f"rx {srl.describe(msg)}")
                    if isinstance(msg, srl.ReaderError):
                        held = self._error_log.allow(self._loop.time())
                        if held is not None:
                            log.warning(
                                "card reader on %s reports %s%s",
                                self.path,
                                srl.describe(msg),
                                _held_note(held),
                            )
                    self._deliver(msg)
                case FrameRejected(reason):
                    self._trace(f"bad frame: {reason}")
                case MessageRejected(cmd, reason):
                    self._trace(f"rejected CMD 0x{cmd:02X}")
                    held = self._invalid_log.allow(self._loop.time())
                    if held is not None:
                        log.warning(
                            "card reader on %s sent an invalid message: %s%s",
                            self.path,
                            reason,
                            _held_note(held),
                        )
                case LinkDown(dropped):
                    self.end(f"no ACK after retransmissions ({dropped} message(s) dropped)")
                    return
        self._timer = send_and_rearm(
            self.link, self._transport, self._timer, self._on_timer if self.alive else None
        )


def send_and_rearm(
    link: SrlLink,
    transport: asyncio.Transport | None,
    timer: asyncio.TimerHandle | None,
    on_timer: Callable[[], None] | None,
) -> asyncio.TimerHandle | None:
    """Write what ``link`` has to send now, cancel ``timer`` and, unless ``on_timer`` is
    None, arm a new one for the link's next deadline: the I/O half of driving an SrlLink."""
    loop = asyncio.get_running_loop()
    if transport is not None and not transport.is_closing():
        out = link.data_to_send(loop.time())
        if out:
            transport.write(out)
    if timer is not None:
        timer.cancel()
    deadline = link.next_deadline()
    if deadline is None or on_timer is None:
        return None
    return loop.call_at(deadline, on_timer)
