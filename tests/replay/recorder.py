"""Records SRL/1 sessions between the real driver and the simulated reader.

Each recording is a short script of what the host does and what the reader
is made to do (which card, which fault); the simulator's transcript of every
byte each way becomes ``sessions/NAME.srl``. scripts/regen-replay --record
runs them; the hand-made sessions have no recording and are never rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Awaitable, Callable
from pathlib import Path

from drivers.card_reader import CardReader, ReaderState
from posd.sim.card_reader import SimulatedCardReader, format_transcript
from protocols import srl_messages as srl

WAIT_S = 5.0
ALL = 7
ISSUER_DATA = "910a00112233445566773030"  # 91: ARPC and ARC, as a ledger sends it


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110 - neither side signals these conditions
            await asyncio.sleep(0.002)


class Host:
    """What the host does during a recording, noted in the transcript as `!` lines."""

    def __init__(self, sim: SimulatedCardReader, reader: CardReader) -> None:
        self.sim = sim
        self.reader = reader

    async def wait(self, state: ReaderState) -> None:
        # Noted once reached, so the replay checks it where it happened.
        async with asyncio.timeout(WAIT_S):
            await self.reader.wait_for_state(state)
        if state == "ready":
            # Scripts set faults for the next frame: the handshake's frames are done first.
            await self.quiet()
        self.sim.note(f"wait {state}")

    def read_card(self, amount: int, timeout_s: int = 30) -> asyncio.Task[object]:
        self.sim.note(f"read_card {amount} {ALL} {timeout_s}")
        return asyncio.create_task(self.reader.read_card(amount, ALL, timeout_s))

    async def complete(self, arc: str, issuer_data: str = "") -> None:
        self.sim.note(f"complete {arc} {issuer_data}".rstrip())
        await self.reader.complete(arc, bytes.fromhex(issuer_data))

    def cancel(self, task: asyncio.Task[object]) -> None:
        self.sim.note("cancel")
        task.cancel()

    def unplug(self) -> None:
        self.sim.note("unplug")
        self.sim.unplug()

    def replug(self) -> None:
        self.sim.note("replug")
        self.sim.replug()

    async def read_started(self) -> None:
        """Until the reader has START_READ and posd has READ_STARTED, both acknowledged."""
        await until(lambda: isinstance(self.sim.received[-1], srl.StartRead))
        await self.quiet()

    async def quiet(self) -> None:
        """Until both sides have every frame acknowledged."""
        session = self.reader._session
        await until(lambda: self.sim.link.idle and (session is None or session.link.idle))


async def chip_approved(h: Host) -> None:
    await h.wait("ready")
    h.sim.present("seoroeum")
    await h.read_card(12000)
    await h.complete("00", ISSUER_DATA)


async def chip_declined_at_complete(h: Host) -> None:
    await h.wait("ready")
    h.sim.present("declines-at-complete")
    await h.read_card(5000)
    await h.complete("00", ISSUER_DATA)


async def contactless(h: Host) -> None:
    await h.wait("ready")
    h.sim.present("seoroeum-contactless")
    await h.read_card(3500)


async def magstripe(h: Host) -> None:
    await h.wait("ready")
    h.sim.present("seoroeum-magstripe")
    await h.read_card(8000)


async def cancel_while_waiting(h: Host) -> None:
    await h.wait("ready")
    read = h.read_card(1000)
    await h.read_started()
    h.cancel(read)
    with contextlib.suppress(asyncio.CancelledError):
        await read


async def reader_timeout(h: Host) -> None:
    await h.wait("ready")
    await h.read_card(1000, timeout_s=1)


async def card_removed(h: Host) -> None:
    await h.wait("ready")
    h.sim.fail_next_read("card_removed")
    await h.read_card(1000)


async def host_frame_naked(h: Host) -> None:
    await h.wait("ready")
    h.sim.corrupt_next_incoming()  # START_READ arrives damaged at the reader
    h.sim.present("seoroeum-contactless")
    await h.read_card(2000)


async def reader_frame_corrupted(h: Host) -> None:
    await h.wait("ready")
    h.sim.corrupt_next_frame()  # READ_STARTED arrives with a bad CRC
    h.sim.present("seoroeum-contactless")
    await h.read_card(2000)


async def duplicate_frame(h: Host) -> None:
    await h.wait("ready")
    h.sim.lose_next_host_ack()  # the ACK of READ_STARTED: the reader repeats it
    read = h.read_card(2000)
    await until(lambda: h.sim.link.stats.retransmits == 1)
    h.sim.present("seoroeum-contactless")
    await read


async def noise_between_frames(h: Host) -> None:
    await h.wait("ready")
    h.sim.inject(bytes.fromhex("00ff4142"))
    h.sim.present("seoroeum-contactless")
    await h.read_card(2000)


async def silent_reader_link_down(h: Host) -> None:
    await h.wait("ready")
    h.sim.go_silent()
    with contextlib.suppress(Exception):
        await h.read_card(1000)
    await h.wait("disconnected")
    h.sim.wake()
    await h.wait("ready")


async def unplug_mid_read(h: Host) -> None:
    await h.wait("ready")
    read = h.read_card(1000)
    await h.read_started()
    h.unplug()
    with contextlib.suppress(Exception):
        await read
    await h.wait("disconnected")
    h.replug()
    await h.wait("ready")
    h.sim.present("seoroeum-contactless")
    await h.read_card(1000)


RECORDINGS: dict[str, tuple[str, Callable[[Host], Awaitable[None]]]] = {
    "chip_approved": ("chip card, ledger approves, card gives TC", chip_approved),
    "chip_declined_at_complete": (
        "chip card, ledger approves, card declines at COMPLETE (AAC)",
        chip_declined_at_complete,
    ),
    "contactless": ("contactless card: no COMPLETE", contactless),
    "magstripe": ("magstripe swipe: track 2 only", magstripe),
    "cancel_while_waiting": (
        "the POS cancels while the reader waits for a card",
        cancel_while_waiting,
    ),
    "reader_timeout": ("no card within the read's 1 s timeout", reader_timeout),
    "card_removed": ("chip card pulled out mid-read", card_removed),
    "host_frame_naked": (
        "START_READ arrives damaged: the reader NAKs, posd repeats it",
        host_frame_naked,
    ),
    "reader_frame_corrupted": (
        "READ_STARTED arrives with a bad CRC: posd NAKs, the reader repeats it",
        reader_frame_corrupted,
    ),
    "duplicate_frame": (
        "posd's ACK of READ_STARTED is lost: the reader repeats the frame, "
        "posd ACKs it again and delivers it once",
        duplicate_frame,
    ),
    "noise_between_frames": ("line noise while idle", noise_between_frames),
    "silent_reader_link_down": (
        "the reader hangs: 3 retransmissions, link down, reopen, PING until it is back",
        silent_reader_link_down,
    ),
    "unplug_mid_read": ("the cable is pulled during a read and put back", unplug_mid_read),
}


async def record(name: str, workdir: Path) -> str:
    """Run recording ``name``; the session file's text."""
    description, script = RECORDINGS[name]
    sim = SimulatedCardReader(
        workdir / "reader", today=lambda: datetime.date(2026, 11, 25), record=True
    )
    await sim.start()
    reader = CardReader(sim.port, initial_seq=0, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    running = asyncio.create_task(reader.run(lambda: None))
    try:
        host = Host(sim, reader)
        await script(host)
        await host.quiet()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        sim.close()
    return format_transcript(
        sim.transcript, [f"{name}: {description}", "recorded from posd.sim.card_reader"]
    )
