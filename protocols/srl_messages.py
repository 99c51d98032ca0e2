"""SRL/1 messages: the commands (host to reader) and events (reader to host).

Each message is a frozen dataclass; ``encode_message`` gives its (CMD, DATA)
and ``decode_message`` turns a (CMD, DATA) back into one, raising
``SrlMessageError`` for an unknown CMD, a DATA of the wrong size, or a value
outside what reader-link.md allows. Card data (TLV, issuer data) never shows
in a repr.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

from protocols.srl_frame import MAX_DATA
from protocols.vendor_text import display_text

CURRENCY_KRW = 410


class Cmd(IntEnum):
    PING = 0x01
    START_READ = 0x10
    CANCEL = 0x11
    COMPLETE = 0x12
    PONG = 0x81
    READ_STARTED = 0x90
    CANCELLED = 0x91
    CARD_DATA = 0xA0
    READ_FAILED = 0xA1
    COMPLETE_RESULT = 0xA2
    CARD_INSERTED = 0xB0
    CARD_REMOVED = 0xB1
    ERROR = 0xEE


def is_command(cmd: int) -> bool:
    """Commands go host to reader and have CMD < 0x80; events have CMD >= 0x80."""
    return cmd < 0x80


class Modes(IntFlag):
    CHIP = 0x01
    CONTACTLESS = 0x02
    MAGSTRIPE = 0x04


ALL_MODES = Modes.CHIP | Modes.CONTACTLESS | Modes.MAGSTRIPE


class EntryMode(IntEnum):
    CHIP = 0x05
    CONTACTLESS = 0x07
    MAGSTRIPE = 0x90


class ReadFailReason(IntEnum):
    TIMEOUT = 0x01
    CANCELLED = 0x02
    CARD_ERROR = 0x03
    USE_CHIP = 0x04
    CARD_REMOVED = 0x05
    UNSUPPORTED_CARD = 0x06


class ErrorCode(IntEnum):
    """ERROR codes reader-link.md defines; others are vendor-specific."""

    BUSY = 0x01  # a START_READ while a read is in progress
    BAD_COMMAND = 0x02
    HARDWARE_FAULT = 0x03


class SrlMessageError(ValueError):
    """A (CMD, DATA) pair, or a message's values, that SRL/1 does not allow."""

    def __init__(self, cmd: int, message: str) -> None:
        super().__init__(f"CMD 0x{cmd:02X}: {message}")
        self.cmd = cmd


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Pong:
    model: str
    firmware: str
    serial: str


@dataclass(frozen=True, slots=True)
class StartRead:
    amount: int
    currency: int
    modes: int
    timeout_s: int


@dataclass(frozen=True, slots=True)
class ReadStarted:
    pass


@dataclass(frozen=True, slots=True)
class Cancel:
    pass


@dataclass(frozen=True, slots=True)
class Cancelled:
    pass


@dataclass(frozen=True, slots=True)
class Complete:
    arc: str
    issuer_data: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class CompleteResult:
    approved: bool
    tlv: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class CardData:
    entry: EntryMode
    tlv: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ReadFailed:
    reason: ReadFailReason


@dataclass(frozen=True, slots=True)
class CardInserted:
    pass


@dataclass(frozen=True, slots=True)
class CardRemoved:
    pass


@dataclass(frozen=True, slots=True)
class ReaderError:
    code: int
    text: str


Message = (
    Ping
    | Pong
    | StartRead
    | ReadStarted
    | Cancel
    | Cancelled
    | Complete
    | CompleteResult
    | CardData
    | ReadFailed
    | CardInserted
    | CardRemoved
    | ReaderError
)

_START_READ = struct.Struct(">IHBB")

_EmptyMessage = Ping | ReadStarted | Cancel | Cancelled | CardInserted | CardRemoved

_EMPTY: dict[int, type[_EmptyMessage]] = {
    Cmd.PING: Ping,
    Cmd.READ_STARTED: ReadStarted,
    Cmd.CANCEL: Cancel,
    Cmd.CANCELLED: Cancelled,
    Cmd.CARD_INSERTED: CardInserted,
    Cmd.CARD_REMOVED: CardRemoved,
}
_EMPTY_CMD: dict[type, int] = {cls: cmd for cmd, cls in _EMPTY.items()}


