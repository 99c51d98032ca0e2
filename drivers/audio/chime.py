"""The order chime, synthesised: a burst of three rising notes on the pattern of IEC 60601-1-8
alarm signals, built to be heard over kitchen noise by its pattern and timbre.

Pure: stdlib `wave`, `array` and `math` only (numpy would cost the daemon 16 MB of RSS), no
I/O. Every figure is stated in `ChimeDesign` the way the tests measure it from the WAV:

- a note's duration is taken between its half-amplitude points, the gap from one note's
  falling half-amplitude point to the next note's rising one, so notes and gaps add up to the
  burst; rise and fall run from 10 % to 90 % of the note's level (raised-cosine ramps: no click);
- each note is a harmonic complex, at least four partials between 300 and 4,000 Hz within
  15 dB of the strongest, most of the energy between 1 and 4 kHz (above the rumble of hoods,
  fans and dishwashers, where the ear is keenest and small speakers work best): masking one
  band leaves the others;
- the escalated chime is the burst twice, brighter (weight moved to higher partials) and
  louder: always at full volume, closer to full scale, and with phases chosen for a low crest
  factor, so that more energy fits under the same peak.
"""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DESIGN",
    "SAMPLE_RATE",
    "ChimeDesign",
    "Timbre",
    "Tone",
    "chime_tones",
    "chime_wav",
    "empty_wav",
    "render",
]

SAMPLE_RATE = 22050
"""16-bit mono at 22,050 Hz: every partial is far below Nyquist, and aplay (through plughw),
paplay and pw-play all take it."""

# A raised-cosine ramp of length R rises from 10 % to 90 % in this fraction of R.
_RAMP_10_90 = (math.acos(-0.8) - math.acos(0.8)) / math.pi


@dataclass(frozen=True)
class Timbre:
    partials: tuple[float, ...]
    """Relative amplitude of harmonic k+1 of the note's fundamental."""
    phases: tuple[float, ...]
    """Phase of each partial, radians; they set the waveform's crest factor."""
    peak_dbfs: float
    """Peak of the whole chime at volume 100."""


@dataclass(frozen=True)
class Tone:
    """One step of the chime's rhythm, for outputs that only beep: a frequency, or None for a
    rest, held for `seconds` (the effective durations)."""

    hz: float | None
    seconds: float


@dataclass(frozen=True)
class ChimeDesign:
    fundamentals_hz: tuple[float, ...]
    """One note each, rising."""
    note_s: float
    """Each note's duration between its half-amplitude points."""
    gap_s: float
    """From one note's falling half-amplitude point to the next note's rising one."""
    rise: float
    """Rise and fall time (10 % to 90 %) as a fraction of `note_s`."""
    burst_gap_s: float
    """Escalated chime: between the bursts, measured like `gap_s`."""
    bursts_loud: int
    normal: Timbre
    loud: Timbre
    sample_rate: int = SAMPLE_RATE

    @property
    def ramp_s(self) -> float:
        """The full raised-cosine ramp (0 to 100 %) whose 10-90 % time is the rise."""
        return self.rise * self.note_s / _RAMP_10_90

    def duration_s(self, loud: bool) -> float:
        """The chime's length from its first sample to its last."""
        notes = len(self.fundamentals_hz)
        burst = notes * self.note_s + (notes - 1) * self.gap_s + self.ramp_s
        if not loud:
            return burst
        return self.bursts_loud * burst + (self.bursts_loud - 1) * (self.burst_gap_s - self.ramp_s)


DESIGN = ChimeDesign(
    # C5, E5, G5: a rising major triad, below 800 Hz so that five harmonics fit under 4 kHz.
    fundamentals_hz=(523.25, 659.26, 783.99),
    note_s=0.190,
    gap_s=0.115,
    rise=0.15,
    burst_gap_s=0.400,
    bursts_loud=2,
    normal=Timbre(
        partials=(0.45, 1.0, 0.8, 0.6, 0.45),
        # Schroeder's phases (pi k^2 / N): a low crest factor in closed form.
        phases=tuple(math.pi * k * k / 5 for k in range(5)),
        peak_dbfs=-2.5,
    ),
    loud=Timbre(
        partials=(0.3, 0.8, 1.0, 0.9, 0.7, 0.4),
        # Found by a search for the lowest crest factor of these partials (1.54 against
        # Schroeder's 1.88): 1.7 dB more RMS under the same peak.
        phases=(0.0, 0.29, 0.04, 2.88, 0.28, 1.14),
        peak_dbfs=-0.3,
    ),
)


