"""The chain of outputs the daemon plays the chime on, built from the `[audio]` config.

`auto` tries ALSA, then the receipt printer's buzzer (when a printer port is configured or
found), then the console beeper. A failing output goes to `error` with a detail and the next
one is tried at once; one that failed recently is tried last, so a chime does not wait on it
every time, yet it comes back by itself (a replugged USB speaker). A playback that every output
failed raises `AudioError`: the shop is deaf, and the daemon must say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .alsa import AlsaOutput
from .base import AudioDisabled, AudioError, Output, OutputState, Started
from .beeper import CONSOLES, BeepOutput
from .chime import chime_wav
from .escpos import EscposForm, EscposOutput
from .pulse import PulseOutput

__all__ = [
    "OUTPUT_KINDS",
    "AudioStatus",
    "OutputChange",
    "Playback",
    "Player",
    "build_player",
    "find_printer_ports",
]

log = logging.getLogger(__package__)

OUTPUT_KINDS = ("auto", "alsa", "pulse", "escpos", "beep", "none")
RETRY_AFTER_S = 60.0
"""An output that failed less than this long ago is tried after the others."""


@dataclass(frozen=True)
class AudioStatus:
    """The status object's `devices.audio`, plus why."""

    state: OutputState
    output: str
    """The output in use, or the configured kind while none works."""
    detail: str | None


@dataclass(frozen=True)
class Playback:
    """What `Player.play` did."""

    output: str
    """The output that played the chime."""
    failures: tuple[str, ...]
    """The outputs tried before it, each with why it failed ("alsa: ...")."""


@dataclass(frozen=True)
class OutputChange:
    """One output's settled state changed: the daemon's `device` event for audio."""

    output: str
    state: OutputState
    detail: str | None
    status: AudioStatus
    """The player's status after the change."""


def find_printer_ports() -> list[str]:
    """USB printer devices present (/dev/usb/lp*): the buzzer `auto` may use when no port is
    configured. Serial printers cannot be told from other serial devices: configure those."""
    return sorted(glob.glob("/dev/usb/lp[0-9]*"))


