"""The journal's worker thread: one call at a time, a payment's before the queue's waiting."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from pathlib import Path

from posd.journal import Journal
from posd.journal.worker import JournalWorker

WAIT_S = 5.0


def test_a_first_call_overtakes_the_background_calls_waiting_not_the_one_running() -> None:
    worker = JournalWorker("test-journal")
    try:
        ran: list[str] = []
        running, release = threading.Event(), threading.Event()

        def hold() -> None:
            running.set()
            assert release.wait(WAIT_S)
            ran.append("running")

        held = worker.submit(hold, background=True)
        assert running.wait(WAIT_S)

        def note(what: str) -> None:
            ran.append(what)

        queued = [worker.submit(partial(note, f"queue {n}"), background=True) for n in (1, 2)]
        payment = worker.submit(partial(note, "payment"))
        release.set()
        for future in (held, *queued, payment):
            future.result(WAIT_S)
        assert ran == ["running", "payment", "queue 1", "queue 2"]
    finally:
        worker.stop()


def test_an_error_reaches_its_caller_and_the_worker_goes_on() -> None:
    worker = JournalWorker("test-journal")
    try:

        def fail() -> None:
            raise ValueError("no such thing")

        failed = worker.submit(fail)
        assert isinstance(failed.exception(WAIT_S), ValueError)
        assert worker.submit(lambda: 42).result(WAIT_S) == 42
    finally:
        worker.stop()


async def test_close_waits_for_the_queue_s_calls_given_before_it(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    release = threading.Event()
    # The worker busy, so that the queue's call and the close wait side by side.
    held = journal._worker.submit(lambda: release.wait(WAIT_S))
    pending = asyncio.ensure_future(journal.saf_next_due())
    await asyncio.sleep(0)  # one turn of the loop: the call is given to the worker
    closing = asyncio.ensure_future(journal.close())
    await asyncio.sleep(0)
    release.set()
    await closing
    assert held.result(WAIT_S) is True
    assert await pending is None  # it ran on the open connection, before the close
