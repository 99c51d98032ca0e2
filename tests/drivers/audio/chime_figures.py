"""Measures the order chime's figures from a WAV file, knowing nothing of how it was made.

Definitions (the design's, IEC 60601-1-8 style; `problems` holds the limits of issue 10):
- envelope: the square root of the signal's power smoothed by a 5 ms Hann window (long enough
  to average out the beating of a note's partials, short against its ramps);
- a note is a stretch whose envelope exceeds 5 % of the loudest; its level is the median
  envelope over its middle half; its duration runs between its half-level points, and the gap
  to the next note from this note's falling half-level point to the next one's rising one (so
  notes and gaps add up); rise and fall run between 10 % and 90 % of its level;
- a note's spectrum: a Hann-windowed FFT of the samples between its half-level points; its
  fundamental is the lowest peak within 25 dB of the strongest, and each peak of that strength
  must sit on a harmonic of it; a harmonic's level is the spectrum's maximum within 2 % of k*f0;
- dBFS relative to 32768; RMS over the samples inside the notes' 10 % points.
"""

from __future__ import annotations

import io
import itertools
import wave
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Signal = npt.NDArray[np.float64]

NOTE_THRESHOLD = 0.05
BAND_LOW_HZ, BAND_HIGH_HZ = 1000.0, 4000.0
HARMONIC_LOW_HZ, HARMONIC_HIGH_HZ = 300.0, 4000.0
HF_FROM_HZ = 6000.0
HF_MAX_DB = -60.0
"""The chime's partials end below 5 kHz; a click (a step in the waveform) splatters far above."""


@dataclass
class Note:
    start_s: float
    """Rising half-level point."""
    end_s: float
    """Falling half-level point."""
    rise_s: float
    fall_s: float
    f0_hz: float
    harmonics_db: dict[int, float]
    """Level of harmonic k relative to the note's strongest spectral component."""
    stray_peaks_hz: list[float]
    """Strong spectral peaks that are no harmonic of f0 (should be none)."""
    band_fraction: float
    """Share of the note's energy between 1 and 4 kHz."""
    edge_start_s: float = 0.0
    edge_end_s: float = 0.0
    """The note's 10 % points."""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def strong_harmonics(self) -> list[int]:
        """Harmonics between 300 and 4,000 Hz within 15 dB of the strongest component."""
        return [
            k
            for k, level in self.harmonics_db.items()
            if HARMONIC_LOW_HZ <= k * self.f0_hz <= HARMONIC_HIGH_HZ and level >= -15.0
        ]


@dataclass
class Figures:
    rate: int
    duration_s: float
    """The file's length."""
    sounding_s: float
    """From the first to the last sample above -60 dBFS."""
    peak_dbfs: float
    clipped: int
    edge_samples: tuple[int, int]
    notes: list[Note]
    gaps_s: list[float]
    rms_dbfs: float
    band_fraction: float
    centroid_hz: float
    hf_db: float
    """Energy above 6 kHz relative to the whole, dB: clicks splatter there."""


def read_wav(data: bytes) -> tuple[Signal, int]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert wav.getnchannels() == 1, "mono expected"
        assert wav.getsampwidth() == 2, "16-bit expected"
        assert wav.getcomptype() == "NONE"
        rate = wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float64), rate


def envelope(x: Signal, rate: int) -> Signal:
    window = np.hanning(max(3, round(0.005 * rate)))
    window /= window.sum()
    power = np.convolve(x * x, window, mode="same")
    env: Signal = np.sqrt(np.maximum(power, 0.0))
    return env


def _crossing(env: Signal, level: float, start: int, stop: int, step: int) -> float:
    """The fractional sample index where `env` first reaches `level` walking from `start`."""
    i = start
    while i != stop and env[i] < level:
        i += step
    if i == start:
        return float(i)
    before, after = env[i - step], env[i]
    frac = (level - before) / (after - before) if after != before else 0.0
    return i - step + step * frac


