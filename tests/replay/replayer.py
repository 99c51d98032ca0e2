"""Replays a recorded SRL/1 session against the real card reader driver, gpsfake style.

A session file (``sessions/NAME.srl``) has one line per chunk:

    < 12 0206...     the reader wrote these bytes, 12 ms into the session
    > 10 020002...   the host (posd) wrote these bytes
    ! 40 read_card 12000 7 30    what the host was asked to do
    # a comment

The replayer plays the reader's side on a real pseudo-terminal: it writes
each ``<`` chunk at its time (counted from the last ``>`` the host matched),
checks that the host writes exactly the ``>`` bytes (as one stream, however
the kernel chunks them), and performs the ``!`` actions on the driver. What
the host made of it (state changes, messages, results, link statistics) is
the event stream compared with ``sessions/NAME.srl.chk``.

Actions: ``wait STATE``, ``read_card AMOUNT MODES TIMEOUT_S``, ``complete ARC
HEX``, ``ping``, ``cancel`` (the read in progress), ``unplug``, ``replug``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from drivers.card_reader import CardReader, ReaderState
from posd.sim.pty import SimulatedLine

SESSIONS = Path(__file__).resolve().parent / "sessions"
SYNC_TIMEOUT_S = 5.0


class SessionError(ValueError):
    """A session file line that cannot be read."""


@dataclass(frozen=True, slots=True)
class Line:
    kind: str
    t: float
    data: bytes
    text: str
    lineno: int


def parse_session(text: str, name: str = "<session>") -> list[Line]:
    lines: list[Line] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split(maxsplit=2)
        if len(parts) < 3 or parts[0] not in "<>!" or len(parts[0]) != 1:
            raise SessionError(f"{name}:{lineno}: expected '< ms hex', '> ms hex' or '! ms action'")
        kind, ms, rest = parts
        try:
            t = int(ms) / 1000
        except ValueError:
            raise SessionError(f"{name}:{lineno}: time {ms!r} is not whole milliseconds") from None
        if kind == "!":
            lines.append(Line(kind, t, b"", rest, lineno))
            continue
        try:
            data = bytes.fromhex(rest)
        except ValueError:
            raise SessionError(f"{name}:{lineno}: bytes are not hex") from None
        lines.append(Line(kind, t, data, "", lineno))
    return lines


class _ReaderEnd:
    """The reader's end of the line: a pty whose slave posd opens through a symlink."""

    def __init__(self, link: Path, on_host_bytes: Callable[[bytes], None]) -> None:
        self._line = SimulatedLine(link, device="replayed reader")
        self._on_host_bytes = on_host_bytes
        self._loop = asyncio.get_running_loop()
        self.written = 0
        self.plug()

    @property
    def path(self) -> str:
        return self._line.path

    def plug(self) -> None:
        self._loop.add_reader(self._line.plug(blocking=False), self._readable)

    def unplug(self) -> None:
        self.drain()
        if self._line.master is not None:
            self._loop.remove_reader(self._line.master)
        self._line.unplug()

    def write(self, data: bytes) -> None:
        master = self._line.master
        if master is None:
            raise SessionError("the session writes to an unplugged reader")
        view = memoryview(data)
        while view:
            view = view[os.write(master, view) :]
        self.written += len(data)

    def drain(self) -> None:
        while self._line.master is not None and self._readable():
            pass

    def _readable(self) -> bool:
        assert self._line.master is not None
        try:
            data = os.read(self._line.master, 4096)
        except (BlockingIOError, OSError):
            return False
        if data:
            self._on_host_bytes(data)
        return bool(data)


