"""SRL/1 framing: the frame layout, its encoder, and a streaming decoder.

```
STX | LEN_HI LEN_LO | SEQ | CMD | DATA ... | ETX | CRC_HI CRC_LO
```
LEN counts SEQ + CMD + DATA (2..1024); the CRC (CRC-16/CCITT-FALSE) covers
LEN_HI through ETX. Framing is by length, so STX and ETX may occur in DATA.

The decoder is sans-I/O: feed it bytes, get events. Outside a frame it
recognises the one-byte ACK and NAK; any other byte that is not STX is
noise. After a bad frame it resumes the search at the byte after that
frame's STX, as the spec says, so a frame hidden behind a false STX (noise
that happened to be 0x02) is still found.
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import (
    Bytes,
    Checksum,
    Const,
    Int8ub,
    Int16ub,
    RawCopy,
    Rebuild,
    Struct,
    len_,
    this,
)

from protocols.crc16 import crc16_ccitt_false

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15

MIN_LEN = 2
MAX_LEN = 1024
MAX_DATA = MAX_LEN - 2
# STX, LEN (2), ETX, CRC (2) around the LEN bytes the length counts.
OVERHEAD = 6
MAX_FRAME = MAX_LEN + OVERHEAD

_BODY = Struct(
    "length" / Rebuild(Int16ub, len_(this.data) + 2),
    "seq" / Int8ub,
    "cmd" / Int8ub,
    "data" / Bytes(this.length - 2),
    "etx" / Const(bytes([ETX])),
)

FRAME = Struct(
    "stx" / Const(bytes([STX])),
    "body" / RawCopy(_BODY),
    "crc" / Checksum(Int16ub, crc16_ccitt_false, this.body.data),
)
"""The SRL/1 frame as a construct Struct (build and parse; parse checks ETX and CRC)."""


class FrameError(ValueError):
    """An SRL/1 frame cannot be built from these values."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A well-formed frame: LEN in range, ETX in place, CRC correct."""

    seq: int
    cmd: int
    data: bytes
    crc: int

    def __repr__(self) -> str:
        # DATA may be card data: show its size, never its bytes.
        return (
            f"Frame(seq={self.seq}, cmd=0x{self.cmd:02X}, data=<{len(self.data)} bytes>,"
            f" crc=0x{self.crc:04X})"
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """An ACK byte seen outside a frame."""


@dataclass(frozen=True, slots=True)
class Nak:
    """A NAK byte seen outside a frame."""


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Something started with STX and was not a good frame.

    ``reason`` is one of ``length``, ``etx``, ``crc``, ``truncated``.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class Noise:
    """``count`` consecutive bytes outside a frame that were neither STX, ACK nor NAK."""

    count: int


DecoderEvent = Frame | Ack | Nak | BadFrame | Noise


def encode_frame(seq: int, cmd: int, data: bytes = b"") -> bytes:
    """The wire bytes of one frame. Raises FrameError for out-of-range values."""
    if not 0 <= seq <= 0xFF:
        raise FrameError(f"SEQ {seq} is outside 0..255")
    if not 0 <= cmd <= 0xFF:
        raise FrameError(f"CMD {cmd} is outside 0..255")
    if len(data) > MAX_DATA:
        raise FrameError(f"DATA of {len(data)} bytes exceeds the {MAX_DATA}-byte maximum")
    built: bytes = FRAME.build({"body": {"value": {"seq": seq, "cmd": cmd, "data": bytes(data)}}})
    return built


class FrameDecoder:
    """Streaming SRL/1 frame decoder.

    Holds at most one incomplete frame (MAX_FRAME - 1 bytes): input is
    consumed in slices no longer than a frame, and each slice is parsed
    before the next is appended.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.noise_bytes = 0
        self.resyncs = 0

    @property
    def pending(self) -> int:
        """Bytes held: the start of a frame not yet complete (0 when idle)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[DecoderEvent]:
        events: list[DecoderEvent] = []
        view = memoryview(data)
        for start in range(0, len(view), MAX_FRAME):
            self._buf += view[start : start + MAX_FRAME]
            self._parse(events)
        return events

    def flush(self) -> list[DecoderEvent]:
        """Give up on a buffered incomplete frame (the line went quiet mid-frame).

        Reports it as ``BadFrame("truncated")`` and rescans what followed its STX.
        """
        if not self._buf:
            return []
        events: list[DecoderEvent] = [BadFrame("truncated")]
        self.resyncs += 1
        del self._buf[0]
        self._parse(events)
        return events

    def reset(self) -> None:
        """Forget any partial frame (the port was reopened)."""
        self._buf.clear()

    def _parse(self, events: list[DecoderEvent]) -> None:
        buf = self._buf
        while buf:
            first = buf[0]
            if first != STX:
                self._skip_outside(events)
                continue
            if len(buf) < 3:
                return
            length = (buf[1] << 8) | buf[2]
            if length < MIN_LEN or length > MAX_LEN:
                self._bad(events, "length")
                continue
            total = length + OVERHEAD
            if len(buf) < total:
                return
            etx_at = 3 + length
            if buf[etx_at] != ETX:
                self._bad(events, "etx")
                continue
            crc = (buf[etx_at + 1] << 8) | buf[etx_at + 2]
            if crc16_ccitt_false(memoryview(buf)[1 : etx_at + 1]) != crc:
                self._bad(events, "crc")
                continue
            events.append(Frame(buf[3], buf[4], bytes(buf[5:etx_at]), crc))
            del buf[:total]

    def _skip_outside(self, events: list[DecoderEvent]) -> None:
        buf = self._buf
        noise = 0
        i = 0
        n = len(buf)
        while i < n:
            b = buf[i]
            if b == STX:
                break
            if b in (ACK, NAK):
                if noise:
                    events.append(Noise(noise))
                    self.noise_bytes += noise
                    noise = 0
                events.append(Ack() if b == ACK else Nak())
            else:
                noise += 1
            i += 1
        if noise:
            events.append(Noise(noise))
            self.noise_bytes += noise
        del buf[:i]

    def _bad(self, events: list[DecoderEvent], reason: str) -> None:
        events.append(BadFrame(reason))
        self.resyncs += 1
        del self._buf[0]
