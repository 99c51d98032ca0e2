"""The chime on the console beeper (the PC speaker, KIOCSOUND on a virtual console): the
chime's three notes as plain tones, the last resort of `auto`.

KIOCSOUND needs a virtual console (/dev/tty0, or /dev/console when it is one) and either that
console as the caller's terminal or CAP_SYS_TTY_CONFIG; elsewhere (a serial console, a
pseudo-terminal) it fails with ENOTTY, which is an `AudioError`. A box without a PC speaker
accepts the ioctl in silence: success here means the kernel took the tones, no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Sequence

from .base import AudioError, Missing, Output, Started, sanitize
from .chime import DESIGN, ChimeDesign, chime_tones

__all__ = ["CONSOLES", "KIOCSOUND", "BeepOutput"]

KIOCSOUND = 0x4B2F
"""<linux/kd.h>: start a tone of CLOCK_TICK_RATE / arg Hz, or stop with 0."""
CLOCK_TICK_RATE = 1193182
CONSOLES: tuple[str, ...] = ("/dev/console", "/dev/tty0")


def _open(devices: Sequence[str]) -> tuple[int, str]:
    """The first device that takes KIOCSOUND (checked with a silent 0); blocking."""
    problems: list[str] = []
    for path in devices:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            problems.append(f"{path}: {sanitize(exc.strerror or str(exc))}")
            continue
        try:
            fcntl.ioctl(fd, KIOCSOUND, 0)
        except OSError as exc:
            os.close(fd)
            problems.append(f"{path}: no console beeper ({sanitize(exc.strerror or str(exc))})")
            continue
        return fd, path
    if all("No such file" in problem for problem in problems):
        raise Missing("no console: " + "; ".join(problems))
    raise AudioError("; ".join(problems))


def _tone(fd: int, hz: float | None) -> None:
    # KIOCSOUND only programs the speaker's timer: it returns at once.
    fcntl.ioctl(fd, KIOCSOUND, round(CLOCK_TICK_RATE / hz) if hz else 0)


class BeepOutput(Output):
    name = "beep"

    def __init__(self, devices: Sequence[str] = CONSOLES, *, design: ChimeDesign = DESIGN):
        super().__init__()
        if not devices:
            raise ValueError("the console beeper needs at least one console device")
        self.devices = tuple(devices)
        self._design = design
        self._in_use: str | None = None

    @property
    def target(self) -> str:
        return self._in_use or " or ".join(self.devices)

    async def _play(self, loud: bool, on_started: Started) -> None:
        fd, self._in_use = await asyncio.to_thread(_open, self.devices)
        try:
            for n, tone in enumerate(chime_tones(loud, self._design)):
                _tone(fd, tone.hz)
                if n == 0:
                    on_started()
                await asyncio.sleep(tone.seconds)
        finally:
            # Never leave the speaker on, even when cancelled mid-note.
            with contextlib.suppress(OSError):
                _tone(fd, None)
            os.close(fd)

    async def _check(self) -> None:
        fd, self._in_use = await asyncio.to_thread(_open, self.devices)
        os.close(fd)
