"""The store-and-forward sender: reversals and offline advices from the journal's queue.

Oldest first, each until its answer arrives (ledger-iso8583.md): the first transmission goes
as 0400/0220, every later one as 0401/0221 with every other field kept. Nothing is dropped.

What settles an entry, and what an answer that does not settle it does (the spec is silent
on answers other than 00; this is posd's reading):
- 00 settles either kind: reversing -> reversed, approved_offline -> forwarded.
- A reversal is settled by 00 and nothing else. This profile has no 25 "original not found":
  the ledger answers 00 for a payment it never saw, so any other code means it did not undo
  the charge and the customer may still be charged.
- An advice answered with a decision on the payment (ADVICE_DECISIONS: 05 12 13 14 51 54 57 58
  61) is settled as refused: the ledger has booked that answer and repeats it to every repeat,
  so sending again changes nothing. The payment goes approved_offline -> declined with the
  ledger's response_code and decline_reason `advice_refused`: its charge does not stand, so
  it leaves the approved totals and the offline exposure, and the POS sees the change.
- 91 and 96 (the ledger cannot handle it now) and 63 (it could not check our MAC) are tried
  again, like a try with no answer: the pass stops and the next comes after
  `retry_interval_s` (30 s), or sooner on `flush()`.
- Any other answer (a reversal's 30, 12, 13, 14..., an advice's 30 or 94, a code outside the
  profile) is never taken as success: the entry stays queued with the code as its refusal
  (`SafEntry.refused_code`, `needs_attention`; counted in the status saf summary, shown in
  `last_error` by `posd saf`), logged at ERROR with payment id, STAN and code, and sent again
  `retry_interval_s` after that try. It does not hold back the entries behind it.

An attempt is counted only once the message went out: a send refused with LedgerUnavailable
(nothing sent) leaves the entry as it was, so its first transmission is still a 0400/0220,
and the sender waits for the link to come back rather than for the retry interval. A crash
while waiting for an answer leaves that transmission uncounted, so the next is sent with the
same MTI again: the ledger answers a resent request with its first answer, so that is safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from posd.journal import FieldValue, Journal, JournalHolder, PaymentRecord, SafMessage
from posd.ledger import LedgerLinkLost, LedgerSecurityError, LedgerTimeout, LedgerUnavailable
from posd.payments.ports import LedgerPort
from protocols.ledger_fields import RESPONSE_CODES
from protocols.ledger_messages import LedgerRequest, LedgerResponse, request_from_fields

log = logging.getLogger(__package__)

RETRY_INTERVAL_S = 30.0
TRY_AGAIN_CODES: Final = frozenset({"63", "91", "96"})
ADVICE_DECISIONS: Final = frozenset({"05", "12", "13", "14", "51", "54", "57", "58", "61"})
# Below this a wait for a held entry is not worth a timer: it is due now.
_MIN_WAIT_S = 0.001

Outcome = Literal["empty", "held", "link_down", "failed"]
_Step = Literal["settled", "refused", "link_down", "failed"]


def request_fields(request: LedgerRequest) -> dict[str, FieldValue]:
    """A request's fields as the journal queues them (sealed): field number → value."""
    return {str(number): value for number, value in request.fields().items()}


def _describe(code: str) -> str:
    return f"{code} ({RESPONSE_CODES.get(code, 'not a code of the profile')})"


@dataclass(frozen=True)
class _Pass:
    outcome: Outcome
    settled: int


