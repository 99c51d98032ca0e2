"""QR scanners on a serial line (RS-232, or USB-CDC as /dev/ttyACM*), via pyserial-asyncio-fast.

The scanner sends each code as ASCII text ending with CR, LF or CR LF. A port that is
missing (unplugged) shows as `disconnected` and is opened again with a doubling delay;
one that exists but cannot be opened (permissions, another program's lock) as `error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
from collections.abc import Callable

import serial
import serial_asyncio_fast

from drivers.qr_scanner.base import ScannerBase
from drivers.serial_ports import OPEN_ERRORS, open_errno, open_error_detail
from protocols.hid_keyboard import MAX_CODE_CHARS

__all__ = ["ScannerLines", "SerialQrScanner"]

_TERMINATOR = re.compile(rb"[\r\n]")
_READ_SIZE = 4096
# Closing runs in an executor thread; it is quick unless the kernel driver is wedged.
_CLOSE_TIMEOUT_S = 2.0


class ScannerLines:
    """Bytes from the line → complete codes; CR, LF and CR LF end a code, empty ones vanish.

    Bytes that are not ASCII decode as U+FFFD, which no QR check accepts. A code longer
    than `max_chars` is dropped whole, up to its terminator, and counted in `overflows`.
    """

    def __init__(self, max_chars: int = MAX_CODE_CHARS) -> None:
        self.max_chars = max_chars
        self.overflows = 0
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[str]:
        codes: list[str] = []
        parts = _TERMINATOR.split(data)
        for i, part in enumerate(parts):
            if not self._discarding:
                if len(self._buffer) + len(part) > self.max_chars:
                    self.overflows += 1
                    self._buffer.clear()
                    self._discarding = True
                else:
                    self._buffer += part
            if i < len(parts) - 1:
                if self._buffer and not self._discarding:
                    codes.append(self._buffer.decode("ascii", errors="replace"))
                self._buffer.clear()
                self._discarding = False
        return codes


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the port and wait (bounded) until it is closed, also when cancelled: the next
    session, or the scanner built by a reload, can open it at once (exclusive=True)."""
    # abort, not close: a graceful close first flushes, which blocks on a port gone away.
    writer.transport.abort()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await asyncio.shield(writer.wait_closed())


class SerialQrScanner(ScannerBase):
    """The serial scanner component: `on_scan(text)` for each code read."""

    kind = "serial"

    def __init__(
        self,
        on_scan: Callable[[str], None],
        *,
        port: str,
        baudrate: int = 9600,
        rescan_initial_s: float = 0.5,
        rescan_max_s: float = 5.0,
        max_chars: int = MAX_CODE_CHARS,
    ) -> None:
        super().__init__(on_scan, rescan_initial_s=rescan_initial_s, rescan_max_s=rescan_max_s)
        self.port = port
        self.baudrate = baudrate
        self.max_chars = max_chars

    async def _session(self) -> None:
        try:
            # exclusive: a second program on the port would steal half of every code.
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=self.port, baudrate=self.baudrate, exclusive=True
            )
        except OPEN_ERRORS as exc:
            self._open_failed(exc)
            return
        lines = ScannerLines(self.max_chars)
        self._set_ready(self.port)
        try:
            while True:
                try:
                    data = await reader.read(_READ_SIZE)
                except (serial.SerialException, OSError):
                    break  # unplugged: the read fails with EIO
                if not data:
                    break
                overflows = lines.overflows
                codes = lines.feed(data)
                if lines.overflows != overflows:
                    self._overlong(self.max_chars)
                for code in codes:
                    self._deliver(code)
        finally:
            await _close(writer)
        self._set_disconnected()

    def _open_failed(self, exc: BaseException) -> None:
        code = open_errno(exc)
        if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO):
            self._set_disconnected()
        elif code == errno.EACCES:
            self._set_error(f"no permission to open {self.port}: the posd user needs group dialout")
        elif code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
            self._set_error(f"{self.port} is in use by another program")
        else:
            self._set_error(f"cannot open {self.port}: {open_error_detail(exc)}")
