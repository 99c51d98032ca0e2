"""The store-and-forward sender: reversals and offline advices from the journal's queue.

Oldest first, each until its answer arrives (ledger-iso8583.md): the first transmission goes
as 0400/0220, every later one as 0401/0221 with every other field kept; a failed try is
followed by the next one after `retry_interval_s` (30 s), or sooner on `flush()`. Nothing is
dropped. While the ledger link is down nothing is tried; the queue is looked at again as soon
as the link is up.

An entry counts as answered by any response with a valid MAC except 91 and 96 (the ledger
says it could not handle it now) and 63 (it could not check our MAC): those are tried again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from posd.journal import FieldValue, Journal, PaymentRecord, SafMessage
from posd.ledger_client import LedgerSecurityError, LedgerTimeout, LedgerUnavailable
from posd.payment_devices import LedgerPort
from posd.payment_journal import JournalHolder
from protocols.ledger_messages import LedgerRequest, request_from_fields

log = logging.getLogger(__name__)

RETRY_INTERVAL_S = 30.0
_TRY_AGAIN_CODES = frozenset({"63", "91", "96"})


def request_fields(request: LedgerRequest) -> dict[str, FieldValue]:
    """A request's fields as the journal queues them (sealed): field number → value."""
    return {str(number): value for number, value in request.fields().items()}


class SafForwarder:
    """A component; `on_settled` is told each payment the ledger took (for the event stream)."""

    name = "saf"

    def __init__(
        self,
        journal: JournalHolder,
        ledger: LedgerPort,
        *,
        timeout_s: float,
        retry_interval_s: float = RETRY_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._journal = journal
        self._ledger = ledger
        self._timeout_s = timeout_s
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.on_settled: Callable[[PaymentRecord], None] = lambda rec: None

    def wake(self) -> None:
        """Something was queued, or the caller wants a try now."""
        self._wake.set()

    async def run(self, started: Callable[[], None]) -> None:
        await self._journal.wait()
        started()
        while True:
            self._wake.clear()
            outcome = await self._forward_all()
            if outcome == "empty":
                await self._wake.wait()
            elif outcome == "link_down":
                await self._link_up_or_wake()
            else:
                await self._sleep_or_wake(self._retry_interval_s)

    async def flush(self) -> dict[str, object]:
        """One pass now; `{"forwarded": n, "pending": m}`."""
        before = len(await self._journal().saf_pending())
        await self._forward_all()
        pending = len(await self._journal().saf_pending())
        return {"forwarded": max(0, before - pending), "pending": pending}

    async def _sleep_or_wake(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _link_up_or_wake(self) -> None:
        waits = [
            asyncio.ensure_future(self._ledger.wait_up()),
            asyncio.ensure_future(self._wake.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _forward_all(self) -> str:
        """'empty' when the queue is, 'link_down', or 'failed' after an unanswered try."""
        async with self._lock:
            journal = self._journal()
            while True:
                head = await journal.saf_peek()
                if head is None:
                    return "empty"
                if not self._ledger.is_up():
                    return "link_down"
                message = await journal.saf_begin_attempt(head.entry.entry_id, self._clock())
                error = await self._send(journal, message)
                if error is not None:
                    await journal.saf_attempt_failed(message.entry.entry_id, error, self._clock())
                    log.warning(
                        "store-and-forward: %s %s of payment %s not answered (%s); retry in %.0f s",
                        message.entry.kind,
                        message.mti,
                        message.entry.payment_id,
                        error,
                        self._retry_interval_s,
                    )
                    return "failed"

    async def _send(self, journal: Journal, message: SafMessage) -> str | None:
        """None once the entry is settled, else why not."""
        numbered = {int(number): value for number, value in message.fields.items()}
        request = request_from_fields(message.mti, numbered)
        try:
            response = await self._ledger.send(request, self._timeout_s)
        except LedgerUnavailable:
            return "ledger link down"
        except LedgerTimeout:
            return "no answer in time"
        except LedgerSecurityError:
            return "answer with a wrong MAC"
        if response.response_code in _TRY_AGAIN_CODES:
            return f"ledger answered {response.response_code}"
        rec = await journal.saf_complete(
            message.entry.entry_id,
            response_code=response.response_code,
            rrn=response.rrn,
            now=self._clock(),
        )
        log.info(
            "store-and-forward: %s of payment %s answered %s; now %s",
            message.entry.kind,
            rec.payment_id,
            response.response_code,
            rec.state,
        )
        self.on_settled(rec)
        return None
