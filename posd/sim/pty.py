"""The serial line of a simulated device: a pseudo-terminal posd opens as it would a tty.

The simulator holds the master end; `path` is the slave, or `link`, a symlink to it that
`unplug()` removes and `plug()` points at a fresh pty, as udev does with /dev/posd-reader and
/dev/posd-scanner when a cable is pulled and put back.
"""

from __future__ import annotations

import os
import tty
from pathlib import Path

__all__ = ["SimulatedLine"]


class SimulatedLine:
    def __init__(self, link: Path | None = None, *, device: str = "device") -> None:
        self._link = link
        self._device = device
        self.master: int | None = None
        """The simulator's end; None while unplugged."""
        self._slave: int | None = None

    @property
    def path(self) -> str:
        """The path posd opens."""
        if self._link is not None:
            return str(self._link)
        if self._slave is None:
            raise RuntimeError(f"the {self._device} is unplugged and has no port")
        return os.ttyname(self._slave)

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def plug(self, *, blocking: bool = True) -> int:
        """A fresh pty (and the link pointed at it); its master."""
        self.unplug()
        master, slave = os.openpty()
        # Raw, so nothing posd writes is echoed back into the master; and the slave stays
        # open here so the pty lives while posd closes and reopens its side.
        tty.setraw(slave)
        os.set_blocking(master, blocking)
        self.master, self._slave = master, slave
        if self._link is not None:
            self._link.symlink_to(os.ttyname(slave))
        return master

    def unplug(self) -> None:
        """Pull the cable: posd's reads fail with EIO and the link disappears."""
        if self._link is not None:
            self._link.unlink(missing_ok=True)
        for fd in (self.master, self._slave):
            if fd is not None:
                os.close(fd)
        self.master = self._slave = None
