"""Running a scanner component in a test, and waiting on it with a bound."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from posd.runtime import Component

WAIT_S = 5.0


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail after WAIT_S rather than hang."""
    try:
        async with asyncio.timeout(WAIT_S):
            # The drivers expose state as attributes, not events: polling is the way to watch.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Scans:
    """The on_scan callback of a test: collects codes for `next()` to await."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    def __call__(self, text: str) -> None:
        self._queue.put_nowait(text)

    async def next(self) -> str:
        return await asyncio.wait_for(self._queue.get(), WAIT_S)

    def empty(self) -> bool:
        return self._queue.empty()


@contextlib.asynccontextmanager
async def running(scanner: Component) -> AsyncIterator[asyncio.Task[None]]:
    """Run `scanner` until the block ends; a crash inside fails the test."""
    started = asyncio.Event()
    task = asyncio.create_task(scanner.run(started.set))
    await asyncio.wait_for(started.wait(), WAIT_S)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT_S)
