"""The journal as a component: opened in `run` (no I/O at build time), shared by the payment
engine and the store-and-forward sender, closed when posd stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from posd.journal import Journal
from posd.payment_service import DeviceNotReady


class JournalHolder:
    name = "journal"
    # The journal lives as long as the process: storage.state_dir takes effect at restart.
    config_sections: tuple[str, ...] = ()

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._journal: Journal | None = None
        self._open = asyncio.Event()

    def __call__(self) -> Journal:
        if self._journal is None:
            raise DeviceNotReady("the journal is not open yet; posd is starting")
        return self._journal

    async def wait(self) -> Journal:
        await self._open.wait()
        return self()

    async def run(self, started: Callable[[], None]) -> None:
        journal = await Journal.open(self._state_dir)
        self._journal = journal
        self._open.set()
        started()
        try:
            await asyncio.Event().wait()
        finally:
            self._open.clear()
            self._journal = None
            await asyncio.shield(journal.close())

    @classmethod
    def of(cls, journal: Journal) -> JournalHolder:
        """A holder around a journal someone else opened (tests, tools)."""
        holder = cls(journal.path.parent)
        holder._journal = journal
        holder._open.set()
        return holder
