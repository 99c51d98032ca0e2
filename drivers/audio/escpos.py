"""The chime on a receipt printer's buzzer (ESC/POS), for boxes with no speaker.

Two command forms, chosen per printer:
- "esc-paren-a": Epson's `ESC ( A pL pH fn n c t1 t2`, fn = 97, n = 100 (TM-U230 and the
  printers that copy it): `1B 28 41 05 00 61 64 c t1 t2`, the buzzer on for t1 x 100 ms and
  off for t2 x 100 ms, c times (1-63);
- "esc-b": `ESC B n t` (`1B 42 n t`), on most other ESC/POS printers: n beeps (1-9), each
  t units long (1-9; 50 or 100 ms by model).
A printer that gets a new beep command while beeping cuts the first short, so a playback
lasts as long as its pattern.

The port is a serial device (the tty is set raw at `baudrate`) or a printer device such as
/dev/usb/lp0. Writes never block the event loop: they run in a thread, non-blocking, with a
deadline, since an offline printer (cover open, no paper) stops taking data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
from dataclasses import dataclass
from typing import Literal, get_args

import serial

from .base import AudioError, Missing, Output, Started, sanitize

__all__ = ["ESCPOS_FORMS", "BeepCommand", "EscposForm", "EscposOutput", "beep_command"]

EscposForm = Literal["esc-paren-a", "esc-b"]
ESCPOS_FORMS: tuple[str, ...] = get_args(EscposForm)

WRITE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class BeepCommand:
    data: bytes
    seconds: float
    """How long the printer beeps for it (at most)."""


def beep_command(form: EscposForm, loud: bool) -> BeepCommand:
    """The bytes that beep the chime's pattern: three beeps, the escalated one six longer
    ones."""
    if form == "esc-paren-a":
        count, on, off = (6, 3, 1) if loud else (3, 2, 1)
        data = bytes([0x1B, 0x28, 0x41, 0x05, 0x00, 0x61, 0x64, count, on, off])
        return BeepCommand(data, count * (on + off) * 0.1)
    if form == "esc-b":
        count, units = (6, 4) if loud else (3, 2)
        # Units are 50 ms on some models, 100 ms on others: wait for the longer.
        return BeepCommand(bytes([0x1B, 0x42, count, units]), count * units * 0.1)
    raise ValueError(f"ESC/POS beep form {form!r} is not one of {', '.join(ESCPOS_FORMS)}")


def _send(path: str, data: bytes, baudrate: int, timeout_s: float) -> None:
    """Writes `data` to the printer port; blocking, so run in a thread."""
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    if os.isatty(fd):
        os.close(fd)
        with serial.Serial(path, baudrate=baudrate, write_timeout=timeout_s) as port:
            try:
                port.write(data)
            except serial.SerialTimeoutException:
                raise AudioError(f"printer {path} took no data for {timeout_s:.0f} s") from None
        return
    try:
        deadline = time.monotonic() + timeout_s
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AudioError(
                        f"printer {path} took no data for {timeout_s:.0f} s (offline? no paper?)"
                    ) from None
                select.select([], [fd], [], min(left, 0.1))
    finally:
        os.close(fd)


class EscposOutput(Output):
    name = "escpos"

    def __init__(self, port: str, *, form: EscposForm = "esc-paren-a", baudrate: int = 9600):
        super().__init__()
        if form not in ESCPOS_FORMS:
            raise ValueError(f"ESC/POS beep form {form!r} is not one of {', '.join(ESCPOS_FORMS)}")
        self.port = port
        self.form: EscposForm = form
        self.baudrate = baudrate

    @property
    def target(self) -> str:
        return f"{self.port} ({self.form})"

    async def _play(self, loud: bool, on_started: Started) -> None:
        command = beep_command(self.form, loud)
        try:
            await asyncio.to_thread(_send, self.port, command.data, self.baudrate, WRITE_TIMEOUT_S)
        except FileNotFoundError:
            raise Missing(f"printer port {self.port} does not exist") from None
        except serial.SerialException as exc:
            raise AudioError(f"printer port {self.port}: {sanitize(str(exc))}") from None
        on_started()
        # Hold the output while the printer beeps: a new command would cut the pattern.
        await asyncio.sleep(command.seconds)

    async def _check(self) -> None:
        exists = await asyncio.to_thread(os.path.exists, self.port)
        if not exists:
            raise Missing(f"printer port {self.port} does not exist")
        with contextlib.suppress(OSError):
            if not os.access(self.port, os.W_OK):
                raise AudioError(f"printer port {self.port} is not writable by this user")
