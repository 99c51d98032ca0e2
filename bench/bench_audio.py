"""The order chime: its synthesis at daemon start, and `play()` to aplay playing.

1. Synthesis of both chimes (normal and escalated) into WAV, as the daemon does once at
   start; median and p95 over SYNTH_ROUNDS.
2. From `AlsaOutput.play()` to aplay reporting that it plays (its "Playing WAVE" line, after
   it opened the device), on ALSA's null device; median and p95 over PLAY_ROUNDS. The order
   alert's target is under 250 ms from the order's arrival to the start of playback.
3. What importing drivers.audio and rendering both chimes adds to the RSS of a process that
   already has what the daemon imports anyway (asyncio, logging, pyserial), and that numpy
   stays out of it.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import time

from drivers.audio import AlsaOutput, render

SYNTH_ROUNDS = 20
PLAY_ROUNDS = 50

_RSS_PROBE = """
import asyncio, logging, sys
import serial
def rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
before = rss_kb()
from drivers.audio import chime_wav
chime_wav(False, 80), chime_wav(True)
print(rss_kb() - before, "numpy" in sys.modules)
"""


def _median_p95(samples: list[float]) -> str:
    p95 = statistics.quantiles(samples, n=20)[18]
    return f"median {statistics.median(samples) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


def synthesis() -> list[float]:
    samples = []
    for _ in range(SYNTH_ROUNDS):
        start = time.perf_counter()
        # What the first chime_wav() of each variant costs (its WAV framing is a copy).
        render(False, 80)
        render(True)
        samples.append(time.perf_counter() - start)
    return samples


async def play_to_started(rounds: int = PLAY_ROUNDS) -> tuple[list[float], list[float]]:
    out = AlsaOutput("null")
    to_start: list[float] = []
    whole: list[float] = []
    started: list[float] = []
    for _ in range(rounds):
        begin = time.perf_counter()
        await out.play(False, on_started=lambda: started.append(time.perf_counter()))
        whole.append(time.perf_counter() - begin)
        to_start.append(started[-1] - begin)
    return to_start, whole


def main() -> None:
    print(f"audio: synthesis of both chimes: {_median_p95(synthesis())}")
    if shutil.which("aplay") is None:
        print("audio: play() to playback: skipped, aplay (alsa-utils) is not installed")
    else:
        to_start, whole = asyncio.run(play_to_started())
        print(f"audio: play() to aplay playing (-D null): {_median_p95(to_start)}")
        print(f"audio: play() to aplay done (-D null, plays at once): {_median_p95(whole)}")
    probe = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE], capture_output=True, text=True, check=True
    )
    grown_kb, numpy = probe.stdout.split()
    print(
        f"audio: RSS of drivers.audio with both chimes rendered: +{int(grown_kb) / 1024:.1f} MB"
        f" over asyncio, logging and pyserial (numpy imported: {numpy == 'True'})"
    )


if __name__ == "__main__":
    main()
