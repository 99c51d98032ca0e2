"""One SRL/1 PING on one serial port, told apart the way a technician needs: `posd devices`.

`drivers.card_reader.ping_port` answers "a reader, or not"; a diagnostic needs the why:
held by another program (posd itself, usually), no permission, gone, silent, or talking
something that is not SRL/1 (another device, or a reader at another baud rate). So the
probe keeps the open's errno and the link's receive counters, and its wait is the caller's.

The port is opened exclusively (pyserial's flock), so a port another posd holds is never
written to: the lock fails before a byte goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
from dataclasses import dataclass
from typing import Literal

import serial_asyncio_fast

from drivers.card_reader.reader import ReaderInfo
from drivers.card_reader.session import send_and_rearm
from drivers.serial_ports import OPEN_ERRORS, open_errno, open_error_detail
from protocols import srl_messages as srl
from protocols.srl_link import LinkDown, MessageReceived, MessageRejected, SrlLink
from protocols.vendor_text import display_text

__all__ = ["ProbeResult", "ProbeStatus", "probe_port"]

ProbeStatus = Literal["reader", "silent", "not_srl", "busy", "no_permission", "absent", "error"]

_ABSENT = frozenset({errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO})
_BUSY = frozenset({errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK})
_PING_CMD = srl.encode_message(srl.Ping())[0]
# A tty's close waits for its output to drain; a port stuck on flow control is let go.
CLOSE_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one PING found. `info` is set only for status "reader"."""

    path: str
    status: ProbeStatus
    detail: str
    info: ReaderInfo | None = None


class _Ping(asyncio.Protocol):
    """Sends one PING over its own link machine and resolves `answer` with what came back."""

    def __init__(self, baudrate: int) -> None:
        self._loop = asyncio.get_running_loop()
        # A random first SEQ: a reader that kept its link state from the daemon's last
        # PING would take the same SEQ and CRC for a repeat and not answer it again.
        self.link = SrlLink("host", baudrate=baudrate, initial_seq=random.randrange(256))
        self.answer: asyncio.Future[srl.Pong | srl.ReaderError | str] = self._loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self.echoed = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.link.send(srl.Ping())
        self._pump()

    def data_received(self, data: bytes) -> None:
        self.link.receive_data(data, self._loop.time())
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self._settle(f"the port closed ({exc})" if exc is not None else "the port closed")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not self.transport.is_closing():
            # abort, not close: a graceful close drains output first, which blocks on a
            # port whose other end is gone. Not a second time: the transport closing itself
            # (a read error) already runs its closing task, and a second one fails.
            self.transport.abort()

    def _settle(self, result: srl.Pong | srl.ReaderError | str) -> None:
        if not self.answer.done():
            self.answer.set_result(result)

    def _on_timer(self) -> None:
        self._timer = None
        self.link.handle_timeout(self._loop.time())
        self._pump()

    def _pump(self) -> None:
        for event in self.link.events():
            match event:
                case MessageReceived(srl.Pong() | srl.ReaderError() as msg):
                    self._settle(msg)
                case MessageRejected(cmd) if cmd == _PING_CMD:
                    self.echoed = True
                case LinkDown():
                    self._settle("no ACK to the PING after its retransmissions")
        # Even with the answer in: the PONG is ACKed, or the reader would repeat it into
        # whatever opens the port next.
        self._timer = send_and_rearm(
            self.link, self.transport, self._timer, None if self.answer.done() else self._on_timer
        )


def _open_failure(path: str, exc: BaseException) -> ProbeResult:
    code = open_errno(exc)
    if code in _BUSY:
        return ProbeResult(path, "busy", "held by another program (posd running?)")
    if code == errno.EACCES:
        return ProbeResult(
            path, "no_permission", "no permission to open it: run as root or in group dialout"
        )
    if code in _ABSENT:
        return ProbeResult(path, "absent", "not there (unplugged?)")
    return ProbeResult(path, "error", f"cannot open it: {open_error_detail(exc)}")


async def probe_port(path: str, baudrate: int = 115200, timeout_s: float = 1.5) -> ProbeResult:
    """PING the port at `baudrate`; what answered, within `timeout_s` of the port opening.

    Never raises for what a port can do (busy, gone, silent, noisy); only for a bad
    `timeout_s` or `baudrate`.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    loop = asyncio.get_running_loop()
    ping = _Ping(baudrate)
    try:
        await serial_asyncio_fast.create_serial_connection(
            loop, lambda: ping, path, baudrate=baudrate, exclusive=True
        )
    except OPEN_ERRORS as exc:
        return _open_failure(path, exc)
    try:
        async with asyncio.timeout(timeout_s):
            answer = await asyncio.shield(ping.answer)
    except TimeoutError:
        answer = f"no PONG in {timeout_s:g} s"
    finally:
        ping.close()
        # The transport closes the port in a worker thread and reports connection_lost
        # after: wait for it, so the port (and its lock) is free when the caller hears back.
        # asyncio.timeout, not wait_for, which in Python 3.11 can drop a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await asyncio.shield(ping.closed)
    return _result(path, baudrate, answer, ping)


def _result(
    path: str, baudrate: int, answer: srl.Pong | srl.ReaderError | str, ping: _Ping
) -> ProbeResult:
    match answer:
        case srl.Pong() as pong:
            info = ReaderInfo.from_pong(pong)
            return ProbeResult(path, "reader", "SRL/1 card reader", info)
        case srl.ReaderError(code, text):
            return ProbeResult(
                path, "error", f"SRL/1 reader answered ERROR 0x{code:02X}: {display_text(text)}"
            )
    stats = ping.link.stats
    if ping.echoed:
        return ProbeResult(
            path, "not_srl", "echoes what it is sent (a loopback plug, or a modem with echo on)"
        )
    if stats.frames_in or (stats.acks_received and not stats.noise_bytes):
        return ProbeResult(path, "not_srl", f"speaks SRL/1 framing but sent no PONG ({answer})")
    if stats.noise_bytes or stats.bad_frames or stats.bad_crc:
        return ProbeResult(
            path,
            "not_srl",
            f"sends data that is not SRL/1 at {baudrate} baud "
            "(another kind of device, or a reader set to another baud rate)",
        )
    return ProbeResult(path, "silent", "no answer: not a byte came back")
