"""A simulated SRL/1 card reader on a pseudo-terminal, for `posd demo` and tests.

posd opens `port` as it would /dev/ttyACM0. The simulator speaks the device
side of SRL/1 with the same link machine posd uses (protocols.srl_link), so
framing, ACKs and retransmissions are the real thing.

Script the next card with `present(card)` (a posd.sim.cards name or TestCard),
or the next failure with `fail_next_read(reason)`. A read with nothing
presented waits for a card until its timeout, then sends READ_FAILED timeout.

Faults: `drop_next_ack()`, `corrupt_next_frame()`, `go_silent()`/`wake()`,
`inject(noise)`, `read_left_running()`, and `unplug()`/`replug()`: with `link`,
`port` is a symlink that unplug removes and replug points at a fresh pty, as
udev does with /dev/posd-reader.

Listeners: `on_command` is called with each command posd sends as it arrives,
`on_report` with each message the reader sends as it goes out (a test kills
posd at either instant, or a timed delay after one).

Like a real reader it keeps its state while the host is away: posd killed
mid-read leaves it reading (a START_READ then gets ERROR busy until a CANCEL),
and a card presented to a read that is cancelled before the card got to it
stays for the next read.

`transcript` (when `record=True`) holds every chunk each way with its time,
for tests/replay: see `format_transcript`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from posd.sim.cards import CARDS, TestCard, card_data, complete_result
from posd.sim.pty import SimulatedLine
from protocols import srl_messages as srl
from protocols.srl_frame import ACK, STX
from protocols.srl_link import LinkDown, MessageReceived, MessageRejected, SrlLink

__all__ = ["SimulatedCardReader", "format_transcript"]

log = logging.getLogger("posd.sim.card_reader")

_MODE_BITS = {
    "chip": srl.Modes.CHIP,
    "contactless": srl.Modes.CONTACTLESS,
    "magstripe": srl.Modes.MAGSTRIPE,
}
_REASONS = {reason.name.lower(): reason for reason in srl.ReadFailReason}


class SimulatedCardReader:
    def __init__(
        self,
        link: Path | None = None,
        *,
        model: str = "SIM-R1",
        firmware: str = "1.0.0",
        serial: str = "SIM00001",
        card_delay_s: float = 0.02,
        today: Callable[[], datetime.date] = datetime.date.today,
        baudrate: int = 115200,
        record: bool = False,
    ) -> None:
        self._line = SimulatedLine(link, device="simulated reader")
        self.pong = srl.Pong(model, firmware, serial)
        self.card_delay_s = card_delay_s
        self._today = today
        self._baudrate = baudrate
        self.link = SrlLink("device", baudrate=baudrate)
        self._master: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._out = bytearray()
        self._script: deque[TestCard | srl.ReadFailReason] = deque()
        self._read: srl.StartRead | None = None
        self._read_timers: list[asyncio.TimerHandle] = []
        self._arriving: TestCard | srl.ReadFailReason | None = None
        self._card: TestCard | None = None
        self._card_amount = 0
        self._atc = 0
        self._drop_acks = 0
        self._corrupt_frames = 0
        self._lose_host_acks = 0
        self._corrupt_incoming = 0
        self.silent = False
        self.received: list[srl.Message] = []
        """Every command posd sent, in order (tests look at amounts and ARCs here)."""
        self.sent: list[srl.Message] = []
        """Every answer and event this reader sent, in order (a card's COMPLETE_RESULT)."""
        self.on_command: list[Callable[[srl.Message], None]] = []
        """Called with each command as it arrives, before the reader acts on it or ACKs it
        (a test kills posd at that instant); one that calls go_silent() leaves it unanswered."""
        self.on_report: list[Callable[[srl.Message], None]] = []
        """Called with each message the reader sends (CARD_DATA, COMPLETE_RESULT ...) as it
        goes on the link, before its bytes are written (a test times a kill from there)."""
        self.record = record
        self.transcript: list[tuple[str, float, bytes]] = []
        self._t0: float | None = None
        self._plug()

    # -- the pty ---------------------------------------------------------

    @property
    def port(self) -> str:
        """The path posd opens."""
        return self._line.path

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def _plug(self) -> None:
        self._master = self._line.plug(blocking=False)

    async def start(self) -> None:
        """Start answering (needs the running loop)."""
        self._loop = asyncio.get_running_loop()
        if self._master is not None:
            self._loop.add_reader(self._master, self._readable)

    def unplug(self) -> None:
        """Pull the cable: posd's reads fail with EIO and the link (if any) disappears."""
        self._end_read()
        self._card = None
        self._cancel_timer()
        if self._master is not None and self._loop is not None:
            self._loop.remove_reader(self._master)
            self._loop.remove_writer(self._master)
        self._line.unplug()
        self._master = None
        self._out.clear()

    def replug(self) -> None:
        """Plug in again: a fresh pty, and the reader starts afresh, as after power-up."""
        self.unplug()
        self.silent = False
        self.link = SrlLink("device", baudrate=self._baudrate)
        self._plug()
        if self._loop is not None and self._master is not None:
            self._loop.add_reader(self._master, self._readable)

    def close(self) -> None:
        self.unplug()

    async def __aenter__(self) -> SimulatedCardReader:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- scripting ---------------------------------------------------------

    def present(self, card: TestCard | str) -> None:
        """The next read finds this card (at once, if a read is waiting)."""
        if isinstance(card, str):
            if card not in CARDS:
                raise ValueError(f"no test card {card!r}; known: {', '.join(CARDS)}")
            card = CARDS[card]
        self._script.append(card)
        self._maybe_present()

    def fail_next_read(self, reason: str) -> None:
        """The next read ends READ_FAILED ``reason`` (timeout, card_error, use_chip, ...)."""
        if reason not in _REASONS:
            raise ValueError(f"no READ_FAILED reason {reason!r}; known: {', '.join(_REASONS)}")
        self._script.append(_REASONS[reason])
        self._maybe_present()

    def drop_next_ack(self) -> None:
        """The reader's next ACK is lost on the way: posd repeats its frame."""
        self._drop_acks += 1

    def corrupt_next_frame(self) -> None:
        """The reader's next frame arrives damaged: posd NAKs it."""
        self._corrupt_frames += 1

    def lose_next_host_ack(self) -> None:
        """posd's next ACK is lost on the way: the reader repeats its frame."""
        self._lose_host_acks += 1

    def corrupt_next_incoming(self) -> None:
        """posd's next frame arrives damaged: the reader NAKs it."""
        self._corrupt_incoming += 1

    def go_silent(self) -> None:
        """Hang: read nothing, answer nothing, until wake()."""
        self.silent = True
        self._end_read()
        self._cancel_timer()

    def wake(self) -> None:
        """Come back from a hang as after a reset: link state gone, SEQ from 0."""
        self.silent = False
        self.link = SrlLink("device", baudrate=self._baudrate)

    def read_left_running(self, timeout_s: int = 60) -> None:
        """Be in a read the host did not start, as a host that crashed (or another program
        on the port) leaves one: START_READ gets ERROR busy until CANCEL or the timeout ends
        it, and a card presented meanwhile goes to that read."""
        assert self._loop is not None
        self._end_read()
        self._read = srl.StartRead(0, srl.CURRENCY_KRW, srl.ALL_MODES, timeout_s)
        self._read_timers.append(self._loop.call_later(timeout_s, self._read_timed_out))

    def inject(self, noise: bytes) -> None:
        """Write raw bytes on the line (noise, a hand-made frame)."""
        self._write(noise)

    def note(self, text: str) -> None:
        """Add a `!` line (what the host did) to the transcript."""
        if self.record:
            self.transcript.append(("!", self._elapsed(), text.encode()))

    # -- I/O -----------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _elapsed(self) -> float:
        now = self._now()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:
            # EIO: posd has the slave closed; it reopens it later.
            return
        if not data:
            return
        if self.record:
            self.transcript.append((">", self._elapsed(), data))
        if self.silent:
            return
        self.link.receive_data(self._incoming_faults(data), self._now())
        self._service()

    def _write(self, data: bytes) -> None:
        if self._master is None or not data:
            return
        if self.record:
            self.transcript.append(("<", self._elapsed(), data))
        self._out += data
        self._flush()

    def _flush(self) -> None:
        if self._master is None or self._loop is None:
            return
        try:
            written = os.write(self._master, self._out)
        except BlockingIOError:
            written = 0
        except OSError:
            self._out.clear()
            return
        del self._out[:written]
        if self._out:
            self._loop.add_writer(self._master, self._flush)
        else:
            self._loop.remove_writer(self._master)

    def _on_timer(self) -> None:
        self._timer = None
        if not self.silent:
            self.link.handle_timeout(self._now())
            self._service()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _send(self, msg: srl.Message) -> None:
        self.sent.append(msg)
        self.link.send(msg)
        for listener in list(self.on_report):
            listener(msg)

    def _service(self) -> None:
        for event in self.link.events():
            match event:
                case MessageReceived(msg):
                    self.received.append(msg)
                    for listener in list(self.on_command):
                        listener(msg)
                    if self.silent:
                        return  # hung as the command arrived: not even its ACK goes out
                    self._handle(msg)
                case MessageRejected(cmd, reason):
                    log.info("simulated reader: rejected CMD 0x%02X: %s", cmd, reason)
                case LinkDown():
                    log.info("simulated reader: link down, dropping what it had queued")
        out = self.link.data_to_send(self._now())
        self._write(self._faults(out))
        self._cancel_timer()
        deadline = self.link.next_deadline()
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _incoming_faults(self, data: bytes) -> bytes:
        # posd writes its ACK/NAK bytes ahead of its frame, so an ACK it sent is first.
        if self._lose_host_acks and data[0] == ACK:
            self._lose_host_acks -= 1
            data = data[1:]
        if self._corrupt_incoming and STX in data:
            self._corrupt_incoming -= 1
            damaged = bytearray(data)
            damaged[-1] ^= 0x5A
            data = bytes(damaged)
        return data

    def _faults(self, out: bytes) -> bytes:
        # `out` is ACK/NAK bytes, then at most one frame: its first STX starts the frame.
        data = bytearray(out)
        frame_at = data.find(STX)
        if frame_at < 0:
            frame_at = len(data)
        if self._drop_acks:
            at = data.find(ACK, 0, frame_at)
            if at >= 0:
                del data[at]
                frame_at -= 1
                self._drop_acks -= 1
        if self._corrupt_frames and frame_at < len(data):
            data[-1] ^= 0x5A
            self._corrupt_frames -= 1
        return bytes(data)

    # -- the reader ------------------------------------------------------

    def _handle(self, msg: srl.Message) -> None:
        match msg:
            case srl.Ping():
                self._send(self.pong)
            case srl.StartRead():
                if self._read is not None:
                    self._send(srl.ReaderError(srl.ErrorCode.BUSY, "a read is already in progress"))
                    return
                self._read = msg
                self._card = None
                self._send(srl.ReadStarted())
                assert self._loop is not None
                self._read_timers.append(self._loop.call_later(msg.timeout_s, self._read_timed_out))
                self._maybe_present()
            case srl.Cancel():
                self._end_read()
                self._send(srl.Cancelled())
            case srl.Complete(arc):
                card = self._card
                if card is None:
                    self._send(srl.ReaderError(0x02, "no card transaction to complete"))
                    return
                self._send(complete_result(card, arc, self._card_amount, self._atc))
                self._card = None
                self._send(srl.CardRemoved())

    def _maybe_present(self) -> None:
        if self._read is None or not self._script or self._loop is None or self._arriving:
            return
        outcome = self._script.popleft()
        self._arriving = outcome
        self._read_timers.append(
            self._loop.call_later(self.card_delay_s, self._present, self._read, outcome)
        )

    def _present(self, read: srl.StartRead, outcome: TestCard | srl.ReadFailReason) -> None:
        if read is not self._read or self.silent:
            return
        self._arriving = None
        self._end_read()
        if isinstance(outcome, srl.ReadFailReason):
            if outcome is srl.ReadFailReason.CARD_REMOVED:
                self._send(srl.CardInserted())
            self._send(srl.ReadFailed(outcome))
        elif not read.modes & _MODE_BITS[outcome.entry]:
            self._send(srl.ReadFailed(srl.ReadFailReason.UNSUPPORTED_CARD))
        else:
            self._atc = (self._atc + 1) & 0xFFFF
            if outcome.entry == "chip":
                self._send(srl.CardInserted())
                self._card = outcome
                self._card_amount = read.amount
            self._send(card_data(outcome, read.amount, self._today(), self._atc))
        self._service()

    def _read_timed_out(self) -> None:
        if self._read is None or self.silent:
            return
        self._end_read()
        self._send(srl.ReadFailed(srl.ReadFailReason.TIMEOUT))
        self._service()

    def _end_read(self) -> None:
        self._read = None
        for timer in self._read_timers:
            timer.cancel()
        self._read_timers.clear()
        if self._arriving is not None:
            # The read ended (CANCEL, timeout) before the card got to it: the card is still
            # there (in the slot, at the antenna) for the next read.
            self._script.appendleft(self._arriving)
            self._arriving = None


def format_transcript(
    transcript: list[tuple[str, float, bytes]], comments: list[str] | None = None
) -> str:
    """The tests/replay session format: `<` reader to host, `>` host to reader, `!` what
    the host did; then milliseconds since the start, then hex (or the action's text)."""
    lines = [f"# {c}" for c in comments or []]
    for direction, t, data in transcript:
        body = data.decode() if direction == "!" else data.hex()
        lines.append(f"{direction} {round(t * 1000)} {body}")
    return "\n".join(lines) + "\n"
