"""The store-and-forward sender: reversals and offline advices from the journal's queue.

Oldest first, each until its answer arrives (ledger-iso8583.md): the first transmission goes
as 0400/0220, every later one as 0401/0221 with every other field kept. Nothing is dropped.

Each entry on its own schedule: up to WINDOW entries are in flight at once, each started as
soon as it is due and a place is free, so an entry the ledger does not answer holds one place
for its timeout, never the entries behind it. A try that does not settle an entry sets its
next attempt time in the journal (a restart keeps it): `retry_interval_s` on (30 s, the
spec's "0401 every 30 s"; an entry whose link was lost goes again as soon as it is back).
A 0200 never waits for the queue: the ledger client multiplexes one connection, writing each
message at once and matching answers by STAN; the queue has no more than WINDOW messages
outstanding; and its journal calls go after any payment's (posd.journal.worker).

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
  again, like a try with no answer, on the entry's schedule, or at once on `flush()`.
- Any other answer (a reversal's 30, 12, 13, 14..., an advice's 30 or 94, a code outside the
  profile) is never taken as success: the entry stays queued with the code as its refusal
  (`SafEntry.refused_code`, `needs_attention`; counted in the status saf summary, shown in
  `last_error` by `posd saf`), logged at ERROR with payment id, STAN and code, and sent again
  on its schedule.

An attempt is counted only once the message went out: a send refused with LedgerUnavailable
(nothing sent) leaves the entry as it was, so its first transmission is still a 0400/0220,
and the sender waits for the link to come back. A link lost after sending counts, and the
repeat goes as soon as the link is back (signed on again). A crash while waiting for an
answer leaves that transmission uncounted, so the next is sent with the same MTI again: the
ledger answers a resent request with its first answer, so that is safe.

Nothing is sent before the ledger link is up, which it is only once its sign-on is answered.

The age alarm: while an entry is older than `max_age_h` (offline.max_age_h), `alarm` is true,
an ERROR is logged at most once an hour (ALARM_LOG_S), and `on_alarm` is told each change
(the `saf` event); the entry keeps being sent as any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final, Literal

from posd.journal import (
    FieldValue,
    Journal,
    JournalHolder,
    PaymentRecord,
    SafMessage,
)
from posd.ledger import LedgerLinkLost, LedgerSecurityError, LedgerTimeout, LedgerUnavailable
from posd.payments.ports import LedgerPort
from protocols.ledger_fields import RESPONSE_CODES
from protocols.ledger_messages import LedgerRequest, LedgerResponse, request_from_fields

log = logging.getLogger(__package__)

RETRY_INTERVAL_S = 30.0
WINDOW: Final = 4
"""Entries in flight at once: a stuck one holds one place, and a WAN round trip is paid once per
WINDOW entries (bench_saf); few, so that a backlog never floods the ledger."""
ALARM_LOG_S: Final = 3600.0
TRY_AGAIN_CODES: Final = frozenset({"63", "91", "96"})
ADVICE_DECISIONS: Final = frozenset({"05", "12", "13", "14", "51", "54", "57", "58", "61"})
# Below this a wait for the next due entry is not worth a timer: it is due now.
_MIN_WAIT_S = 0.001

_Step = Literal["settled", "refused", "link_down", "failed"]


def request_fields(request: LedgerRequest) -> dict[str, FieldValue]:
    """A request's fields as the journal queues them (sealed): field number → value."""
    return {str(number): value for number, value in request.fields().items()}


def _describe(code: str) -> str:
    return f"{code} ({RESPONSE_CODES.get(code, 'not a code of the profile')})"


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


