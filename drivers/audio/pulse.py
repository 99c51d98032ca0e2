"""The chime through a user's sound server: `paplay` (PulseAudio, or PipeWire's pulse
server) or `pw-play` (PipeWire). Only when configured explicitly: a hardened system service
cannot reach a user's session server unless the unit is given its socket (PULSE_SERVER or
PIPEWIRE_REMOTE, passed on to the player).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence

from .base import AudioError, Output, Started
from .chime import DESIGN, chime_wav
from .process import run_player

__all__ = ["PLAYERS", "PulseOutput"]

PLAYERS: tuple[tuple[str, str], ...] = (("paplay", "pulseaudio-utils"), ("pw-play", "pipewire-bin"))
"""The players looked for, in order, with the Debian package of each."""
_PLAYBACK_MARGIN_S = 5.0


def _write_temp(data: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="posd-chime-", suffix=".wav")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


class PulseOutput(Output):
    name = "pulse"

    def __init__(
        self, sink: str = "", *, volume: int = 100, players: Sequence[tuple[str, str]] = PLAYERS
    ) -> None:
        super().__init__()
        self.sink = sink
        self.volume = volume
        self._players = tuple(players)

    @property
    def target(self) -> str:
        player = self._player()
        return f"{player[0] if player else 'paplay/pw-play'} {self.sink or '(default sink)'}"

    def _player(self) -> tuple[str, str] | None:
        for binary, package in self._players:
            if shutil.which(binary) is not None:
                return binary, package
        return None

    def _missing(self) -> AudioError:
        names = [f"{binary} ({package})" for binary, package in self._players]
        if len(names) == 1:
            return AudioError(f"{names[0]} is not installed")
        return AudioError(f"neither {' nor '.join(names)} is installed")

    async def _play(self, loud: bool, on_started: Started) -> None:
        player = self._player()
        if player is None:
            raise self._missing()
        binary, package = player
        argv = [binary]
        if self.sink:
            argv += ["-d", self.sink] if binary == "paplay" else ["--target", self.sink]
        # A file, not stdin: pw-play and paplay both read one the same way.
        path = await asyncio.to_thread(_write_temp, chime_wav(loud, self.volume))
        try:
            await run_player(
                [*argv, path],
                wav=None,
                timeout_s=DESIGN.duration_s(loud) + _PLAYBACK_MARGIN_S,
                started_marker=None,
                on_started=on_started,
                package=package,
            )
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _check(self) -> None:
        if self._player() is None:
            raise self._missing()
