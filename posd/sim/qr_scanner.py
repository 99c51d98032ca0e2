"""A serial QR scanner on a pseudo-terminal, for `posd demo` and tests.

posd opens `port` as it would /dev/ttyACM0; `await scan(text)` sends the code as a
scanner in serial mode does (text, then CR). With `link`, `port` is a symlink that
`unplug()` removes and `replug()` points at a fresh pty, as udev does with
/dev/posd-scanner when the cable is pulled and put back.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import TracebackType

from posd.sim.pty import SimulatedLine

__all__ = ["SimulatedSerialScanner"]


class SimulatedSerialScanner:
    def __init__(self, link: Path | None = None) -> None:
        self._line = SimulatedLine(link, device="simulated scanner")
        self._line.plug()

    @property
    def port(self) -> str:
        """The path posd opens."""
        return self._line.path

    @property
    def plugged(self) -> bool:
        return self._line.plugged

    def replug(self) -> None:
        """Plug in: a new pty (and the link pointed at it)."""
        self._line.plug()

    def unplug(self) -> None:
        """Pull the cable: posd's reads fail with EIO and the link disappears."""
        self._line.unplug()

    close = unplug

    async def scan(self, text: str, terminator: str = "\r") -> None:
        """Send a code as the scanner does: ASCII text, then the terminator."""
        await self.write((text + terminator).encode("ascii"))

    async def write(self, data: bytes) -> None:
        """Send raw bytes, for line endings and noise a real scanner might produce."""
        master = self._line.master
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
