"""Who is watching: one `Watcher` per open event stream, told what changed, coalesced.

A watcher holds only *which* rows, calls and summaries changed since its stream last wrote,
never the changes themselves: the stream reads the current values when it writes, so a box
that changed a hundred times meanwhile costs one row, and a slow reader's backlog is bounded
by the number of boxes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Final

MAX_STREAMS: Final = 32


class TooManyStreams(Exception):
    pass


class Watcher:
    __slots__ = ("calls", "console", "removed", "rows", "summary", "wake")

    def __init__(self) -> None:
        self.rows: set[str] = set()
        self.removed: set[str] = set()
        self.calls: set[int] = set()
        self.summary = True  # a new stream starts with the summary and the console state
        self.console = True
        self.wake = asyncio.Event()
        self.wake.set()

    def take(self) -> tuple[set[str], set[str], set[int], bool, bool]:
        """What changed since the last take, clearing it."""
        taken = (self.rows, self.removed, self.calls, self.summary, self.console)
        self.rows, self.removed, self.calls = set(), set(), set()
        self.summary = self.console = False
        self.wake.clear()
        return taken


class Hub:
    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.limit = limit
        self.watchers: set[Watcher] = set()

    def watch(self) -> Watcher:
        if len(self.watchers) >= self.limit:
            raise TooManyStreams
        watcher = Watcher()
        self.watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def rows(self, terminal_ids: Iterable[str]) -> None:
        for watcher in self.watchers:
            watcher.rows.update(terminal_ids)
            watcher.wake.set()

    def removed(self, terminal_ids: Iterable[str]) -> None:
        for watcher in self.watchers:
            for terminal_id in terminal_ids:
                watcher.rows.discard(terminal_id)
                watcher.removed.add(terminal_id)
            watcher.wake.set()

    def call(self, call_id: int) -> None:
        for watcher in self.watchers:
            watcher.calls.add(call_id)
            watcher.wake.set()

    def summary(self) -> None:
        for watcher in self.watchers:
            watcher.summary = True
            watcher.wake.set()

    def console(self) -> None:
        for watcher in self.watchers:
            watcher.console = True
            watcher.wake.set()
