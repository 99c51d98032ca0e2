"""Audio outputs for the order chime: asyncio device I/O, never importing posd.

Modules:
- `chime`: the chime synthesised (pure stdlib: wave, array, math) and its WAV, cached;
- `base`: `Output` (state, detail, one playback at a time), `AudioError`, `sanitize`;
- `process`: a command-line player run as an asyncio subprocess, stderr bounded;
- `alsa`: `aplay` on an ALSA device; `pulse`: `paplay` / `pw-play` (explicit only);
- `escpos`: the receipt printer's buzzer (`ESC ( A` fn 97, or `ESC B n t`);
- `beeper`: the console beeper (KIOCSOUND), the last resort;
- `player`: the chain `auto` walks, `build_player` from the `[audio]` config.

The daemon calls `build_player(output, device, volume, escpos_form=..., on_change=...)`,
then `await player.prepare()` and `await player.check()` at start (and `check()` now and
then), `await player.play(loud)` per chime (`AudioError`: no output played it, the shop is
deaf), and reads `player.status()` for `devices.audio`; each `OutputChange` is a `device`
event. `posd chime` is `await build_player(...).play(loud)`, or with `--to FILE.wav`,
`Path(FILE).write_bytes(chime_wav(loud, volume))`.
"""

from .alsa import AlsaOutput
from .base import AudioDisabled, AudioError, Output, OutputState, Started
from .beeper import CONSOLES, BeepOutput
from .chime import DESIGN, SAMPLE_RATE, ChimeDesign, Timbre, Tone, chime_tones, chime_wav, render
from .escpos import ESCPOS_FORMS, EscposForm, EscposOutput, beep_command
from .player import (
    OUTPUT_KINDS,
    AudioStatus,
    OutputChange,
    Playback,
    Player,
    build_player,
    find_printer_ports,
)
from .pulse import PulseOutput

__all__ = [
    "CONSOLES",
    "DESIGN",
    "ESCPOS_FORMS",
    "OUTPUT_KINDS",
    "SAMPLE_RATE",
    "AlsaOutput",
    "AudioDisabled",
    "AudioError",
    "AudioStatus",
    "BeepOutput",
    "ChimeDesign",
    "EscposForm",
    "EscposOutput",
    "Output",
    "OutputChange",
    "OutputState",
    "Playback",
    "Player",
    "PulseOutput",
    "Started",
    "Timbre",
    "Tone",
    "beep_command",
    "build_player",
    "chime_tones",
    "chime_wav",
    "find_printer_ports",
    "render",
]
