"""2-byte big-endian length framing of the ledger link: an encoder and a stream decoder."""

from __future__ import annotations

from typing import Final

MAX_FRAMED: Final = 0xFFFF
# The largest message of the profile is about 1.5 KB; more is a broken or hostile peer.
DEFAULT_MAX_LENGTH: Final = 4096


class FramingError(ValueError):
    """A length of zero or over the maximum: the stream cannot be trusted past this point."""


def frame(message: bytes, max_length: int = DEFAULT_MAX_LENGTH) -> bytes:
    """`message` preceded by its length, 2 bytes big-endian."""
    if not 0 < len(message) <= min(max_length, MAX_FRAMED):
        raise FramingError(f"message length {len(message)} is not 1 to {max_length}")
    return len(message).to_bytes(2, "big") + message


class LengthPrefixDecoder:
    """Feed received bytes, get complete messages.

    Messages completed before a bad length prefix are returned first and the error is raised
    by the next feed (`feed(b"")` will do); after that every feed raises it again, since the
    message boundaries are lost and the connection has to be dropped.
    """

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if not 0 < max_length <= MAX_FRAMED:
            raise ValueError(f"max_length must be 1 to {MAX_FRAMED}")
        self._max_length = max_length
        self._buffer = bytearray()
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet a complete message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        messages: list[bytes] = []
        while len(self._buffer) >= 2:
            length = int.from_bytes(self._buffer[:2], "big")
            if not 0 < length <= self._max_length:
                self._error = FramingError(f"length prefix {length} is not 1 to {self._max_length}")
                self._buffer.clear()
                if messages:
                    return messages
                raise self._error
            if len(self._buffer) < 2 + length:
                break
            messages.append(bytes(self._buffer[2 : 2 + length]))
            del self._buffer[: 2 + length]
        return messages