def _check_data(cmd: int, data: bytes) -> bytes:
    if len(data) > MAX_DATA:
        raise SrlMessageError(cmd, f"DATA of {len(data)} bytes exceeds the {MAX_DATA}-byte maximum")
    return data


def _check_start_read(cmd: int, amount: int, currency: int, modes: int, timeout_s: int) -> None:
    if not 0 <= amount <= 0xFFFFFFFF:
        raise SrlMessageError(cmd, f"amount {amount} does not fit u32")
    if not 0 <= currency <= 0xFFFF:
        raise SrlMessageError(cmd, f"currency {currency} does not fit u16")
    if not 0 < modes <= int(ALL_MODES):
        raise SrlMessageError(cmd, f"modes 0x{modes:02X}: need a non-empty set of bits 0-2")
    if not 1 <= timeout_s <= 0xFF:
        raise SrlMessageError(cmd, f"timeout_s {timeout_s} is outside 1..255")


def _check_arc(cmd: int, arc: str) -> None:
    if len(arc) != 2 or not arc.isascii() or not arc.isalnum():
        raise SrlMessageError(cmd, f"ARC must be 2 ASCII letters or digits, got {arc!r}")


def _pong_part(cmd: int, name: str, value: str) -> None:
    if ";" in value:
        raise SrlMessageError(cmd, f"PONG {name} must not contain ';'")


