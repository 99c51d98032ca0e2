"""The SRL/1 link layer for one side of the line, sans-I/O.

Feed received bytes with ``receive_data(data, now)``, queue messages with
``send(msg)``, write whatever ``data_to_send(now)`` returns, call
``handle_timeout(now)`` once ``next_deadline()`` has passed, and take events
from ``next_event()``/``events()``. Time is whatever monotonic clock the
caller uses, in seconds; the link never reads one.

The host (posd) and the device (a reader, or posd's simulated one) run the
same machine; the role only decides which direction's messages are valid.

Timers, and why
---------------
ACK wait, 300 ms (``ACK_TIMEOUT_S``), counted from the moment the frame has
    left the wire: the link adds the frame's own transmission time at the
    line's baud rate (10 bit times a byte). At 9600 baud a maximum frame takes
    about 1.07 s to send, and a bare 300 ms from the write call would
    retransmit frames that are still on their way. On NAK or when the wait
    runs out the same frame (same SEQ) is sent again, at most 3 times
    (``MAX_RETRANSMITS``); when the wait after the 3rd retransmission also runs
    out, or a 4th NAK comes, the link reports ``LinkDown`` and drops what it
    had queued. The host then reopens the port and PINGs.

Line idle, 100 ms (``LINE_IDLE_S``). A frame's bytes arrive back to back; a
    frame begun and not finished after 100 ms of silence was cut short. The
    decoder's partial frame is then dropped as ``truncated`` (and NAKed), so
    the peer's retransmission meets a clean decoder instead of being read as
    the tail of the lost frame. The same gap also restores trust in ACK/NAK
    bytes (below).

Duplicate re-ACK hold-off, 150 ms (``DUPLICATE_HOLDOFF_S``). The ACK is one
    byte with no SEQ, so an ACK cannot say which frame it answers. A genuine
    retransmission comes at least 300 ms after the original (less the line's
    latency jitter), so a copy of the last accepted frame that arrives sooner
    was not retransmitted because our ACK went missing: it is a line
    duplicate, or a retransmission provoked by a spurious NAK while our ACK
    was still in flight. Answering it with a second ACK would let the sender
    take that ACK for its *next* frame and lose that frame silently. So a
    duplicate is always suppressed (never delivered twice) and ACKed again
    only when the hold-off since our last ACK of it has passed.

Trusting ACK and NAK bytes. After noise or a bad frame, the decoder rescans
bytes that may belong to a damaged frame, where any DATA byte 0x06 or 0x15
would look like ACK or NAK. A false ACK would silently lose the frame we are
waiting on; a missed ACK only costs a retransmission. So ACK/NAK bytes are
ignored (counted in ``ignored_acks``) from the first noise byte or bad frame
until the next good frame or a ``LINE_IDLE_S`` gap in reception.

What SRL/1 cannot protect against: an ACK byte that the line manufactures
from nothing outside any frame (a NAK flipped into 0x06, say) is
indistinguishable from a real one.

Full duplex: both sides may have one frame in flight at once. ACK/NAK bytes
for the peer's frames are queued and written by ``data_to_send`` ahead of
our next frame, never inside one, since each call returns whole frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from enum import StrEnum

from protocols.srl_frame import (
    ACK,
    NAK,
    Ack,
    BadFrame,
    DecoderEvent,
    Frame,
    FrameDecoder,
    Nak,
    Noise,
    encode_frame,
)
from protocols.srl_messages import (
    Message,
    SrlMessageError,
    decode_message,
    encode_message,
    is_command,
)

ACK_TIMEOUT_S = 0.3
MAX_RETRANSMITS = 3
LINE_IDLE_S = 0.1
DUPLICATE_HOLDOFF_S = 0.15
BITS_PER_BYTE = 10  # start bit, 8 data bits, stop bit


class Role(StrEnum):
    HOST = "host"
    DEVICE = "device"


@dataclass(slots=True)
class LinkStats:
    """Counters since the link was made; ``reset()`` keeps them."""

    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    retransmits: int = 0
    acks_sent: int = 0
    acks_received: int = 0
    naks_sent: int = 0
    naks_received: int = 0
    ignored_acks: int = 0
    bad_crc: int = 0
    bad_frames: int = 0
    resyncs: int = 0
    noise_bytes: int = 0
    duplicates: int = 0
    rejected_messages: int = 0
    link_downs: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class MessageReceived:
    msg: Message
    seq: int


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """A bad frame was received and NAKed; ``reason`` as in ``BadFrame``."""

    reason: str


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A good frame (ACKed) whose content is not a valid message for this side."""

    cmd: int
    reason: str


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The peer left a frame unacknowledged through every retransmission.

    ``dropped`` messages (the unacknowledged one and those queued after it)
    were discarded; the unacknowledged one may or may not have arrived.
    """

    dropped: int


LinkEvent = MessageReceived | FrameRejected | MessageRejected | LinkDown


class SrlLink:
    """One side of an SRL/1 link: framing, ACK/NAK, retransmission, duplicates."""

    def __init__(self, role: Role | str, *, baudrate: int = 115200, initial_seq: int = 0) -> None:
        self.role = Role(role)
        if baudrate <= 0:
            raise ValueError(f"baud rate must be positive, got {baudrate}")
        self._byte_time = BITS_PER_BYTE / baudrate
        self.stats = LinkStats()
        self._seq = initial_seq & 0xFF
        self._decoder = FrameDecoder()
        self._events: deque[LinkEvent] = deque()
        self._queue: deque[tuple[int, bytes]] = deque()
        self._control = bytearray()
        self._outstanding: bytes | None = None
        self._retries = 0
        self._resend = False
        self._ack_deadline: float | None = None
        self._last_accepted: tuple[int, int] | None = None
        self._last_ack_at = 0.0
        self._last_rx: float | None = None
        self._suspect = False

    # -- sending ---------------------------------------------------------

    def send(self, msg: Message) -> None:
        """Queue ``msg``; it goes out once every earlier frame is acknowledged.

        Raises SrlMessageError if the message cannot be encoded or is not one
        this side sends (the host sends commands, the device events).
        """
        cmd, data = encode_message(msg)
        if is_command(cmd) != (self.role is Role.HOST):
            raise SrlMessageError(cmd, f"a {self.role} does not send {type(msg).__name__}")
        self._queue.append((cmd, data))

    @property
    def next_seq(self) -> int:
        """The SEQ our next new frame gets: a new link on the same line should start here,
        so the peer never takes its first frame for a repeat of our last."""
        return self._seq

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing awaiting ACK."""
        return self._outstanding is None and not self._queue

    @property
    def queued(self) -> int:
        """Messages not yet acknowledged (in flight or waiting their turn)."""
        return len(self._queue) + (self._outstanding is not None)

    def data_to_send(self, now: float) -> bytes:
        """Bytes to write now: pending ACK/NAKs, then at most one frame."""
        out = bytearray(self._control)
        self._control.clear()
        acks = out.count(ACK)
        self.stats.acks_sent += acks
        self.stats.naks_sent += len(out) - acks
        frame: bytes | None = None
        if self._outstanding is None and self._queue:
            cmd, data = self._queue.popleft()
            frame = encode_frame(self._seq, cmd, data)
            self._seq = (self._seq + 1) & 0xFF
            self._outstanding = frame
            self._retries = 0
            self._resend = False
            self.stats.frames_out += 1
        elif self._outstanding is not None and self._resend:
            frame = self._outstanding
            self._resend = False
            self.stats.retransmits += 1
        if frame is not None:
            out += frame
            self._ack_deadline = now + len(out) * self._byte_time + ACK_TIMEOUT_S
        self.stats.bytes_out += len(out)
        return bytes(out)

    # -- receiving -------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        if self._last_rx is not None and now >= self._last_rx + LINE_IDLE_S:
            self._line_went_idle(now)
        self._last_rx = now
        self.stats.bytes_in += len(data)
        for event in self._decoder.feed(data):
            self._on_decoder_event(event, now)

    def next_deadline(self) -> float | None:
        deadlines: list[float] = []
        if self._outstanding is not None and not self._resend and self._ack_deadline is not None:
            deadlines.append(self._ack_deadline)
        if self._decoder.pending and self._last_rx is not None:
            deadlines.append(self._last_rx + LINE_IDLE_S)
        return min(deadlines) if deadlines else None

    def handle_timeout(self, now: float) -> None:
        if (
            self._decoder.pending
            and self._last_rx is not None
            and now >= self._last_rx + LINE_IDLE_S
        ):
            self._line_went_idle(now)
        if (
            self._outstanding is not None
            and not self._resend
            and self._ack_deadline is not None
            and now >= self._ack_deadline
        ):
            self._retransmit()

    def next_event(self) -> LinkEvent | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[LinkEvent]:
        """Every event so far, oldest first, removing them."""
        out = list(self._events)
        self._events.clear()
        return out

    def reset(self) -> None:
        """Start afresh after the port was reopened: drop partial input and
        queued output. The SEQ keeps counting, so the peer does not mistake our
        first new frame for a repeat of our last old one; the memory of the
        peer's last frame stays, so its retransmission of a frame we already
        delivered before the reopen is not delivered again."""
        self._decoder.reset()
        self._queue.clear()
        self._control.clear()
        self._outstanding = None
        self._retries = 0
        self._resend = False
        self._ack_deadline = None
        self._last_rx = None
        self._suspect = False

    # -- internals -------------------------------------------------------

    def _line_went_idle(self, now: float) -> None:
        # A partial frame that saw no byte for LINE_IDLE_S was cut short; what
        # follows its STX is rescanned (still distrusting ACK/NAK in it).
        while self._decoder.pending:
            for event in self._decoder.flush():
                self._on_decoder_event(event, now)
        self._suspect = False

    def _on_decoder_event(self, event: DecoderEvent, now: float) -> None:
        match event:
            case Frame():
                self._on_frame(event, now)
            case Ack():
                if self._suspect:
                    self.stats.ignored_acks += 1
                    return
                self.stats.acks_received += 1
                if self._outstanding is not None:
                    self._outstanding = None
                    self._resend = False
                    self._ack_deadline = None
                    self._retries = 0
            case Nak():
                if self._suspect:
                    self.stats.ignored_acks += 1
                    return
                self.stats.naks_received += 1
                if self._outstanding is not None and not self._resend:
                    self._retransmit()
            case BadFrame(reason):
                self._suspect = True
                self.stats.resyncs += 1
                if reason == "crc":
                    self.stats.bad_crc += 1
                else:
                    self.stats.bad_frames += 1
                self._events.append(FrameRejected(reason))
                if not self._control.endswith(bytes([NAK])):
                    self._control.append(NAK)
            case Noise(count):
                self._suspect = True
                self.stats.noise_bytes += count

    def _on_frame(self, frame: Frame, now: float) -> None:
        self._suspect = False
        self.stats.frames_in += 1
        # A good frame answers any NAK still waiting to go out for the damaged
        # copy before it: the peer need not repeat what has now arrived.
        if self._control.endswith(bytes([NAK])):
            del self._control[-1]
        key = (frame.seq, frame.crc)
        if key == self._last_accepted:
            self.stats.duplicates += 1
            if now - self._last_ack_at >= DUPLICATE_HOLDOFF_S:
                self._ack(now)
            return
        self._last_accepted = key
        self._ack(now)
        try:
            msg = decode_message(frame.cmd, frame.data)
        except SrlMessageError as exc:
            self.stats.rejected_messages += 1
            self._events.append(MessageRejected(frame.cmd, str(exc)))
            return
        if is_command(frame.cmd) == (self.role is Role.HOST):
            self.stats.rejected_messages += 1
            self._events.append(
                MessageRejected(frame.cmd, f"a {self.role} does not accept {type(msg).__name__}")
            )
            return
        self._events.append(MessageReceived(msg, frame.seq))

    def _ack(self, now: float) -> None:
        self._control.append(ACK)
        self._last_ack_at = now

    def _retransmit(self) -> None:
        if self._retries >= MAX_RETRANSMITS:
            dropped = 1 + len(self._queue)
            self._outstanding = None
            self._resend = False
            self._ack_deadline = None
            self._retries = 0
            self._queue.clear()
            self.stats.link_downs += 1
            self._events.append(LinkDown(dropped))
            return
        self._retries += 1
        self._resend = True
        self._ack_deadline = None
