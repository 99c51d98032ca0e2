"""The journal as a component: opened in `run` (no I/O at build time), shared by the payment
engine, the store-and-forward sender and the ledger link's STAN source, closed when posd stops.

At shutdown every component is cancelled at once, and some still need the journal while they
stop (the ledger's sign-off takes a STAN). The holder therefore closes the journal only once
the components it was asked to outlive (`outlived_by`) have finished, within CLOSE_WAIT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from posd.journal.journal import Journal
from posd.journal.model import JournalNotOpen
from posd.runtime import Component

log = logging.getLogger(__package__)

CLOSE_WAIT_S = 3.0


class JournalHolder:
    """The journal component; calling it gives the open Journal, or raises JournalNotOpen."""

    name = "journal"
    # The journal lives as long as the process: storage.state_dir takes effect at restart.
    config_sections: tuple[str, ...] = ()

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._journal: Journal | None = None
        # Why the last open failed: the API says so rather than "starting".
        self._open_error: str | None = None
        self._open = asyncio.Event()
        self._users = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __call__(self) -> Journal:
        if self._journal is None:
            if self._open_error is not None:
                raise JournalNotOpen(f"the journal cannot be opened: {self._open_error}")
            raise JournalNotOpen("the journal is not open yet; posd is starting")
        return self._journal

    async def wait(self) -> Journal:
        await self._open.wait()
        return self()

    def outlived_by(self, component: Component) -> Component:
        """`component`, such that the journal stays open until its run has ended."""
        return _KeepsJournalOpen(component, self)

    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        self._users += 1
        self._idle.clear()
        try:
            yield None
        finally:
            self._users -= 1
            if self._users == 0:
                self._idle.set()

    async def run(self, started: Callable[[], None]) -> None:
        try:
            journal = await Journal.open(self._state_dir)
        except Exception as exc:
            # Whatever stops it (a full disk, an unreadable or wrong key, a corrupt database),
            # every refused payment names it: "starting" would send the technician nowhere.
            self._open_error = str(exc) or type(exc).__name__
            raise
        self._open_error = None
        self._journal = journal
        self._open.set()
        started()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self._close(journal))

    async def _close(self, journal: Journal) -> None:
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._idle.wait()
        except TimeoutError:
            log.warning("closing the journal while %d component(s) still run", self._users)
        self._open.clear()
        self._journal = None
        await journal.close()

    @classmethod
    def of(cls, journal: Journal) -> JournalHolder:
        """A holder around a journal someone else opened (tests, tools)."""
        holder = cls(journal.path.parent)
        holder._journal = journal
        holder._open.set()
        return holder


class _KeepsJournalOpen:
    def __init__(self, component: Component, holder: JournalHolder) -> None:
        self.inner = component
        self.name = component.name
        self._holder = holder

    @property
    def config_sections(self) -> Collection[str] | None:
        sections: Collection[str] | None = getattr(self.inner, "config_sections", None)
        return sections

    async def run(self, started: Callable[[], None]) -> None:
        with self._holder._in_use():
            await self.inner.run(started)
