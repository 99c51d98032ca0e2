"""The order chime measured from the WAV file it writes: every figure of issue 10, and proof
that each check fails on a chime made wrong."""

from __future__ import annotations

import io
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from drivers.audio import DESIGN, ChimeDesign, Timbre, chime_tones, chime_wav, render
from drivers.audio.chime import empty_wav

from .chime_figures import (
    HARMONIC_HIGH_HZ,
    HARMONIC_LOW_HZ,
    Figures,
    louder_by_db,
    measure,
    problems,
    read_wav,
)


def written(tmp_path: Path, loud: bool, volume: int = 100, design: ChimeDesign = DESIGN) -> bytes:
    """The chime as `posd chime --to FILE.wav` writes it, read back from the file."""
    path = tmp_path / f"chime-{'loud' if loud else 'normal'}.wav"
    path.write_bytes(chime_wav(loud, volume, design))
    return path.read_bytes()


@pytest.fixture(scope="module")
def normal() -> Figures:
    return measure(chime_wav(False))


@pytest.fixture(scope="module")
def loud() -> Figures:
    return measure(chime_wav(True))


def test_the_file_is_16_bit_mono_pcm_every_output_plays(tmp_path: Path) -> None:
    for is_loud in (False, True):
        with wave.open(io.BytesIO(written(tmp_path, is_loud)), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getcomptype()) == (1, 2, "NONE")
            assert wav.getframerate() == DESIGN.sample_rate == 22050
            # Each note and rest is a whole number of samples.
            assert abs(wav.getnframes() - DESIGN.duration_s(is_loud) * 22050) < 6


@pytest.mark.parametrize("is_loud", [False, True], ids=["normal", "loud"])
def test_chime_meets_every_figure(tmp_path: Path, is_loud: bool) -> None:
    figures = measure(written(tmp_path, is_loud))
    assert problems(figures, loud=is_loud) == []


def test_the_normal_chime_figures(normal: Figures) -> None:
    """The figures themselves, where a reader expects them (the limits are in `problems`)."""
    f0s = [note.f0_hz for note in normal.notes]
    assert f0s == pytest.approx([523.25, 659.26, 783.99], abs=1.0)
    for note in normal.notes:
        assert note.duration_s == pytest.approx(0.190, abs=0.002)
        assert note.rise_s / note.duration_s == pytest.approx(0.15, abs=0.01)
        assert note.fall_s / note.duration_s == pytest.approx(0.15, abs=0.01)
        assert note.strong_harmonics() == [1, 2, 3, 4, 5]
        assert note.band_fraction > 0.9
    assert normal.gaps_s == pytest.approx([0.115, 0.115], abs=0.002)
    assert normal.duration_s == pytest.approx(0.848, abs=0.002)
    assert normal.peak_dbfs == pytest.approx(-2.5, abs=0.05)


def test_the_escalated_chime_is_the_burst_twice_brighter_and_louder(
    normal: Figures, loud: Figures
) -> None:
    f0s = [note.f0_hz for note in loud.notes]
    assert f0s[:3] == pytest.approx(f0s[3:], abs=1.0)
    assert f0s[:3] == pytest.approx([note.f0_hz for note in normal.notes], abs=1.0)
    assert loud.gaps_s[2] == pytest.approx(0.400, abs=0.002)
    assert louder_by_db(normal, loud) >= 2.0
    # Brighter: the spectrum's centre of gravity moves up, more partials are strong.
    assert loud.centroid_hz > 1.2 * normal.centroid_hz
    assert sum(len(n.strong_harmonics()) for n in loud.notes[:3]) > sum(
        len(n.strong_harmonics()) for n in normal.notes
    )


def test_the_escalated_chime_is_louder_at_any_volume(loud: Figures) -> None:
    assert chime_wav(True, 10) is chime_wav(True, 100)
    for volume in (100, 80, 50):
        assert louder_by_db(measure(chime_wav(False, volume)), loud) >= 2.0


def test_masking_one_band_leaves_the_chime_audible(normal: Figures, loud: Figures) -> None:
    """With any one octave band masked, each note keeps at least two strong harmonics."""
    bands = [(250.0, 500.0), (500.0, 1000.0), (1000.0, 2000.0), (2000.0, 4000.0)]
    for note in normal.notes + loud.notes:
        for low, high in bands:
            left = [k for k in note.strong_harmonics() if not low <= k * note.f0_hz < high]
            assert len(left) >= 2, (note.f0_hz, low, high)
            assert all(HARMONIC_LOW_HZ <= k * note.f0_hz <= HARMONIC_HIGH_HZ for k in left)


