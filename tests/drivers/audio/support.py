"""Pseudo-terminals standing in for a serial receipt printer (and for a console that is not
one), read from their master side."""

from __future__ import annotations

import asyncio
import os
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager

WAIT_S = 5.0


class Pty:
    """A pseudo-terminal: the driver opens `path`; the test reads what it wrote from the
    master. The slave stays open here too, so the driver's close does not hang the line up."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)

    def pending(self) -> bool:
        """Whether the driver has written bytes not yet read (now, without waiting)."""
        return bool(select.select([self.master], [], [], 0)[0])

    def _read(self, count: int) -> bytes:
        data = b""
        deadline = time.monotonic() + WAIT_S
        while len(data) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"timed out: {len(data)} of {count} bytes came: {data!r}")
            data += os.read(self.master, count - len(data))
        return data

    async def read(self, count: int) -> bytes:
        """Exactly `count` bytes, waiting for them (with a bound)."""
        return await asyncio.to_thread(self._read, count)


@contextmanager
def pty() -> Iterator[Pty]:
    line = Pty()
    try:
        yield line
    finally:
        line.close()