def _text_bytes(cmd: int, name: str, value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate has no UTF-8 form; the position says where, the text is not repeated.
        problem = f"{name} is not encodable as UTF-8 (character {exc.start})"
        raise SrlMessageError(cmd, problem) from None


def encode_message(msg: Message) -> tuple[int, bytes]:
    """(CMD, DATA) for ``msg``. Raises SrlMessageError when a value cannot be sent."""
    cmd = _EMPTY_CMD.get(type(msg))
    if cmd is not None:
        return cmd, b""
    match msg:
        case Pong(model, firmware, serial):
            for name, value in (("model", model), ("firmware", firmware), ("serial", serial)):
                _pong_part(Cmd.PONG, name, value)
            text = _text_bytes(Cmd.PONG, "PONG text", f"{model};{firmware};{serial}")
            return Cmd.PONG, _check_data(Cmd.PONG, text)
        case StartRead(amount, currency, modes, timeout_s):
            _check_start_read(Cmd.START_READ, amount, currency, int(modes), timeout_s)
            return Cmd.START_READ, _START_READ.pack(amount, currency, int(modes), timeout_s)
        case Complete(arc, issuer_data):
            _check_arc(Cmd.COMPLETE, arc)
            return Cmd.COMPLETE, _check_data(Cmd.COMPLETE, arc.encode("ascii") + issuer_data)
        case CompleteResult(approved, tlv):
            return Cmd.COMPLETE_RESULT, _check_data(
                Cmd.COMPLETE_RESULT, bytes([1 if approved else 0]) + tlv
            )
        case CardData(entry, tlv):
            if not tlv:
                raise SrlMessageError(Cmd.CARD_DATA, "CARD_DATA needs card TLV")
            return Cmd.CARD_DATA, _check_data(Cmd.CARD_DATA, bytes([EntryMode(entry)]) + tlv)
        case ReadFailed(reason):
            return Cmd.READ_FAILED, bytes([ReadFailReason(reason)])
        case ReaderError(code, text):
            if not 0 <= code <= 0xFF:
                raise SrlMessageError(Cmd.ERROR, f"error code {code} does not fit u8")
            data = bytes([code]) + _text_bytes(Cmd.ERROR, "ERROR text", text)
            return Cmd.ERROR, _check_data(Cmd.ERROR, data)
    raise SrlMessageError(0, f"not an SRL/1 message: {type(msg).__name__}")


def _utf8(cmd: int, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SrlMessageError(cmd, f"text is not UTF-8 (byte {exc.start})") from None


def decode_message(cmd: int, data: bytes) -> Message:
    """The message a frame's (CMD, DATA) carries. Raises SrlMessageError if it is not one."""
    empty = _EMPTY.get(cmd)
    if empty is not None:
        if data:
            raise SrlMessageError(cmd, f"expects empty DATA, got {len(data)} bytes")
        return empty()
    if cmd == Cmd.CARD_DATA:
        if len(data) < 2:
            raise SrlMessageError(cmd, "CARD_DATA needs an entry byte and card TLV")
        try:
            entry = EntryMode(data[0])
        except ValueError:
            raise SrlMessageError(cmd, f"unknown entry mode 0x{data[0]:02X}") from None
        return CardData(entry, bytes(data[1:]))
    if cmd == Cmd.START_READ:
        if len(data) != _START_READ.size:
            raise SrlMessageError(cmd, f"expects {_START_READ.size} bytes, got {len(data)}")
        amount, currency, modes, timeout_s = _START_READ.unpack(data)
        _check_start_read(cmd, amount, currency, modes, timeout_s)
        return StartRead(amount, currency, modes, timeout_s)
    if cmd == Cmd.PONG:
        parts = _utf8(cmd, data).split(";")
        if len(parts) != 3:
            raise SrlMessageError(cmd, f"PONG needs model;firmware;serial, got {len(parts)} fields")
        return Pong(parts[0], parts[1], parts[2])
    if cmd == Cmd.COMPLETE:
        if len(data) < 2:
            raise SrlMessageError(cmd, "COMPLETE needs a 2-byte ARC")
        arc = data[:2].decode("latin-1")
        _check_arc(cmd, arc)
        return Complete(arc, bytes(data[2:]))
    if cmd == Cmd.COMPLETE_RESULT:
        if not data:
            raise SrlMessageError(cmd, "COMPLETE_RESULT needs a decision byte")
        if data[0] not in (0, 1):
            raise SrlMessageError(cmd, f"decision 0x{data[0]:02X} is neither 0x00 nor 0x01")
        return CompleteResult(data[0] == 1, bytes(data[1:]))
    if cmd == Cmd.READ_FAILED:
        if len(data) != 1:
            raise SrlMessageError(cmd, f"expects 1 byte, got {len(data)}")
        try:
            return ReadFailed(ReadFailReason(data[0]))
        except ValueError:
            raise SrlMessageError(cmd, f"unknown reason 0x{data[0]:02X}") from None
    if cmd == Cmd.ERROR:
        if not data:
            raise SrlMessageError(cmd, "ERROR needs a code byte")
        return ReaderError(data[0], _utf8(cmd, bytes(data[1:])))
    raise SrlMessageError(cmd, "unknown CMD")


def describe(msg: Message) -> str:
    """One line naming the message for logs and traces: sizes of card data, never its bytes,
    and vendor text only as protocols.vendor_text.display_text shows it."""
    match msg:
        case Pong(model, firmware, serial):
            return (
                f"PONG model={display_text(model)!r} firmware={display_text(firmware)!r} "
                f"serial={display_text(serial)!r}"
            )
        case StartRead(amount, currency, modes, timeout_s):
            return f"START_READ amount={amount} currency={currency} modes={modes} t={timeout_s}s"
        case Complete(arc, issuer_data):
            return f"COMPLETE arc={arc} issuer_data={len(issuer_data)}B"
        case CompleteResult(approved, tlv):
            return f"COMPLETE_RESULT {'approved' if approved else 'declined'} tlv={len(tlv)}B"
        case CardData(entry, tlv):
            return f"CARD_DATA entry={EntryMode(entry).name.lower()} tlv={len(tlv)}B"
        case ReadFailed(reason):
            return f"READ_FAILED {ReadFailReason(reason).name.lower()}"
        case ReaderError(code, text):
            return f"ERROR code=0x{code:02X} text={display_text(text)!r}"
    return Cmd(_EMPTY_CMD[type(msg)]).name
