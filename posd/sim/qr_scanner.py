"""A serial QR scanner on a pseudo-terminal, for `posd demo` and tests.

posd opens `port` as it would /dev/ttyACM0; `await scan(text)` sends the code as a
scanner in serial mode does (text, then CR). With `link`, `port` is a symlink that
`unplug()` removes and `replug()` points at a fresh pty, as udev does with
/dev/posd-scanner when the cable is pulled and put back.
"""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path
from types import TracebackType

__all__ = ["SimulatedSerialScanner"]


class SimulatedSerialScanner:
    def __init__(self, link: Path | None = None) -> None:
        self._link = link
        self._master: int | None = None
        self._slave: int | None = None
        self.replug()

    @property
    def port(self) -> str:
        """The path posd opens."""
        if self._link is not None:
            return str(self._link)
        if self._slave is None:
            raise RuntimeError("the simulated scanner is unplugged and has no port")
        return os.ttyname(self._slave)

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def replug(self) -> None:
        """Plug in: a new pty (and the link pointed at it)."""
        self.unplug()
        self._master, self._slave = os.openpty()
        # Raw, so nothing posd sends is echoed back into the master's buffer; and holding
        # the slave open keeps the pty alive while posd closes and reopens its side.
        tty.setraw(self._slave)
        if self._link is not None:
            self._link.symlink_to(os.ttyname(self._slave))

    def unplug(self) -> None:
        """Pull the cable: posd's reads fail with EIO and the link disappears."""
        if self._link is not None:
            self._link.unlink(missing_ok=True)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    close = unplug

    async def scan(self, text: str, terminator: str = "\r") -> None:
        """Send a code as the scanner does: ASCII text, then the terminator."""
        await self.write((text + terminator).encode("ascii"))

    async def write(self, data: bytes) -> None:
        """Send raw bytes, for line endings and noise a real scanner might produce."""
        master = self._master
        if master is None:
            raise RuntimeError("the simulated scanner is unplugged")
        # A long write blocks until posd reads, so it runs off the event loop posd reads on.
        await asyncio.to_thread(self._write_all, master, data)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def __enter__(self) -> SimulatedSerialScanner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