class Player:
    """Plays the chime on the first output of the chain that works; one playback at a time."""

    def __init__(
        self,
        outputs: Sequence[Output],
        *,
        configured: str,
        on_change: Callable[[OutputChange], None] | None = None,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outputs = tuple(outputs)
        self.configured = configured
        self._on_change = on_change
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._failed_at: dict[Output, float] = {}
        self._current: Output | None = self.outputs[0] if self.outputs else None
        self._lock = asyncio.Lock()
        self._pending: list[Output] | None = None
        for output in self.outputs:
            output.subscribe(self._changed)

    @property
    def state(self) -> OutputState:
        if not self.outputs:
            return "disabled"
        if any(output.state == "busy" for output in self.outputs):
            return "busy"
        if self._current is not None and self._current.state == "ready":
            return "ready"
        return "error"

    @property
    def output(self) -> str:
        """The name of the output in use: the one that played last, or the first that works."""
        return self._current.name if self._current is not None else self.configured

    @property
    def detail(self) -> str | None:
        if not self.outputs:
            return 'audio.output is "none"'
        if self._current is not None and self._current.state in ("ready", "busy"):
            return self._current.detail
        return "; ".join(f"{o.name}: {o.detail}" for o in self.outputs if o.detail) or None

    def status(self) -> AudioStatus:
        return AudioStatus(self.state, self.output, self.detail)

    async def play(self, loud: bool = False, *, on_started: Started | None = None) -> Playback:
        """Plays the chime once (the escalated one when `loud`) on the first output that
        works, and says which. Raises `AudioDisabled` when the output is "none" and
        `AudioError`, naming every failure, when no output could play it."""
        if not self.outputs:
            raise AudioDisabled('audio.output is "none": there is nothing to play the chime on')
        async with self._lock:
            with self._settling():
                return await self._play_chain(loud, on_started)

    async def _play_chain(self, loud: bool, on_started: Started | None) -> Playback:
        failures: list[str] = []
        for output in self._order():
            try:
                await output.play(loud, on_started=on_started)
            except AudioError as exc:
                self._failed_at[output] = self._clock()
                failures.append(f"{output.name}: {exc}")
                continue
            self._failed_at.pop(output, None)
            self._select(output)
            return Playback(output.name, tuple(failures))
        self._select(None)
        raise AudioError("no audio output played the chime: " + "; ".join(failures))

    async def prepare(self) -> None:
        """Renders the chimes the outputs will play (tens of ms of CPU) in a thread, so that
        neither the event loop nor the first chime waits for it; call it at start."""
        for output in self.outputs:
            if isinstance(output, AlsaOutput | PulseOutput):
                await asyncio.to_thread(chime_wav, False, output.volume)
                await asyncio.to_thread(chime_wav, True)

    async def check(self) -> AudioStatus:
        """Checks every output without a sound (cheap: no device is opened for playback) and
        picks the first that works; the daemon calls it at start and now and then, so that a
        deaf shop is known before an order arrives."""
        async with self._lock:
            with self._settling():
                await self._check_all()
        return self.status()

    async def _check_all(self) -> None:
        for output in self.outputs:
            state = await output.check()
            if state in ("error", "disconnected"):
                self._failed_at.setdefault(output, self._clock())
            else:
                self._failed_at.pop(output, None)
        self._select(next((o for o in self.outputs if o.state in ("ready", "busy")), None))

    def _order(self) -> list[Output]:
        """The chain, with the outputs that failed within `retry_after_s` moved to its end."""
        now = self._clock()
        recent = [
            o for o in self.outputs if now - self._failed_at.get(o, -math.inf) < self._retry_after_s
        ]
        return [o for o in self.outputs if o not in recent] + recent

    def _select(self, output: Output | None) -> None:
        if output is self._current:
            return
        self._current = output
        if output is not None:
            log.info(
                "audio: the chime plays on %s (%s)", output.name, output.detail or output.target
            )
        else:
            log.warning("audio: no output can play the chime")

    def _changed(self, output: Output) -> None:
        if self._pending is not None:
            # Inside a play or check: told once the chain has settled, with its final status.
            self._pending.append(output)
        else:
            self._tell([output])

    def _tell(self, outputs: list[Output]) -> None:
        if self._on_change is None:
            return
        status = self.status()
        for output in outputs:
            try:
                self._on_change(OutputChange(output.name, output.state, output.detail, status))
            except Exception:
                log.exception("the audio change handler failed")

    @contextlib.contextmanager
    def _settling(self) -> Iterator[None]:
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            self._tell(pending)


def build_player(
    output: str,
    device: str | None = None,
    volume: int = 80,
    *,
    escpos_form: EscposForm = "esc-paren-a",
    printer_port: str | None = None,
    printer_baudrate: int = 9600,
    consoles: Sequence[str] = CONSOLES,
    find_printers: Callable[[], list[str]] = find_printer_ports,
    on_change: Callable[[OutputChange], None] | None = None,
) -> Player:
    """The player for `[audio]`: `output` is one of OUTPUT_KINDS; `device` is the ALSA
    device (alsa, auto), the sink (pulse), the printer port (escpos) or the console (beep);
    `printer_port` is the buzzer `auto` falls back to (else the first USB printer found)."""
    if output not in OUTPUT_KINDS:
        raise ValueError(f"audio output {output!r} is not one of {', '.join(OUTPUT_KINDS)}")
    if not 0 <= volume <= 100:
        raise ValueError(f"volume {volume} is not a percentage from 0 to 100")
    if volume == 0 and output != "none":
        log.warning("audio.volume is 0: the chime is silent until it escalates")
    device = device or ""
    outputs: list[Output] = []
    if output == "alsa":
        outputs.append(AlsaOutput(device, volume=volume))
    elif output == "pulse":
        outputs.append(PulseOutput(device, volume=volume))
    elif output == "escpos":
        if not device:
            raise ValueError('audio output "escpos" needs the printer port as its device')
        outputs.append(EscposOutput(device, form=escpos_form, baudrate=printer_baudrate))
    elif output == "beep":
        outputs.append(BeepOutput((device,) if device else consoles))
    elif output == "auto":
        outputs.append(AlsaOutput(device, volume=volume))
        port = printer_port or next(iter(find_printers()), None)
        if port:
            outputs.append(EscposOutput(port, form=escpos_form, baudrate=printer_baudrate))
        outputs.append(BeepOutput(consoles))
    return Player(outputs, configured=output, on_change=on_change)
