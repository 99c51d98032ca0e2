"""`posd chime`: the written WAV measured against every figure of the design, playback on the
configured output through `aplay -D null`, and exit 69 with what to do when no output works."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.drivers.audio.chime_figures import louder_by_db, measure, problems
from tests.helpers.configs import write_config
from tests.helpers.unprivileged import REPO_ROOT

needs_aplay = pytest.mark.skipif(shutil.which("aplay") is None, reason="alsa-utils missing")


def posd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posd", "chime", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_the_written_chimes_meet_every_figure(tmp_path: Path) -> None:
    normal, loud = tmp_path / "chime.wav", tmp_path / "loud.wav"
    assert posd("--to", str(normal)).returncode == 0
    done = posd("--loud", "--to", str(loud))
    assert done.returncode == 0 and "escalated chime written to" in done.stdout
    normal_figures, loud_figures = measure(normal.read_bytes()), measure(loud.read_bytes())
    assert problems(normal_figures, loud=False) == []
    assert problems(loud_figures, loud=True) == []
    assert louder_by_db(normal_figures, loud_figures) >= 2.0


def test_a_wav_that_cannot_be_written_is_73(tmp_path: Path) -> None:
    done = posd("--to", str(tmp_path / "missing-dir" / "chime.wav"))
    assert done.returncode == 73 and "cannot write" in done.stderr


@needs_aplay
def test_plays_on_the_configured_output(tmp_path: Path) -> None:
    config = write_config(tmp_path, audio={"output": "alsa", "device": "null"})
    done = posd("-c", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "chime played on alsa (null)"
    done = posd("-c", str(config), "--loud")
    assert done.returncode == 0 and done.stdout.startswith("escalated chime played on alsa")


@needs_aplay
def test_no_working_output_is_69_with_what_to_do(tmp_path: Path) -> None:
    config = write_config(tmp_path, audio={"output": "alsa", "device": "plughw:99"})
    done = posd("-c", str(config))
    assert done.returncode == 69
    assert "no audio output played the chime: alsa: aplay -D plughw:99" in done.stderr
    assert "what to do:" in done.stderr and "--to chime.wav" in done.stderr
    silent = write_config(tmp_path, audio={"output": "none"})
    done = posd("-c", str(silent))
    assert done.returncode == 69 and 'audio.output is "none"' in done.stderr


def test_config_problems_are_78_and_a_missing_config_66(tmp_path: Path) -> None:
    config = write_config(tmp_path, audio={"output": "speaker"})
    done = posd("-c", str(config))
    assert done.returncode == 78 and "audio.output" in done.stderr
    assert posd("-c", str(tmp_path / "absent.toml")).returncode == 66