def _regions(env: Signal) -> list[tuple[int, int]]:
    above = env > NOTE_THRESHOLD * env.max()
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    bounds = [0, *(edges + 1).tolist(), len(env)] if above[0] else [*(edges + 1).tolist()]
    if not above[0] and above[-1]:
        bounds.append(len(env))
    pairs = list(zip(bounds[0::2], bounds[1::2], strict=False))
    return [(a, b) for a, b in pairs if b - a > 2]


def _spectrum(x: Signal, rate: int) -> tuple[Signal, Signal]:
    n = 1 << 16
    spec: Signal = np.abs(np.fft.rfft(x * np.hanning(len(x)), n)).astype(np.float64)
    freqs: Signal = np.fft.rfftfreq(n, 1 / rate).astype(np.float64)
    return freqs, spec


def _band_fraction(x: Signal, rate: int, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / power.sum())


def _note_spectrum(body: Signal, rate: int) -> tuple[float, dict[int, float], list[float]]:
    freqs, spec = _spectrum(body, rate)
    db = 20 * np.log10(np.maximum(spec, 1e-12) / spec.max())
    peaks = np.flatnonzero((db[1:-1] > db[:-2]) & (db[1:-1] >= db[2:]) & (db[1:-1] > -25.0)) + 1
    strong = freqs[peaks]
    f0 = float(strong.min())
    harmonics: dict[int, float] = {}
    for k in range(1, int(freqs[-1] // f0) + 1):
        near = np.abs(freqs - k * f0) <= 0.02 * k * f0
        harmonics[k] = float(db[near].max())
    stray = [float(f) for f in strong if abs(f / f0 - round(f / f0)) > 0.02]
    return f0, harmonics, stray


def measure(data: bytes) -> Figures:
    x, rate = read_wav(data)
    env = envelope(x, rate)
    notes: list[Note] = []
    inside = np.zeros(len(x), dtype=bool)
    for a, b in _regions(env):
        middle = env[a + (b - a) // 4 : b - (b - a) // 4]
        level = float(np.median(middle))
        peak_at = a + int(np.argmax(env[a:b]))
        rise10 = _crossing(env, 0.1 * level, a, peak_at, 1)
        rise50 = _crossing(env, 0.5 * level, a, peak_at, 1)
        rise90 = _crossing(env, 0.9 * level, a, peak_at, 1)
        fall10 = _crossing(env, 0.1 * level, b - 1, peak_at, -1)
        fall50 = _crossing(env, 0.5 * level, b - 1, peak_at, -1)
        fall90 = _crossing(env, 0.9 * level, b - 1, peak_at, -1)
        body = x[round(rise50) : round(fall50)]
        f0, harmonics, stray = _note_spectrum(body, rate)
        inside[round(rise10) : round(fall10)] = True
        notes.append(
            Note(
                start_s=rise50 / rate,
                end_s=fall50 / rate,
                rise_s=(rise90 - rise10) / rate,
                fall_s=(fall10 - fall90) / rate,
                f0_hz=f0,
                harmonics_db=harmonics,
                stray_peaks_hz=stray,
                band_fraction=_band_fraction(x[a:b], rate, BAND_LOW_HZ, BAND_HIGH_HZ),
                edge_start_s=rise10 / rate,
                edge_end_s=fall10 / rate,
            )
        )
    gaps = [later.start_s - earlier.end_s for earlier, later in itertools.pairwise(notes)]
    loud_enough = np.flatnonzero(np.abs(x) > 32768 * 10 ** (-60 / 20))
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    peak = float(np.abs(x).max())
    return Figures(
        rate=rate,
        duration_s=len(x) / rate,
        sounding_s=float(loud_enough[-1] - loud_enough[0] + 1) / rate if len(loud_enough) else 0.0,
        peak_dbfs=20 * float(np.log10(max(peak, 1.0) / 32768)),
        clipped=int(np.count_nonzero((x >= 32767) | (x <= -32768))),
        edge_samples=(int(x[0]), int(x[-1])),
        notes=notes,
        gaps_s=gaps,
        rms_dbfs=10 * float(np.log10(np.mean(x[inside] ** 2) / 32768**2)) if inside.any() else -999,
        band_fraction=_band_fraction(x, rate, BAND_LOW_HZ, BAND_HIGH_HZ),
        centroid_hz=float((freqs * power).sum() / power.sum()),
        hf_db=10 * float(np.log10(max(power[freqs > HF_FROM_HZ].sum(), 1e-30) / power.sum())),
    )


def louder_by_db(normal: Figures, loud: Figures) -> float:
    """How much louder (RMS inside the notes) the escalated chime is."""
    return loud.rms_dbfs - normal.rms_dbfs


def problems(fig: Figures, *, loud: bool) -> list[str]:
    """Every way the measured chime misses issue 10's figures; empty when it meets them all."""
    found: list[str] = []
    bursts = 2 if loud else 1
    if len(fig.notes) != 3 * bursts:
        found.append(f"{len(fig.notes)} notes, expected {3 * bursts}")
        return found
    for n, note in enumerate(fig.notes):
        name = f"note {n + 1}"
        if not 0.100 <= note.duration_s <= 0.200:
            found.append(f"{name} lasts {note.duration_s * 1000:.1f} ms, expected 100-200 ms")
        for what, t in (("rise", note.rise_s), ("fall", note.fall_s)):
            share = t / note.duration_s
            if not 0.10 <= share <= 0.20:
                found.append(f"{name} {what} is {share:.1%} of the note, expected 10-20 %")
        if not 500 <= note.f0_hz <= 1600:
            found.append(f"{name} fundamental {note.f0_hz:.0f} Hz, expected 500-1600 Hz")
        if note.stray_peaks_hz:
            found.append(f"{name} has inharmonic peaks at {note.stray_peaks_hz} Hz")
        strong = note.strong_harmonics()
        if len(strong) < 4:
            found.append(
                f"{name} has {len(strong)} harmonics in 300-4000 Hz within 15 dB, expected 4"
            )
        if note.band_fraction < 0.60:
            found.append(
                f"{name} has {note.band_fraction:.0%} of its energy in 1-4 kHz, expected 60 %"
            )
    for b in range(bursts):
        f0s = [note.f0_hz for note in fig.notes[3 * b : 3 * b + 3]]
        if not f0s[0] < f0s[1] < f0s[2]:
            found.append(f"burst {b + 1} notes are not rising: {[round(f) for f in f0s]} Hz")
        for gap in fig.gaps_s[3 * b : 3 * b + 2]:
            if not 0.050 <= gap <= 0.125:
                found.append(f"a gap of {gap * 1000:.1f} ms between notes, expected 50-125 ms")
    if loud and not fig.gaps_s[2] > 0.125:
        found.append(f"the bursts are {fig.gaps_s[2] * 1000:.0f} ms apart: not two bursts")
    if fig.band_fraction < 0.60:
        found.append(f"{fig.band_fraction:.0%} of the energy in 1-4 kHz, expected 60 %")
    for what, seconds in (("file", fig.duration_s), ("sound", fig.sounding_s)):
        if not 0.8 <= seconds <= 3.0:
            found.append(f"the chime's {what} lasts {seconds:.3f} s, expected 0.8-3 s")
    if not -3.0 <= fig.peak_dbfs <= -0.1:
        found.append(f"peak {fig.peak_dbfs:.2f} dBFS, expected -3 to -0.1 dBFS")
    if fig.clipped:
        found.append(f"{fig.clipped} samples clipped")
    if max(map(abs, fig.edge_samples)) > 33:
        found.append(f"starts or ends off silence: first/last samples {fig.edge_samples}")
    if fig.hf_db > HF_MAX_DB:
        found.append(
            f"{fig.hf_db:.1f} dB of the energy above 6 kHz: clicks, expected < {HF_MAX_DB} dB"
        )
    return found
