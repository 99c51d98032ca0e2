"""The chain of outputs with outputs that really fail: aplay on a device that does not exist,
a printer port that is not there, the console beeper's ioctl on a pseudo-terminal; and the
success path through `aplay -D null` and a printer on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.audio import (
    AlsaOutput,
    AudioDisabled,
    AudioError,
    AudioStatus,
    BeepOutput,
    EscposOutput,
    OutputChange,
    Player,
    PulseOutput,
    beep_command,
    build_player,
)

from .support import Pty, pty

pytestmark = pytest.mark.skipif(shutil.which("aplay") is None, reason="aplay (alsa-utils) missing")

NO_CARD = "plughw:99"
ESCPOS = beep_command("esc-paren-a", False).data


@pytest.fixture
def printer() -> Iterator[Pty]:
    with pty() as p:
        yield p


@pytest.fixture
def not_a_console() -> Iterator[Pty]:
    with pty() as p:
        yield p


class Changes(list[OutputChange]):
    def __call__(self, change: OutputChange) -> None:
        self.append(change)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def auto(
    device: str, printer: str | None, consoles: list[str], changes: Changes | None = None
) -> Player:
    return build_player(
        "auto",
        device,
        80,
        printer_port=printer,
        consoles=consoles,
        find_printers=lambda: [],
        on_change=changes,
    )


async def test_auto_plays_on_alsa_when_it_works(not_a_console: Pty) -> None:
    player = auto("null", None, [not_a_console.path])
    assert [o.name for o in player.outputs] == ["alsa", "beep"]
    played = await player.play()
    assert (played.output, played.failures) == ("alsa", ())
    assert player.status() == AudioStatus("ready", "alsa", "null")


async def test_auto_falls_back_to_the_printer_buzzer(printer: Pty, not_a_console: Pty) -> None:
    changes = Changes()
    player = auto(NO_CARD, printer.path, [not_a_console.path], changes)
    played = await player.play()
    assert played.output == "escpos"
    assert len(played.failures) == 1 and played.failures[0].startswith("alsa: aplay -D plughw:99")
    assert await printer.read(len(ESCPOS)) == ESCPOS
    status = player.status()
    assert (status.state, status.output) == ("ready", "escpos")
    alsa, escpos, beep = player.outputs
    assert (alsa.state, escpos.state, beep.state) == ("disconnected", "ready", "ready")
    # Told once the chain has settled, with the final status: alsa has no card.
    assert [(c.output, c.state) for c in changes] == [("alsa", "disconnected")]
    assert changes[0].status == status
    assert changes[0].detail is not None and "audio open error" in changes[0].detail


async def test_when_every_output_fails_the_shop_is_deaf(tmp_path: Path, not_a_console: Pty) -> None:
    changes = Changes()
    player = auto(NO_CARD, str(tmp_path / "lp0"), [not_a_console.path], changes)
    with pytest.raises(AudioError) as caught:
        await player.play(loud=True)
    message = str(caught.value)
    assert message.startswith("no audio output played the chime: alsa: aplay -D plughw:99")
    assert "; escpos: printer port" in message and "does not exist" in message
    assert "; beep: " in message and "no console beeper" in message
    status = player.status()
    assert (status.state, status.output) == ("error", "auto")
    assert [(c.output, c.state) for c in changes] == [
        ("alsa", "disconnected"),
        ("escpos", "disconnected"),
        ("beep", "error"),
    ]
    assert all(c.status.state == "error" for c in changes)


async def test_an_output_that_failed_lately_is_tried_last(printer: Pty, not_a_console: Pty) -> None:
    clock = Clock()
    alsa = AlsaOutput(NO_CARD)
    player = Player(
        [alsa, EscposOutput(printer.path), BeepOutput([not_a_console.path])],
        configured="auto",
        clock=clock,
        retry_after_s=60.0,
    )
    assert (await player.play()).failures != ()
    await printer.read(len(ESCPOS))
    clock.now += 59.0
    assert (await player.play()).failures == ()  # alsa not waited on
    await printer.read(len(ESCPOS))
    clock.now += 2.0
    again = await player.play()  # a minute on: alsa first again (a speaker may be back)
    assert again.output == "escpos" and again.failures[0].startswith("alsa:")
    await printer.read(len(ESCPOS))


async def test_a_recovered_output_is_used_again(printer: Pty, not_a_console: Pty) -> None:
    """An output that failed is still tried when all the others fail too."""
    alsa = AlsaOutput(NO_CARD)
    player = Player([alsa, BeepOutput([not_a_console.path])], configured="auto")
    with pytest.raises(AudioError):
        await player.play()
    alsa.device = "null"  # the sound card is back
    played = await player.play()
    assert played.output == "alsa" and played.failures == ()
    assert player.status() == AudioStatus("ready", "alsa", "null")


async def test_check_finds_the_first_working_output_without_a_sound(
    tmp_path: Path, printer: Pty, not_a_console: Pty
) -> None:
    changes = Changes()
    player = auto(NO_CARD, printer.path, [not_a_console.path], changes)
    status = await player.check()
    assert (status.state, status.output) == ("ready", "escpos")
    assert not printer.pending()
    assert [(c.output, c.state) for c in changes] == [("alsa", "disconnected"), ("beep", "error")]
    deaf = auto(NO_CARD, str(tmp_path / "lp9"), [not_a_console.path])
    assert (await deaf.check()).state == "error"


async def test_playbacks_never_overlap(printer: Pty) -> None:
    player = build_player("escpos", printer.path, 80)
    first = asyncio.create_task(player.play())
    assert await printer.read(len(ESCPOS)) == ESCPOS
    second = asyncio.create_task(player.play())
    for _ in range(20):
        await asyncio.sleep(0)
    assert player.state == "busy" and not printer.pending()
    await first
    assert await printer.read(len(ESCPOS)) == ESCPOS
    await second
    assert player.status().state == "ready"


async def test_output_none_is_disabled() -> None:
    player = build_player("none", "", 80)
    assert player.status() == AudioStatus("disabled", "none", 'audio.output is "none"')
    with pytest.raises(AudioDisabled, match="nothing to play the chime on"):
        await player.play()
    assert (await player.check()).state == "disabled"


async def test_each_configured_output_builds_its_one_output(tmp_path: Path) -> None:
    assert [type(o) for o in build_player("alsa", "hw:1", 50).outputs] == [AlsaOutput]
    assert [type(o) for o in build_player("pulse", "", 50).outputs] == [PulseOutput]
    assert [type(o) for o in build_player("beep", "", 50).outputs] == [BeepOutput]
    escpos = build_player("escpos", "/dev/usb/lp0", 50, escpos_form="esc-b").outputs
    assert [(type(o), o.target) for o in escpos] == [(EscposOutput, "/dev/usb/lp0 (esc-b)")]
    found = build_player("auto", "", 50, find_printers=lambda: ["/dev/usb/lp3"]).outputs
    assert [o.target for o in found][1] == "/dev/usb/lp3 (esc-paren-a)"
    alsa = build_player("alsa", "hw:1", 50).outputs[0]
    assert isinstance(alsa, AlsaOutput) and (alsa.device, alsa.volume) == ("plughw:1", 50)
    with pytest.raises(ValueError, match="needs the printer port"):
        build_player("escpos", "", 50)
    with pytest.raises(ValueError, match="is not one of"):
        build_player("speaker", "", 50)


async def test_volume_zero_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="drivers.audio"):
        build_player("alsa", "", 0)
    assert "audio.volume is 0" in caplog.text


async def test_a_failing_change_handler_does_not_stop_the_chime(
    printer: Pty, not_a_console: Pty, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(change: OutputChange) -> None:
        raise RuntimeError("handler bug")

    player = build_player(
        "auto",
        NO_CARD,
        80,
        printer_port=printer.path,
        consoles=[not_a_console.path],
        on_change=broken,
    )
    with caplog.at_level(logging.ERROR, logger="drivers.audio"):
        assert (await player.play()).output == "escpos"
    assert await printer.read(len(ESCPOS)) == ESCPOS
    assert "the audio change handler failed" in caplog.text


async def test_prepare_renders_the_chimes_off_the_event_loop() -> None:
    from drivers.audio.chime import _chime_wav

    _chime_wav.cache_clear()
    await build_player("alsa", "null", 37).prepare()
    assert _chime_wav.cache_info().currsize == 2
    await build_player("escpos", "/dev/usb/lp0", 37).prepare()  # no WAV to render
    assert _chime_wav.cache_info().currsize == 2