class SafForwarder:
    """A component; `on_settled` is told each payment whose state the ledger's answer moved
    (for the event stream), `on_alarm` the `saf` event body at each change of the age alarm."""

    name = "saf"

    def __init__(
        self,
        journal: JournalHolder,
        ledger: LedgerPort,
        *,
        timeout_s: float,
        retry_interval_s: float = RETRY_INTERVAL_S,
        max_age_h: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._journal = journal
        self._ledger = ledger
        self._timeout_s = timeout_s
        self._retry_interval_s = retry_interval_s
        self._max_age_h = max_age_h
        self._clock = clock
        self._wake = asyncio.Event()  # something to send may be due: look again
        self._changed = asyncio.Event()  # the queue's oldest entry may have changed
        self._slots = asyncio.Semaphore(WINDOW)
        self._in_flight: dict[int, asyncio.Task[_Step]] = {}
        self._link_lost = False
        self._alarm_logged_at: float | None = None
        self.alarm = False
        """Whether an entry is older than offline.max_age_h, as last seen."""
        self.on_settled: Callable[[PaymentRecord], None] = lambda rec: None
        self.on_alarm: Callable[[dict[str, object]], None] = lambda body: None

    def wake(self) -> None:
        """Something was queued, or the caller wants a try now."""
        self._wake.set()
        self._changed.set()

    async def run(self, started: Callable[[], None]) -> None:
        await self._journal.wait()
        started()
        try:
            async with asyncio.TaskGroup() as tasks:
                if self._max_age_h is not None:
                    tasks.create_task(self._watch_age(self._max_age_h), name="saf-age")
                await self._forward(tasks)
        except BaseExceptionGroup as group:
            # What failed (a full disk under the journal, ...), not "errors in a TaskGroup",
            # is what the supervisor reports.
            raise _first_error(group) from None

    async def _forward(self, tasks: asyncio.TaskGroup) -> None:
        while True:
            self._wake.clear()
            if await self._start_due(tasks, force=False) or self._link_lost:
                self._link_lost = False
                await self._link_up_or_wake()
                continue
            due = await self._journal().saf_next_due(exclude=tuple(self._in_flight))
            if due is None:
                await self._wake.wait()
            else:
                await self._sleep_or_wake(max(_MIN_WAIT_S, due - self._clock()))

    async def flush(self) -> dict[str, object]:
        """Every pending entry sent now, those waiting for their next attempt included, and
        the ones already in flight waited for; `{"forwarded": n, "pending": m}`, n counting
        the entries the ledger settled with 00."""
        sends = list(self._in_flight.values())
        try:
            async with asyncio.TaskGroup() as tasks:
                await self._start_due(tasks, force=True, started=sends)
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        if sends:
            await asyncio.wait(sends)
        settled = sum(
            1
            for send in sends
            if not send.cancelled() and not send.exception() and send.result() == "settled"
        )
        pending = len(await self._journal().saf_pending())
        return {"forwarded": settled, "pending": pending}

    async def _start_due(
        self,
        tasks: asyncio.TaskGroup,
        *,
        force: bool,
        started: list[asyncio.Task[_Step]] | None = None,
    ) -> bool:
        """Starts every due entry not in flight, oldest first, as places free up; True when
        the link is down (the rest waits for it)."""
        journal = self._journal()
        after_id = 0
        while True:
            await self._slots.acquire()
            try:
                message = await journal.saf_due(
                    self._clock(), force=force, after_id=after_id, exclude=tuple(self._in_flight)
                )
            except BaseException:
                self._slots.release()
                raise
            if message is None or not self._ledger.is_up():
                self._slots.release()
                return message is not None
            entry_id = after_id = message.entry.entry_id
            if entry_id in self._in_flight:  # started meanwhile (by flush, or the loop)
                self._slots.release()
                continue
            send = tasks.create_task(self._send_one(journal, message), name=f"saf-{entry_id}")
            self._in_flight[entry_id] = send
            if started is not None:
                started.append(send)

    async def _send_one(self, journal: Journal, message: SafMessage) -> _Step:
        try:
            step = await self._send(journal, message)
        finally:
            self._in_flight.pop(message.entry.entry_id, None)
            self._slots.release()
            self._wake.set()
        if step == "link_down":
            self._link_lost = True
        else:
            self._changed.set()
        return step

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

    # ---- one transmission -----------------------------------------------------------------

    async def _send(self, journal: Journal, message: SafMessage) -> _Step:
        entry = message.entry
        numbered = {int(number): value for number, value in message.fields.items()}
        request = request_from_fields(message.mti, numbered)
        try:
            response = await self._ledger.send(request, self._timeout_s)
        except LedgerUnavailable:
            return "link_down"  # nothing went out: not an attempt
        except LedgerLinkLost as exc:
            # Not the entry's fault: its repeat goes as soon as the link is back.
            await self._failed(journal, message, f"link lost after sending ({exc})", 0.0)
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

    async def _failed(
        self, journal: Journal, message: SafMessage, error: str, wait_s: float | None = None
    ) -> None:
        wait_s = self._retry_interval_s if wait_s is None else wait_s
        now = self._clock()
        await journal.saf_attempt_failed(message.entry.entry_id, error, now, now + wait_s)
        log.warning(
            "store-and-forward: %s %s stan %06d of payment %s not answered (%s); "
            "tried again in %.1f s",
            message.entry.kind,
            message.mti,
            message.entry.stan,
            message.entry.payment_id,
            error,
            wait_s,
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
        wait_s = self._retry_interval_s
        now = self._clock()
        await journal.saf_refused(
            entry.entry_id, response_code=code, error=error, now=now, next_attempt=now + wait_s
        )
        log.error(
            "store-and-forward: %s %s stan %06d of payment %s answered %s: the ledger %s; "
            "kept queued, needs attention, sent again in %.1f s",
            entry.kind,
            message.mti,
            entry.stan,
            entry.payment_id,
            _describe(code),
            what,
            wait_s,
        )

    # ---- the age alarm --------------------------------------------------------------------

    async def _watch_age(self, max_age_h: float) -> None:
        """Looks at the oldest entry whenever the queue changed, and when the oldest would
        cross max_age_h or the hourly ERROR is due."""
        max_age_s = max_age_h * 3600
        while True:
            self._changed.clear()
            now = self._clock()
            summary = await self._journal().saf_summary(now)
            alarm = summary.alarm(max_age_h)
            if alarm != self.alarm:
                self.alarm = alarm
                if not alarm:
                    self._alarm_logged_at = None
                    log.warning(
                        "store-and-forward: no entry is older than offline.max_age_h any more"
                    )
                self.on_alarm({**summary.to_json(), "alarm": alarm})
            if alarm and (
                self._alarm_logged_at is None or now - self._alarm_logged_at >= ALARM_LOG_S
            ):
                self._alarm_logged_at = now
                log.error(
                    "store-and-forward: the oldest of %d queued entries is %d s old, more than "
                    "offline.max_age_h (%g h); they are still sent, check the ledger link "
                    "(posd saf)",
                    summary.pending,
                    summary.oldest_age_s,
                    max_age_h,
                )
            wait: float | None = None
            if self._alarm_logged_at is not None:
                wait = self._alarm_logged_at + ALARM_LOG_S - now
            elif summary.oldest_age_s is not None:
                # Ages are whole seconds: the alarm is on from max_age_s + 1.
                wait = max_age_s + 1 - summary.oldest_age_s
            try:
                async with asyncio.timeout(None if wait is None else max(_MIN_WAIT_S, wait)):
                    await self._changed.wait()
            except TimeoutError:
                pass
