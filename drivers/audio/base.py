"""What every audio output shares: its state, its error, one playback at a time.

An output is an async object: `play(loud)` sounds the chime once (or raises `AudioError`,
whose message is safe to log), `check()` looks cheaply, without a sound, whether it could.
`state` is the status object's device state; `detail` says why, or what is in use.
"""

from __future__ import annotations

import asyncio
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Literal

__all__ = ["AudioDisabled", "AudioError", "Missing", "Output", "OutputState", "Started", "sanitize"]

OutputState = Literal["ready", "busy", "disconnected", "error", "disabled"]

Started = Callable[[], None]
"""Called once when the output has begun to sound (aplay opened the device, the printer took
the command, the first tone is on)."""

log = logging.getLogger(__package__)

DETAIL_MAX = 240
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]+")


class AudioError(Exception):
    """A playback or check failed. The message is plain, bounded and safe to log."""


class AudioDisabled(AudioError):
    """There is no output to play on (`audio.output = "none"`)."""


class Missing(AudioError):
    """The device is not there (no sound card, no printer port): state disconnected."""


def sanitize(text: str | bytes, limit: int = DETAIL_MAX) -> str:
    """Vendor text (a tool's stderr, a device's answer) made fit for a log line: decoded,
    control and bidi characters replaced, whitespace folded, at most `limit` characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Output(ABC):
    """One way of sounding the chime. Subclasses implement `_play` and `_check`."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.state: OutputState = "ready"
        self.detail: str | None = None
        self._settled: OutputState = self.state
        self._detail_logged: str | None = None
        self._play_failed = False
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[Output], None]] = []

    @property
    @abstractmethod
    def target(self) -> str:
        """What it plays on, for logs and the ready detail: a device, a port, a binary."""

    def subscribe(self, listener: Callable[[Output], None]) -> None:
        """`listener(output)` after each change of settled state (ready, error, disconnected;
        not the busy of each playback, nor a new wording of the same failure)."""
        self._listeners.append(listener)

    async def play(self, loud: bool, *, on_started: Started | None = None) -> None:
        """Sounds the chime once, the escalated one when `loud`; returns when it has ended.
        Playbacks on one output never overlap: a second call waits for the first."""
        async with self._lock:
            self.state = "busy"
            try:
                await self._play(loud, on_started or _nothing)
            except AudioError as exc:
                self._failed(_failed_state(exc), str(exc))
                raise
            except OSError as exc:
                message = f"{self.name} {self.target}: {sanitize(exc.strerror or str(exc))}"
                self._failed("error", message)
                raise AudioError(message) from exc
            except asyncio.CancelledError:
                # Cancelled (the order was acknowledged mid-chime): not the output's fault.
                self._settle("ready", self.target)
                raise
            except Exception as exc:
                # A bug must not make the shop deaf: the chain moves on, the log has it.
                log.exception("audio output %s failed unexpectedly", self.name)
                message = f"{self.name} {self.target}: internal error ({type(exc).__name__})"
                self._failed("error", message)
                raise AudioError(message) from exc
            self._play_failed = False
            self._settle("ready", self.target)

    async def check(self) -> OutputState:
        """Looks whether the output could play, without a sound; a busy output is left alone."""
        if self._lock.locked():
            return self.state
        try:
            await self._check()
        except AudioError as exc:
            state = _failed_state(exc)
            if state == "disconnected":
                self._play_failed = False  # gone: the next look that finds it is news
            self._settle(state, str(exc))
        except OSError as exc:
            self._settle(
                "error", f"{self.name} {self.target}: {sanitize(exc.strerror or str(exc))}"
            )
        else:
            # A playback that failed outweighs a look that finds nothing wrong (a device
            # busy elsewhere looks fine); only a playback clears it.
            if not self._play_failed:
                self._settle("ready", self.target)
        return self.state

    def _failed(self, state: OutputState, detail: str) -> None:
        self._play_failed = state == "error"
        self._settle(state, detail)

    @abstractmethod
    async def _play(self, loud: bool, on_started: Started) -> None: ...

    @abstractmethod
    async def _check(self) -> None:
        """Raises `Missing` when the device is absent, `AudioError` when it is unusable."""

    def _settle(self, state: OutputState, detail: str | None) -> None:
        before = self._settled
        self.state, self.detail = state, detail
        if state == before:
            if detail != self._detail_logged and state in ("error", "disconnected"):
                # The same failure in new words (aplay's, then a check's): no new event.
                self._detail_logged = detail
                log.debug("audio output %s: %s", self.name, detail)
            return
        self._settled = state
        self._detail_logged = detail
        if state in ("error", "disconnected"):
            log.warning("audio output %s: %s", self.name, detail)
        for listener in self._listeners:
            try:
                listener(self)
            except Exception:
                log.exception("an audio state listener failed")


def _failed_state(exc: AudioError) -> OutputState:
    return "disconnected" if isinstance(exc, Missing) else "error"


def _nothing() -> None:
    pass
