"""Playing the chime through a command-line player (aplay, paplay, pw-play) as an asyncio
subprocess: the WAV on its stdin or in a file, its stderr read bounded, a timeout, and the
process killed when the playback is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence

from .base import AudioError, Started, sanitize

__all__ = ["STDERR_KEEP", "run_player"]

STDERR_KEEP = 4096
"""Bytes of a player's stderr kept for the error message; the rest is read and dropped."""
_TAIL_LINES = 3


class _Stderr:
    """Collects a player's stderr (bounded) and reports the line that says it started."""

    def __init__(self, stream: asyncio.StreamReader, marker: bytes | None, started: Started):
        self._stream = stream
        self._marker = marker
        self._started = started
        self._kept = bytearray()

    async def read(self) -> None:
        while chunk := await self._stream.read(1024):
            room = STDERR_KEEP - len(self._kept)
            if room > 0:
                self._kept += chunk[:room]
            if self._marker is not None and self._marker in self._kept:
                self._marker = None
                self._started()

    def text(self) -> str:
        lines = [line for line in bytes(self._kept).splitlines() if line.strip()]
        return sanitize(" | ".join(sanitize(line, 160) for line in lines[-_TAIL_LINES:]))


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    # A player that fails to open its device exits before reading: its exit says why.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


async def run_player(
    argv: Sequence[str],
    *,
    wav: bytes | None,
    timeout_s: float,
    started_marker: bytes | None,
    on_started: Started,
    package: str,
) -> None:
    """Runs `argv` until it exits, feeding `wav` on its stdin when given. `on_started` is
    called when its stderr shows `started_marker`, or as soon as it runs when there is none.
    Raises `AudioError` if it cannot run, fails, or outlives `timeout_s`."""
    what = sanitize(" ".join(argv[:3]), 80)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if wav is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Untranslated messages: the started marker is matched, and logs stay greppable.
            env={**os.environ, "LC_ALL": "C"},
        )
    except FileNotFoundError:
        raise AudioError(f"{argv[0]} is not installed (Debian package {package})") from None
    except PermissionError as exc:
        raise AudioError(f"{argv[0]} cannot be run: {exc.strerror}") from None
    assert proc.stderr is not None
    if started_marker is None:
        on_started()
    stderr = _Stderr(proc.stderr, started_marker, on_started)
    tasks = [asyncio.create_task(stderr.read())]
    if wav is not None:
        assert proc.stdin is not None
        tasks.append(asyncio.create_task(_feed(proc.stdin, wav)))
    try:
        async with asyncio.timeout(timeout_s):
            code = await proc.wait()
            await tasks[0]
    except TimeoutError:
        raise AudioError(f"{what} did not finish within {timeout_s:.0f} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if code != 0:
        how = f"exit {code}" if code > 0 else f"killed by signal {-code}"
        raise AudioError(f"{what} failed ({how}): {stderr.text() or 'no message'}")