class SafForwarder:
    """A component; `on_settled` is told each payment whose state the ledger's answer moved
    (for the event stream)."""

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
            done = await self._forward_all(force=False)
            if done.outcome == "empty":
                await self._wake.wait()
            elif done.outcome == "link_down":
                await self._link_up_or_wake()
            elif done.outcome == "held":
                await self._sleep_or_wake(await self._until_next_due())
            else:
                await self._sleep_or_wake(self._retry_interval_s)

    async def flush(self) -> dict[str, object]:
        """One pass now, entries waiting after a refusal included; `{"forwarded": n,
        "pending": m}`, n counting the entries the ledger settled with 00."""
        done = await self._forward_all(force=True)
        pending = len(await self._journal().saf_pending())
        return {"forwarded": done.settled, "pending": pending}

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

    async def _until_next_due(self) -> float:
        due = await self._journal().saf_held_until(self._retry_interval_s)
        if due is None:
            return self._retry_interval_s
        return max(_MIN_WAIT_S, due - self._clock())

    async def _forward_all(self, *, force: bool) -> _Pass:
        """One walk through the queue, oldest first, each due entry sent once. `force` sends
        the entries held after a refusal too."""
        hold_s = 0.0 if force else self._retry_interval_s
        settled = 0
        async with self._lock:
            journal = self._journal()
            after_id = 0
            while True:
                message = await journal.saf_due(self._clock(), hold_s, after_id)
                if message is None:
                    held = await journal.saf_held_until(self._retry_interval_s)
                    return _Pass("empty" if held is None else "held", settled)
                if not self._ledger.is_up():
                    return _Pass("link_down", settled)
                after_id = message.entry.entry_id
                step = await self._send(journal, message)
                if step == "settled":
                    settled += 1
                elif step in ("link_down", "failed"):
                    return _Pass(step, settled)

    async def _send(self, journal: Journal, message: SafMessage) -> _Step:
        entry = message.entry
        numbered = {int(number): value for number, value in message.fields.items()}
        request = request_from_fields(message.mti, numbered)
        try:
            response = await self._ledger.send(request, self._timeout_s)
        except LedgerUnavailable:
            return "link_down"  # nothing went out: not an attempt
        except LedgerLinkLost as exc:
            await self._failed(journal, message, f"link lost after sending ({exc})")
            return "link_down"
        except LedgerTimeout as exc:  # no answer in time, or a malformed one
            await self._failed(journal, message, str(exc))
            return "failed"
        except LedgerSecurityError:
            await self._failed(journal, message, "answer with a wrong MAC")
            return "failed"
        code = response.response_code
        if code in TRY_AGAIN_CODES:
            await self._failed(journal, message, f"ledger answered {_describe(code)}")
            return "failed"
        if code == "00" or (entry.kind == "advice" and code in ADVICE_DECISIONS):
            await self._settle(journal, message, response)
            return "settled" if code == "00" else "refused"
        await self._refused(journal, message, code)
        return "refused"

    async def _failed(self, journal: Journal, message: SafMessage, error: str) -> None:
        await journal.saf_attempt_failed(message.entry.entry_id, error, self._clock())
        log.warning(
            "store-and-forward: %s %s stan %06d of payment %s not answered (%s); "
            "tried again in %.0f s",
            message.entry.kind,
            message.mti,
            message.entry.stan,
            message.entry.payment_id,
            error,
            self._retry_interval_s,
        )

    async def _settle(
        self, journal: Journal, message: SafMessage, response: LedgerResponse
    ) -> None:
        entry = message.entry
        rec = await journal.saf_complete(
            entry.entry_id,
            response_code=response.response_code,
            rrn=response.rrn,
            now=self._clock(),
        )
        if response.approved:
            log.info(
                "store-and-forward: %s %s stan %06d of payment %s answered 00; now %s",
                entry.kind,
                message.mti,
                entry.stan,
                rec.payment_id,
                rec.state,
            )
        else:
            log.error(
                "store-and-forward: the ledger refused the advice %s stan %06d of offline "
                "payment %s with %s; the payment is now %s (%s): its %d won will not be paid",
                message.mti,
                entry.stan,
                rec.payment_id,
                _describe(response.response_code),
                rec.state,
                rec.decline_reason,
                rec.charged,
            )
        self.on_settled(rec)

    async def _refused(self, journal: Journal, message: SafMessage, code: str) -> None:
        entry = message.entry
        what = "did not undo the charge" if entry.kind == "reversal" else "did not book it"
        error = f"ledger answered {_describe(code)}: it {what}; needs attention"
        await journal.saf_refused(
            entry.entry_id, response_code=code, error=error, now=self._clock()
        )
        log.error(
            "store-and-forward: %s %s stan %06d of payment %s answered %s: the ledger %s; "
            "kept queued, needs attention, sent again in %.0f s",
            entry.kind,
            message.mti,
            entry.stan,
            entry.payment_id,
            _describe(code),
            what,
            self._retry_interval_s,
        )