async def replay(lines: list[Line], workdir: Path) -> list[str]:
    """Play ``lines`` against a CardReader; the host's event stream."""
    loop = asyncio.get_running_loop()
    events: list[str] = []
    host = bytearray()
    matched = 0
    end = _ReaderEnd(workdir / "reader", host.extend)
    reader = CardReader(
        end.path,
        initial_seq=0,
        trace=events.append,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    running = asyncio.create_task(reader.run(lambda: None))
    actions: list[asyncio.Task[None]] = []
    reads: list[asyncio.Task[None]] = []
    base = loop.time()

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(SYNC_TIMEOUT_S):
            while not condition():  # noqa: ASYNC110 - neither the pty nor the driver signals
                await asyncio.sleep(0.002)

    async def host_bytes(count: int) -> None:
        await until(lambda: len(host) >= count)

    async def state(name: str) -> None:
        async with asyncio.timeout(SYNC_TIMEOUT_S):
            await reader.wait_for_state(cast(ReaderState, name))

    async def caught_up() -> bool:
        """Until posd has read (and so handled) every byte the reader wrote."""
        try:
            await until(lambda: reader.stats.bytes_in >= end.written)
        except TimeoutError:
            events.append(f"posd read {reader.stats.bytes_in} of {end.written} bytes")
            return False
        return True

    async def one_at_a_time() -> None:
        # The host runs one reader operation at a time: the next waits for the last.
        if actions:
            await asyncio.wait(actions, timeout=SYNC_TIMEOUT_S)

    def report(name: str, call: Awaitable[object]) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                result = await call
            except asyncio.CancelledError:
                events.append(f"{name}: cancelled")
                raise
            except Exception as exc:  # the stream records what the driver raised
                events.append(f"{name}: {type(exc).__name__}: {exc}")
            else:
                events.append(f"{name}: {result!r}")

        task = asyncio.create_task(run())
        actions.append(task)
        return task

    try:
        for line in lines:
            if line.kind == ">":
                want = matched + len(line.data)
                try:
                    await host_bytes(want)
                except TimeoutError:
                    events.append(
                        f"line {line.lineno}: host wrote {bytes(host[matched:]).hex() or 'nothing'}"
                        f", the session has {line.data.hex()}"
                    )
                    break
                got = bytes(host[matched:want])
                if got != line.data:
                    events.append(
                        f"line {line.lineno}: host wrote {got.hex()}, the session has "
                        f"{line.data.hex()}"
                    )
                    break
                matched = want
                base = loop.time() - line.t
                continue
            delay = base + line.t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if line.kind == "<":
                end.write(line.data)
                continue
            verb, *args = line.text.split()
            if not await caught_up():
                break
            if verb in ("read_card", "complete", "ping"):
                await one_at_a_time()
            if verb == "wait":
                try:
                    await state(args[0])
                except TimeoutError:
                    events.append(f"line {line.lineno}: the driver never became {args[0]}")
                    break
            elif verb == "read_card":
                amount, modes, timeout_s = (int(a) for a in args)
                reads.append(report("read_card", reader.read_card(amount, modes, timeout_s)))
            elif verb == "complete":
                issuer = bytes.fromhex(args[1]) if len(args) > 1 else b""
                report("complete", reader.complete(args[0], issuer))
            elif verb == "ping":
                report("ping", reader.ping())
            elif verb == "cancel":
                reads[-1].cancel()
            elif verb == "unplug":
                end.unplug()
            elif verb == "replug":
                end.plug()
            else:
                raise SessionError(f"line {line.lineno}: unknown action {verb!r}")
        await caught_up()
        if actions:
            _, pending = await asyncio.wait(actions, timeout=SYNC_TIMEOUT_S)
            for task in pending:
                events.append("an action never finished")
                task.cancel()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        for task in actions:
            if not task.done():
                task.cancel()
        end.drain()
        end.unplug()
    if len(host) > matched:
        events.append(f"host wrote {len(host) - matched} byte(s) the session does not have")
    stats = reader.stats.as_dict()
    events.append("stats " + " ".join(f"{k}={v}" for k, v in stats.items()))
    return events


def session_names() -> list[str]:
    return sorted(p.name.removesuffix(".srl") for p in SESSIONS.glob("*.srl"))


def check_path(name: str) -> Path:
    return SESSIONS / f"{name}.srl.chk"


async def replay_file(name: str, workdir: Path) -> list[str]:
    path = SESSIONS / f"{name}.srl"
    return await replay(parse_session(path.read_text(encoding="utf-8"), path.name), workdir)
