"""The journal's one worker thread: it owns the SQLite connection and runs the calls one at a
time, a payment's before the store-and-forward queue's.

The queue's calls are `background`: one waiting is taken only when no other is, so a 0200's
journal writes (its `authorizing` with the STAN) never wait behind a backlog being forwarded,
only behind the one call already running. Calls of the same kind run in the order given.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final, TypeVar

T = TypeVar("T")

_FIRST: Final = 0
_BACKGROUND: Final = 1
_LAST: Final = 2  # the stop: after every call given before it


class JournalWorker:
    def __init__(self, name: str) -> None:
        self._calls: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, Future[Any]]]
        self._calls = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], T], *, background: bool = False) -> Future[T]:
        future: Future[T] = Future()
        self._calls.put((_BACKGROUND if background else _FIRST, next(self._order), call, future))
        return future

    def stop(self) -> None:
        """The thread ends once the calls already given have run."""
        self._calls.put((_LAST, next(self._order), None, Future()))

    def _serve(self) -> None:
        while True:
            _, _, call, future = self._calls.get()
            if call is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