def _check(design: ChimeDesign) -> None:
    if design.gap_s < design.ramp_s or design.burst_gap_s < design.ramp_s:
        raise ValueError("chime design: the gaps must be longer than the ramps, notes overlap")
    for timbre in (design.normal, design.loud):
        if len(timbre.partials) != len(timbre.phases):
            raise ValueError("chime design: one phase per partial")
        if not any(timbre.partials):
            raise ValueError("chime design: a timbre needs a partial")
        if not timbre.peak_dbfs < 0:
            raise ValueError("chime design: the peak must be below full scale")


def _note(out: array[float], f0: float, timbre: Timbre, design: ChimeDesign) -> None:
    """Appends one note, from silence back to silence."""
    rate = design.sample_rate
    ramp = round(design.ramp_s * rate)
    length = round((design.note_s + design.ramp_s) * rate)
    step = 2 * math.pi * f0 / rate
    partials = [
        (k + 1, a, phi)
        for k, (a, phi) in enumerate(zip(timbre.partials, timbre.phases, strict=True))
    ]
    sin = math.sin
    cos = math.cos
    for i in range(length):
        theta = step * i
        x = 0.0
        for k, a, phi in partials:
            x += a * sin(k * theta + phi)
        edge = min(i, length - 1 - i)
        if edge < ramp:
            x *= 0.5 - 0.5 * cos(math.pi * edge / ramp)
        out.append(x)


def _silence(out: array[float], seconds: float, rate: int) -> None:
    out.extend([0.0] * round(seconds * rate))


def _waveform(loud: bool, design: ChimeDesign) -> array[float]:
    timbre = design.loud if loud else design.normal
    burst: array[float] = array("d")
    for n, f0 in enumerate(design.fundamentals_hz):
        if n:
            _silence(burst, design.gap_s - design.ramp_s, design.sample_rate)
        _note(burst, f0, timbre, design)
    if not loud:
        return burst
    chime: array[float] = array("d")
    for n in range(design.bursts_loud):
        if n:
            _silence(chime, design.burst_gap_s - design.ramp_s, design.sample_rate)
        chime.extend(burst)
    return chime


def render(loud: bool, volume: int = 100, design: ChimeDesign = DESIGN) -> array[int]:
    """The chime as 16-bit samples. `volume` (percent, 0-100) scales the normal chime's
    samples; the escalated one always plays at full volume."""
    if not 0 <= volume <= 100:
        raise ValueError(f"volume {volume} is not a percentage from 0 to 100")
    _check(design)
    wave_ = _waveform(loud, design)
    timbre = design.loud if loud else design.normal
    peak = max(map(abs, wave_))
    gain = 10 ** (timbre.peak_dbfs / 20) * 32767 / peak
    if not loud:
        gain *= volume / 100
    return array("h", (round(x * gain) for x in wave_))


def _wav(samples: array[int], rate: int) -> bytes:
    data = array("h", samples)
    if sys.byteorder == "big":
        # WAV samples are little-endian; array writes the machine's order.
        data.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data.tobytes())
    return buffer.getvalue()


def chime_wav(loud: bool = False, volume: int = 100, design: ChimeDesign = DESIGN) -> bytes:
    """The chime as a WAV file (16-bit mono PCM), rendered once per (loud, volume) and cached;
    the escalated chime ignores `volume`."""
    return _chime_wav(loud, 100 if loud else volume, design)


@lru_cache(maxsize=8)
def _chime_wav(loud: bool, volume: int, design: ChimeDesign) -> bytes:
    return _wav(render(loud, volume, design), design.sample_rate)


def empty_wav(rate: int = SAMPLE_RATE) -> bytes:
    """A WAV header with no frames, in the chime's format: opening an output with it checks
    the device and the format without a sound."""
    return _wav(array("h"), rate)


def chime_tones(loud: bool, design: ChimeDesign = DESIGN) -> list[Tone]:
    """The chime's rhythm as plain tones (for the console beeper): its notes' fundamentals
    and rests, the burst twice when loud."""
    burst: list[Tone] = []
    for n, f0 in enumerate(design.fundamentals_hz):
        if n:
            burst.append(Tone(None, design.gap_s))
        burst.append(Tone(f0, design.note_s))
    if not loud:
        return burst
    tones: list[Tone] = []
    for n in range(design.bursts_loud):
        if n:
            tones.append(Tone(None, design.burst_gap_s))
        tones.extend(burst)
    return tones
