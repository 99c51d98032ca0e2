"""Each audio output against what really runs here: aplay on ALSA's null device and on devices
that do not exist, a printer port on a pseudo-terminal and on a file, the console beeper's
ioctl on a pseudo-terminal (where it fails, as on a serial console), a missing sound-server
player."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.audio import (
    AlsaOutput,
    AudioError,
    BeepOutput,
    EscposOutput,
    PulseOutput,
    beep_command,
)
from drivers.audio.alsa import alsa_device
from drivers.audio.base import sanitize
from drivers.audio.process import run_player

from .support import Pty, pty

pytestmark = pytest.mark.skipif(shutil.which("aplay") is None, reason="aplay (alsa-utils) missing")


@pytest.fixture
def line() -> Iterator[Pty]:
    with pty() as p:
        yield p


class Started:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


# ALSA


async def test_aplay_plays_the_chime_on_the_null_device() -> None:
    out = AlsaOutput("null")
    for loud in (False, True):
        started = Started()
        await out.play(loud, on_started=started)
        assert started.calls == 1
        assert (out.state, out.detail) == ("ready", "null")


def _has_a_sound_card() -> bool:
    try:
        return "no soundcards" not in Path("/proc/asound/cards").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("device", ["plughw:99", "no_such_pcm"])
async def test_aplay_on_a_missing_device_fails_at_once(device: str) -> None:
    out = AlsaOutput(device)
    started = Started()
    with pytest.raises(
        AudioError, match=rf"aplay -D {device} failed \(exit 1\):.*audio open error"
    ):
        await out.play(False, on_started=started)
    assert started.calls == 0
    assert out.detail is not None and "audio open error" in out.detail
    # No such card (or no card at all) is a device not there; a bad name on a box with a
    # sound card is an error.
    card_missing = device == "plughw:99" or not await asyncio.to_thread(_has_a_sound_card)
    assert out.state == ("disconnected" if card_missing else "error")
    if device == "plughw:99":
        assert "; no sound card" in out.detail


async def test_aplay_vendor_text_is_sanitised_and_bounded() -> None:
    """aplay echoes the device name in its error: control characters and length are cut."""
    out = AlsaOutput("bad\x1b[31m\x07pcm" + "x" * 5000)
    with pytest.raises(AudioError) as caught:
        await out.play(False)
    message = str(caught.value)
    assert "\x1b" not in message and "\x07" not in message
    assert "Unknown PCM bad [31m pcmxxx" in message
    assert len(message) < 400


def test_hw_devices_are_opened_through_plughw() -> None:
    assert alsa_device("hw:0,0") == "plughw:0,0"
    assert alsa_device("") == "default"
    assert alsa_device("plughw:1") == "plughw:1"
    assert alsa_device("sysdefault:CARD=PCH") == "sysdefault:CARD=PCH"


async def test_alsa_check_looks_for_the_card_without_a_sound() -> None:
    assert await AlsaOutput("null").check() == "ready"
    missing = AlsaOutput("plughw:99")
    assert await missing.check() == "disconnected"
    assert missing.detail is not None and "no sound card" in missing.detail
    absent = AlsaOutput("null", aplay="/nonexistent/aplay")
    assert await absent.check() == "error"
    assert absent.detail == "/nonexistent/aplay is not installed (Debian package alsa-utils)"
    with pytest.raises(AudioError, match="is not installed"):
        await absent.play(False)


async def test_alsa_check_on_this_machine_matches_its_cards() -> None:
    has_card = await asyncio.to_thread(Path("/proc/asound/card0").exists)
    assert await AlsaOutput("plughw:0").check() == ("ready" if has_card else "disconnected")


# The player subprocess


async def test_a_player_gets_the_whole_wav_on_stdin(tmp_path: Path) -> None:
    data = os.urandom(300_000)  # more than a pipe holds: fed while the child reads
    child = (
        "import sys; n = len(sys.stdin.buffer.read()); "
        f"sys.stderr.write('Playing WAVE stdin\\n'); sys.exit(0 if n == {len(data)} else 1)"
    )
    started = Started()
    await run_player(
        [sys.executable, "-c", child],
        wav=data,
        timeout_s=30,
        started_marker=b"Playing ",
        on_started=started,
        package="-",
    )
    assert started.calls == 1


async def test_a_player_flooding_stderr_costs_a_bounded_message() -> None:
    child = (
        "import sys; sys.stderr.write('\\x1b[2J' + 'x' * 2_000_000 + '\\nlast words'); sys.exit(3)"
    )
    with pytest.raises(AudioError, match=r"failed \(exit 3\)") as caught:
        await run_player(
            [sys.executable, "-c", child],
            wav=None,
            timeout_s=30,
            started_marker=None,
            on_started=Started(),
            package="-",
        )
    assert len(str(caught.value)) < 400 and "\x1b" not in str(caught.value)


def _sleeper(pid_file: Path) -> list[str]:
    """A player that hangs: records its pid (sh starts in a millisecond), then sleeps."""
    return ["sh", "-c", f"echo $$ > '{pid_file}'; exec sleep 60"]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_player_that_hangs_is_killed_after_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(AudioError, match="did not finish within"):
        await run_player(
            _sleeper(pid_file),
            wav=None,
            timeout_s=1.0,
            started_marker=None,
            on_started=Started(),
            package="-",
        )
    assert _gone(int(pid_file.read_text()))


async def test_a_cancelled_playback_kills_the_player(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = asyncio.Event()
    task = asyncio.create_task(
        run_player(
            _sleeper(pid_file),
            wav=None,
            timeout_s=60,
            started_marker=None,
            on_started=started.set,
            package="-",
        )
    )
    await started.wait()
    async with asyncio.timeout(10):
        while not pid_file.exists() or not pid_file.read_text():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _gone(int(pid_file.read_text()))


# Sound servers


async def test_pulse_without_a_player_installed_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    out = PulseOutput()
    expected = "neither paplay (pulseaudio-utils) nor pw-play (pipewire-bin) is installed"
    with pytest.raises(AudioError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        await out.play(False)
    assert (out.state, out.detail) == ("error", expected)
    assert await out.check() == "error"


# ESC/POS printer buzzer


def test_escpos_command_bytes() -> None:
    assert beep_command("esc-paren-a", False).data == bytes.fromhex("1b 28 41 05 00 61 64 03 02 01")
    assert beep_command("esc-paren-a", True).data == bytes.fromhex("1b 28 41 05 00 61 64 06 03 01")
    assert beep_command("esc-b", False).data == bytes.fromhex("1b 42 03 02")
    assert beep_command("esc-b", True).data == bytes.fromhex("1b 42 06 04")
    for form in ("esc-paren-a", "esc-b"):
        normal, loud = beep_command(form, False), beep_command(form, True)
        assert loud.seconds > normal.seconds
    with pytest.raises(ValueError, match="not one of"):
        EscposOutput("/dev/null", form="esc-z")  # type: ignore[arg-type]


@pytest.mark.parametrize("form", ["esc-paren-a", "esc-b"])
async def test_escpos_beeps_over_a_serial_port(line: Pty, form: str) -> None:
    out = EscposOutput(line.path, form=form)  # type: ignore[arg-type]
    started = Started()
    expected = beep_command(out.form, False).data
    await out.play(False, on_started=started)
    assert await line.read(len(expected)) == expected
    assert not line.pending()
    assert started.calls == 1
    assert (out.state, out.detail) == ("ready", f"{line.path} ({form})")


async def test_escpos_on_a_printer_device_file(tmp_path: Path) -> None:
    """A USB printer (/dev/usb/lp0) is written like a file: no tty settings."""
    port = tmp_path / "lp0"
    port.write_bytes(b"")
    out = EscposOutput(str(port), form="esc-b")
    await out.play(True)
    assert port.read_bytes() == beep_command("esc-b", True).data


async def test_escpos_never_sends_a_second_pattern_over_the_first(line: Pty) -> None:
    out = EscposOutput(line.path)
    command = beep_command("esc-paren-a", False).data
    first = asyncio.create_task(out.play(False))
    assert await line.read(len(command)) == command
    second = asyncio.create_task(out.play(False))
    for _ in range(20):
        await asyncio.sleep(0)
    # The first pattern lasts 900 ms: the second command waits for it.
    assert out.state == "busy" and not line.pending() and not first.done()
    await first
    assert await line.read(len(command)) == command
    await second


async def test_escpos_playback_cancelled_leaves_the_output_usable(line: Pty) -> None:
    out = EscposOutput(line.path)
    started = asyncio.Event()
    task = asyncio.create_task(out.play(True, on_started=started.set))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert out.state == "ready"
    await line.read(len(beep_command("esc-paren-a", True).data))
    await out.play(False)
    assert await line.read(10) == beep_command("esc-paren-a", False).data


async def test_escpos_on_a_missing_port_is_disconnected(tmp_path: Path) -> None:
    out = EscposOutput(str(tmp_path / "no-printer"))
    with pytest.raises(AudioError, match="does not exist"):
        await out.play(False)
    assert out.state == "disconnected"
    assert await out.check() == "disconnected"


async def test_escpos_check_sees_a_present_port(line: Pty) -> None:
    assert await EscposOutput(line.path).check() == "ready"


async def test_a_failed_playback_outweighs_a_check_that_finds_nothing_wrong(
    tmp_path: Path,
) -> None:
    port = tmp_path / "lp0"
    port.mkdir()  # there, but takes no data
    out = EscposOutput(str(port))
    with pytest.raises(AudioError, match="Is a directory"):
        await out.play(False)
    assert out.state == "error"
    assert await out.check() == "error"
    port.rmdir()
    port.write_bytes(b"")
    await out.play(False)
    assert (out.state, await out.check()) == ("ready", "ready")


# Console beeper


async def test_the_beeper_on_a_terminal_that_is_no_console_fails(line: Pty) -> None:
    out = BeepOutput([line.path])
    with pytest.raises(AudioError, match="no console beeper \\(Inappropriate ioctl for device\\)"):
        await out.play(False)
    assert out.state == "error"
    assert await out.check() == "error"


async def test_the_beeper_without_a_console_is_disconnected(tmp_path: Path) -> None:
    out = BeepOutput([str(tmp_path / "tty0")])
    with pytest.raises(AudioError, match="no console"):
        await out.play(False)
    assert out.state == "disconnected"


async def test_the_beeper_check_takes_a_real_virtual_console() -> None:
    """Where the kernel has a virtual console we may use, the check's ioctl is silent (0)."""
    out = BeepOutput(["/dev/tty0"])
    if await out.check() != "ready":
        pytest.skip(f"no usable virtual console here: {out.detail}")
    assert out.detail == "/dev/tty0"


def test_sanitize_folds_control_and_bidi_characters() -> None:
    assert sanitize("a\x00b\r\nc\x1b[0m\u202ed".encode() + b"\xff") == "a b c [0m d\ufffd"
    assert sanitize("x" * 500) == "x" * 239 + "…"
