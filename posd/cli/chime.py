"""`posd chime [--loud] [--to FILE.wav]`: the technician's sound check (operations.md).

Plays the order chime once on the output `[audio]` configures, walking the same chain the
daemon does (`auto`: ALSA, the printer's buzzer, the console beeper), and says which output
played it; or, with `--to`, writes it as a WAV file (at full volume, the design's level, which
the config's volume does not change) without reading any config.

Exit codes (sysexits): 0 played or written, 64 usage, 66 no config file, 69 no output played
it, 73 the WAV file cannot be written, 78 config error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from drivers.audio import AudioDisabled, AudioError, chime_wav
from posd.config import ConfigError, ConfigFileError, load_config
from posd.orders import player_from_config


def add_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    parser.add_argument("-c", "--config", help=config_help)
    parser.add_argument(
        "--loud", action="store_true", help="the escalated chime (an order nobody took)"
    )
    parser.add_argument(
        "--to", metavar="FILE.wav", type=Path, help="write the chime to FILE.wav, play nothing"
    )


def _err(message: str) -> None:
    print(f"posd chime: {message}", file=sys.stderr)


def write(path: Path, loud: bool) -> int:
    try:
        path.write_bytes(chime_wav(loud, 100))
    except OSError as exc:
        _err(f"cannot write {path}: {exc.strerror or exc}; name a file in a writable directory")
        return os.EX_CANTCREAT
    print(f"{'escalated ' if loud else ''}chime written to {path}")
    return os.EX_OK


def play(config_path: str, loud: bool) -> int:
    try:
        config = load_config(config_path)
    except ConfigFileError as exc:
        _err(str(exc))
        return os.EX_NOINPUT if all(not p.key_path for p in exc.problems) else os.EX_CONFIG
    except ConfigError as exc:
        _err(f"{config_path}: fix the config first (`posd config check {config_path}`):\n{exc}")
        return os.EX_CONFIG
    player = player_from_config(config)

    async def run() -> str:
        await player.prepare()
        await player.check()
        played = await player.play(loud)
        tried = "".join(f"\n  tried first: {failure}" for failure in played.failures)
        return f"played on {played.output} ({player.status().detail or 'default'}){tried}"

    try:
        said = asyncio.run(run())
    except AudioDisabled:
        _err(
            f'audio.output is "none" in {config_path}: orders would arrive unheard; set '
            'audio.output to "auto" (or alsa, escpos, beep) and try again'
        )
        return os.EX_UNAVAILABLE
    except AudioError as exc:
        _err(
            f"{exc}\nwhat to do: check the speaker and its cable, audio.device (`aplay -l` lists "
            "the sound cards), the printer's port and power, or that posd's user is in group "
            "audio; `posd chime --to chime.wav` writes the chime to listen to elsewhere"
        )
        return os.EX_UNAVAILABLE
    print(f"{'escalated ' if loud else ''}chime {said}")
    return os.EX_OK