def test_volume_scales_the_samples(normal: Figures) -> None:
    half = measure(chime_wav(False, 50))
    assert half.peak_dbfs - normal.peak_dbfs == pytest.approx(20 * np.log10(0.5), abs=0.02)
    samples, _ = read_wav(chime_wav(False, 0))
    assert not samples.any()
    with pytest.raises(ValueError, match="percentage"):
        render(False, 101)


def test_rendered_once_and_cached() -> None:
    assert chime_wav(False, 80) is chime_wav(False, 80)
    assert chime_wav(True) is chime_wav(True)


def test_empty_wav_is_the_chime_format_without_frames() -> None:
    with wave.open(io.BytesIO(empty_wav()), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        assert wav.getnframes() == 0


def test_tones_follow_the_chime_rhythm() -> None:
    tones = chime_tones(False)
    assert [t.hz for t in tones] == [523.25, None, 659.26, None, 783.99]
    assert [t.seconds for t in tones] == [0.190, 0.115, 0.190, 0.115, 0.190]
    twice = chime_tones(True)
    assert twice == [*tones, replace(tones[1], seconds=0.400), *tones]


def test_a_design_whose_notes_overlap_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        render(False, design=replace(DESIGN, rise=0.4))


def _wav_of(samples: np.ndarray, rate: int = 22050) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


WRONG = {
    "falling notes": (
        replace(DESIGN, fundamentals_hz=DESIGN.fundamentals_hz[::-1]),
        "notes are not rising",
    ),
    "a pure tone": (
        replace(DESIGN, normal=Timbre((1.0,), (0.0,), -2.5)),
        "1 harmonics in 300-4000 Hz",
    ),
    "the energy low": (
        replace(DESIGN, normal=Timbre((1.0, 0.3, 0.2, 0.2), (0.0,) * 4, -2.5)),
        "of the energy in 1-4 kHz, expected 60 %",
    ),
    "a weak harmonic": (
        replace(DESIGN, normal=Timbre((1.0, 0.5, 0.4, 0.1), (0.0,) * 4, -2.5)),
        "3 harmonics in 300-4000 Hz",
    ),
    "fundamentals too high": (
        replace(DESIGN, fundamentals_hz=(1700.0, 1800.0, 1900.0)),
        "fundamental 1700 Hz",
    ),
    "abrupt edges": (replace(DESIGN, rise=0.03), "rise is 3."),
    "hard gating": (replace(DESIGN, rise=0.0), "clicks"),
    "slow edges": (replace(DESIGN, rise=0.3, gap_s=0.2), "fall is 30"),
    "long notes": (replace(DESIGN, note_s=0.25), "lasts 250"),
    "short gaps": (replace(DESIGN, rise=0.05, gap_s=0.04), "a gap of 39.9"),
    "long gaps": (replace(DESIGN, gap_s=0.15), "a gap of 150"),
    "too short": (replace(DESIGN, note_s=0.12, gap_s=0.07, rise=0.12), "lasts 0.52"),
    "too quiet": (replace(DESIGN, normal=replace(DESIGN.normal, peak_dbfs=-6.0)), "peak -6.00"),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_each_check_fails_on_a_chime_made_wrong(name: str) -> None:
    design, expected = WRONG[name]
    found = problems(measure(chime_wav(False, 100, design)), loud=False)
    assert any(expected in problem for problem in found), found


def test_one_burst_is_not_the_escalated_chime() -> None:
    found = problems(measure(chime_wav(True, 100, replace(DESIGN, bursts_loud=1))), loud=True)
    assert found == ["3 notes, expected 6"]
    close = replace(DESIGN, burst_gap_s=0.1)
    assert "not two bursts" in " ".join(problems(measure(chime_wav(True, 100, close)), loud=True))


def test_an_escalation_at_the_same_level_is_not_louder() -> None:
    same = replace(DESIGN, loud=DESIGN.normal)
    gain = louder_by_db(measure(chime_wav(False, 100, same)), measure(chime_wav(True, 100, same)))
    assert gain == pytest.approx(0.0, abs=0.1)


def test_clipping_and_an_inharmonic_tone_are_caught() -> None:
    samples, rate = read_wav(chime_wav(False))
    clipped = np.clip(samples * 1.6, -32768, 32767)
    found = problems(measure(_wav_of(clipped, rate)), loud=False)
    assert any("samples clipped" in p for p in found) and any("peak 0.00" in p for p in found)
    t = np.arange(len(samples)) / rate
    stray = samples + 0.5 * np.abs(samples).max() * np.sin(2 * np.pi * 1234.0 * t) * (samples != 0)
    found = problems(measure(_wav_of(np.clip(stray, -32768, 32767), rate)), loud=False)
    assert any("inharmonic peaks" in p for p in found), found
