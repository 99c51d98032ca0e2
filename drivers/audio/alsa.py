"""The chime through ALSA: `aplay` on the configured device, the WAV on its stdin.

A box without a sound card makes aplay fail at once ("audio open error"), which is an
`AudioError` and moves `auto` on to the next output. `hw:` devices are opened as `plughw:`:
the chime is 16-bit mono at 22,050 Hz, which raw hardware rarely takes, and plughw converts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from pathlib import Path

from .base import AudioError, Missing, Output, Started
from .chime import DESIGN, chime_wav
from .process import run_player

__all__ = ["AlsaOutput", "alsa_device"]

log = logging.getLogger(__package__)

PLAYBACK_MARGIN_S = 5.0
"""Beyond the chime's own length, how long aplay may take before it is killed."""
_STARTED = b"Playing "
_CARD = re.compile(r"^(?:plug)?hw:(?:CARD=)?([^,\s]+)|CARD=([^,\s]+)")


def alsa_device(device: str) -> str:
    """The ALSA device aplay is given for the configured one: "" is the default device."""
    if not device:
        return "default"
    if device.startswith("hw:"):
        return "plug" + device
    return device


class AlsaOutput(Output):
    name = "alsa"

    def __init__(
        self,
        device: str = "",
        *,
        volume: int = 100,
        aplay: str = "aplay",
        proc_asound: Path = Path("/proc/asound"),
    ) -> None:
        super().__init__()
        self.device = alsa_device(device)
        if self.device != (device or "default"):
            log.info(
                "ALSA device %s opened as %s, which converts the chime's format",
                device,
                self.device,
            )
        self.volume = volume
        self._aplay = aplay
        self._proc_asound = proc_asound

    @property
    def target(self) -> str:
        return self.device

    async def _play(self, loud: bool, on_started: Started) -> None:
        try:
            await run_player(
                [self._aplay, "-D", self.device, "-t", "wav"],
                wav=chime_wav(loud, self.volume),
                timeout_s=DESIGN.duration_s(loud) + PLAYBACK_MARGIN_S,
                started_marker=_STARTED,
                on_started=on_started,
                package="alsa-utils",
            )
        except AudioError as exc:
            # No card at all is the box without a speaker: disconnected, as a check says.
            problem = await asyncio.to_thread(self._card_problem)
            if problem:
                raise Missing(f"{exc}; {problem}") from None
            raise

    async def _check(self) -> None:
        """aplay is installed and the device's sound card is there (read from /proc/asound:
        opening the device could click the speaker)."""
        if shutil.which(self._aplay) is None:
            raise AudioError(f"{self._aplay} is not installed (Debian package alsa-utils)")
        if self.device == "null":
            return
        problem = await asyncio.to_thread(self._card_problem)
        if problem:
            raise Missing(f"{self.device}: {problem}")

    def _card_problem(self) -> str | None:
        cards = self._proc_asound / "cards"
        try:
            listing = cards.read_text(errors="replace")
        except OSError:
            return f"no sound card (no {cards})"
        match = _CARD.search(self.device)
        if match is None:
            return None if "no soundcards" not in listing and listing.strip() else "no sound card"
        card = match.group(1) or match.group(2)
        entry = self._proc_asound / (f"card{card}" if card.isdigit() else card)
        return None if entry.exists() else f"no sound card {card}"
