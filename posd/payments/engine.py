"""The payment flow: one payment at a time through the reader or scanner, to the ledger.

`PaymentEngine` implements `PaymentService` for the local API. Every state change is written
to the journal (and so to disk) before anything is told to anyone: the POS (events), the
reader (COMPLETE) or the ledger (0200). Reversals and offline advices go into the journal's
store-and-forward queue in the same transaction as the state that needs them, and the
`SafForwarder` sends them.

Decisions taken here where the specs are silent:
- A wrong MAC on the 0210 is no valid answer: the payment is reversed (state reversing, then
  reversed) with decline_reason `ledger_security`, since the ledger may have approved it.
- A chip payment the ledger approved is shown to the POS only after the card's
  COMPLETE_RESULT; a card that then declines (AAC), or a reader lost before it answers,
  reverses the approval (`card_declined`, `reader_error`). The window is on disk (the
  approval journaled with its card data kept, PaymentRecord.card_undecided, before COMPLETE
  goes out): a posd that crashed in it reverses the approval `reader_error` at restart, so
  the outcome does not depend on the crash.
- While the ledger is unreachable, magstripe and contactless without a cryptogram (9F26,
  9F27) are declined `ledger_unavailable` (authorizer.offline_unfit). Then the offline limits
  are checked: a payment beyond them is declined `offline_limit` (the limit that stood in the
  way is logged) and a chip card is then told `Z1` (declined by the host). Within them a
  chip card is told `Z3` and only a card that accepts offline (TC) is approved offline; its
  advice, queued once the card has answered, carries the TC (with its 9F27, 95, 9B) in 55
  in place of the ARQC's. A card that says it approved but gives no TC is declined
  `card_error`: no advice could prove that payment to the ledger.
- COMPLETE's ARC (reader-link.md): the 0210's 39 with the issuer data of its 55 (91, 71, 72)
  after a ledger answer; `Z3` only where posd would take the card's offline approval (the
  link down before the 0200, within the limits); `Z1` for every other decline without a
  ledger answer (at the counter, over a limit, a cancel, a 0200 unanswered or failed).
- Expired cards (5F24) are declined `card_expired` at the counter without asking the ledger.
- The 0200 is built, and so checked, before the journal records `authorizing`: card or QR data
  that cannot make one (field 55 over 255 bytes, ...) is declined at the counter (`card_error`,
  `qr_unreadable`) with nothing sent. Field 55 carries the card's authorisation tags only
  (rules.ICC_AUTHORIZATION_TAGS), not every tag the reader gave.
- Method `any`: the payment is declined only when neither the card nor the QR side can pay,
  with the card side's reason if it failed (the waiting itself is the counter's: counter.py).
- A reversal is built from the journal row alone (requests.py).
- A cancel answers once the journal says cancelled, whatever the reader does; the reader is
  told CANCEL meanwhile, again if the first went unheeded, and the next payment waits for it.
  A cancel of a cancelled payment (a retry, several at once) answers 200 with it; 409 is for
  a payment whose card or QR was taken.
- A refund is sent at once or declined, never queued nor approved offline: with the ledger
  link down it is declined `ledger_unavailable`, answered like any refund (202, the refund's
  payment object), and its idempotency key is bound to that answer. A refund of an offline
  approval whose advice is still queued is declined `advice_pending` (the journal decides
  that with the refund, link up or down). A refund of a chip approval whose card has not
  answered COMPLETE (card_undecided, shown authorizing) is 409 wrong_state, as for any
  payment not approved: it may yet be reversed, and the reversal already gives the money back.
- A journal that cannot write (disk full, I/O error) refuses new payments with
  DeviceNotReady naming the journal's storage, and the status object's `storage` (not in
  mqtt.md) shows the error. A payment it leaves unsettled (a 0200 out and no reversal
  queued, or a ledger approval the card refused) still has its card told COMPLETE, then holds
  the engine: no payment is taken, the component stops (error in the supervisor) and each
  restart's `recover` retries until the journal takes the reversal.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable

from posd.config import Config
from posd.journal import (
    APPROVED,
    AUTHORIZING,
    CANCELLED,
    FORWARDED,
    WAITING_FOR_CARD,
    CardSecrets,
    IdempotencyConflict,
    InvalidArgument,
    Journal,
    JournalHolder,
    JournalStorageError,
    PaymentRecord,
    RefundRefused,
    SafSummary,
)
from posd.payments import reports, requests
from posd.payments.authorizer import LEDGER_UNAVAILABLE, Authorizer
from posd.payments.counter import Cancelled, CardFailed, Counter, Waiting
from posd.payments.ports import (
    CardData,
    LedgerPort,
)
from posd.payments.rules import (
    ARC_HOST_DECLINED,
    benefit_for,
    card_expired,
    icc_for_authorization,
    prefix_accepted,
)
from posd.payments.saf import SafForwarder
from posd.payments.service import (
    DeviceNotReady,
    IdempotencyKeyReused,
    InvalidRequest,
    PaymentConflict,
    UnknownPayment,
    WrongState,
)
from posd.payments.view import PaymentView
from posd.runtime import EventHub
from protocols.ber_tlv import TlvError
from protocols.emv import mask_pan
from protocols.ledger_fields import STAN_MIN
from protocols.ledger_messages import CardPayer, LedgerFormatError, LedgerRequest, QrPayer
from protocols.qr_token import QrRejected, verify_qr

log = logging.getLogger(__package__)

# How long a new payment waits for the previous one's last reader exchange.
FINISHING_S = 5.0
# What the local API's event stream carries (local-api.md): payment and order changes only.
EVENT_STREAM_KINDS = frozenset({"payment", "order"})


class PaymentsHeld(Exception):
    """A payment could not be settled in the journal (its 0200 may have reached the ledger and
    no reversal is queued): the engine stops taking payments, and the supervisor's restarts
    retry the settling through `recover` until the journal takes it."""


class PaymentEngine:
    """The PaymentService, and a component: `run` recovers from the journal, then serves."""

    name = "payments"
    config_sections = ("terminal", "card_reader", "qr", "offline")

    def __init__(
        self,
        config: Config,
        journal: JournalHolder,
        ledger: LedgerPort,
        forwarder: SafForwarder,
        counter: Counter,
        *,
        hub: EventHub | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`hub`: posd's event hub (Runtime.events), where payment changes are published; a
        hub of its own when none is given."""
        self._config = config
        self._journal = journal
        self._ledger = ledger
        self._forwarder = forwarder
        self.counter = counter
        self._clock = clock
        self._hub = hub if hub is not None else EventHub()
        self._auth = Authorizer(
            config, journal, ledger, forwarder, counter, publish=self._publish, clock=clock
        )
        # Why no payment is taken: a payment left unsettled (the ledger may hold its money).
        self._held: str | None = None
        self._halt = asyncio.Event()
        self._storage_error: str | None = None
        self._create_lock = asyncio.Lock()
        self._tasks: asyncio.TaskGroup | None = None
        forwarder.on_settled = self._publish
        # The age alarm's changes are `saf` events (mqtt.md), beside monitoring's thresholds.
        forwarder.on_alarm = functools.partial(self._hub.publish, "saf", "saf")

    # ---- component ------------------------------------------------------------------------

    async def run(self, started: Callable[[], None]) -> None:
        self._halt = asyncio.Event()
        await self._journal.wait()
        await self.recover()
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                started()
                await self._halt.wait()
                self._tasks = None
        finally:
            self._tasks = None
            self.counter.waiting = None
        raise PaymentsHeld(self._held or "a payment could not be settled")

    async def recover(self) -> None:
        """What a crash left: waiting → cancelled; authorizing, or a chip approval whose card
        never answered COMPLETE → reversal queued. Each payment on its own, so one that
        cannot be settled does not hold back the others; then, if any could not be,
        PaymentsHeld: no payment is taken until a later call settles them all (the
        supervisor's restarts make that call)."""
        unsettled: list[str] = []
        try:
            in_flight = await self._jn().in_flight()
        except JournalStorageError as exc:
            self._note_storage(exc)
            self._hold(f"the payments in flight ({exc})")
            raise PaymentsHeld(str(self._held)) from exc
        for rec in in_flight:
            try:
                await self._recover_one(rec)
            except Exception as exc:
                _log_failure(exc, f"payment {rec.payment_id} ({rec.state}) could not be settled")
                self._note_storage(exc)
                unsettled.append(f"{rec.payment_id} ({rec.state}): {_why(exc)}")
        self._forwarder.wake()
        if unsettled:
            self._hold(f"payment {'; '.join(unsettled)}")
            raise PaymentsHeld(str(self._held))
        if self._held is not None:
            log.warning("payments held back earlier are settled; taking payments again")
        self._held = None
        self._storage_error = None

    async def _recover_one(self, rec: PaymentRecord) -> None:
        if rec.state == WAITING_FOR_CARD:
            rec = await self._jn().transition(
                rec.payment_id, CANCELLED, self._now(), decline_reason="interrupted"
            )
            log.info("payment %s was waiting for a card at restart: cancelled", rec.payment_id)
        elif rec.state == AUTHORIZING:
            rec = await self._auth.reverse(rec, "interrupted")
            log.warning(
                "payment %s had no ledger answer at restart: reversal queued", rec.payment_id
            )
        elif rec.card_undecided:
            rec = await self._auth.reverse_undecided(rec, publish=False)
        else:
            return
        self._publish(rec)

    # ---- PaymentService -------------------------------------------------------------------

    async def create(
        self, amount: int, method: str, idempotency_key: str, benefit_plus: bool
    ) -> PaymentView:
        async with self._create_lock:
            try:
                known = await self._jn().by_idempotency_key(idempotency_key)
                if known is None:
                    await self._previous_finished()
                    self._check_ready(method)
                benefit = benefit_for(
                    amount, self._config.terminal.benefit_plus_rate_bps, benefit_plus
                )
                rec, created = await self._jn().create_payment(
                    amount=amount,
                    charged=benefit.charged,
                    method=method,
                    idempotency_key=idempotency_key,
                    now=self._now(),
                    benefit_plus_rate_bps=benefit.rate_bps,
                    discount=benefit.discount,
                )
            except IdempotencyConflict as exc:
                raise IdempotencyKeyReused(str(exc)) from None
            except InvalidArgument as exc:
                raise InvalidRequest(exc.field, exc.message) from None
            except JournalStorageError as exc:
                raise self._storage_not_ready(exc) from None
            if not created:
                return PaymentView(rec)
            self._storage_error = None
            assert self._tasks is not None  # _check_ready saw the engine running
            waiting = self.counter.open(rec.payment_id, method)
            self._publish(rec)
            self._tasks.create_task(self._drive(rec, waiting), name=f"payment {rec.payment_id}")
            return PaymentView(rec)

    async def get(self, payment_id: str) -> PaymentView | None:
        rec = await self._jn().get(payment_id)
        return None if rec is None else self._auth.view(rec)

    async def cancel(self, payment_id: str) -> PaymentView:
        rec = await self._jn().get(payment_id)
        if rec is None:
            raise UnknownPayment(f"no payment {payment_id}")
        if rec.state == CANCELLED:
            # A cancel repeated (a POS retrying, two tills at once) is answered with its
            # outcome: "too late to cancel" would tell the cashier the sale goes on.
            return PaymentView(rec)
        waiting = self.counter.waiting
        if waiting is None or waiting.payment_id != payment_id:
            raise WrongState(f"payment {payment_id} is {rec.state}: too late to cancel")
        joining = waiting.cancel_asked.is_set()
        if not joining and (rec.state != WAITING_FOR_CARD or waiting.deciding):
            raise WrongState(f"payment {payment_id} is {rec.state}: too late to cancel")
        waiting.cancel_asked.set()
        # Not `settled`: stopping the card read is the reader's business, not the POS's wait.
        await waiting.decided.wait()
        rec = await self._jn().get(payment_id)
        assert rec is not None
        if rec.state != CANCELLED:
            raise WrongState(f"payment {payment_id} is {rec.state}: too late to cancel")
        return PaymentView(rec)

    async def refund(
        self, payment_id: str, amount: int, idempotency_key: str | None
    ) -> PaymentView:
        original = await self._jn().get(payment_id)
        if original is None:
            raise UnknownPayment(f"no payment {payment_id}")
        # A known key is the journal's to answer (the first refund, or 409 if the request
        # differs), whatever holds new refunds back.
        known = None
        if idempotency_key is not None:
            known = await self._jn().by_idempotency_key(idempotency_key, kind="refund")
        if self._held is not None and known is None:
            raise DeviceNotReady(self._held_message())
        if original.state in (APPROVED, FORWARDED) and original.rrn is None:
            # Field 37 names the original at the ledger; a payment without one cannot be.
            raise WrongState(f"payment {payment_id} has no ledger reference (RRN) to refund")
        # Refunds are online only: with the link down one is declined, nothing queued.
        unsent = None if self._ledger.is_up() else LEDGER_UNAVAILABLE
        try:
            rec, created = await self._jn().create_refund(
                original_payment_id=payment_id,
                amount=amount,
                idempotency_key=idempotency_key,
                now=self._now(),
                unsent_reason=unsent,
            )
        except IdempotencyConflict as exc:
            raise IdempotencyKeyReused(str(exc)) from None
        except RefundRefused as exc:
            if exc.reason == "exceeds_original":
                raise InvalidRequest("amount", str(exc)) from None
            raise WrongState(str(exc)) from None
        except JournalStorageError as exc:
            raise self._storage_not_ready(exc) from None
        if not created:
            return PaymentView(rec)
        self._publish(rec)
        if rec.state != AUTHORIZING:
            why = rec.decline_reason
            log.info("refund %s of %s declined unsent: %s", rec.payment_id, payment_id, why)
            return PaymentView(rec)
        try:
            request = await self._refund_request(rec)
            return PaymentView(await self._auth.authorize(rec, request, card=None))
        except Exception as exc:
            # As in _drive: a refund in authorizing is reversed, or else holds the engine.
            _log_failure(exc, f"refund {rec.payment_id} failed")
            self._note_storage(exc)
            await self._settle_failed(rec)
            if isinstance(exc, JournalStorageError):
                raise self._storage_not_ready(exc) from None
            raise

    def events(self) -> AsyncIterator[dict[str, object]]:
        return self._hub.subscribe(kinds=EVENT_STREAM_KINDS)

    async def status_sections(self, *, strict: bool = False) -> dict[str, object]:
        """The payment side's sections of the state object (reports.payment_sections).
        While the journal is not open its figures are null and `storage` says why; `strict`
        (the local API) raises DeviceNotReady then instead, as every other request does."""
        now = self._now()
        saf: SafSummary | None = None
        today: dict[str, int] | None = None
        unavailable: str | None = None
        try:
            journal = self._jn()
            saf = await journal.saf_summary(now)
            today = await journal.payments_today(now)
        except DeviceNotReady as exc:
            if strict:
                raise
            unavailable = exc.message
        except JournalStorageError as exc:
            self._note_storage(exc)
        return reports.payment_sections(
            self._config,
            self._ledger,
            self.counter,
            saf=saf,
            payments_today=today,
            storage_error=self._held or self._storage_error or unavailable,
        )

    async def totals(self, date: datetime.date) -> dict[str, object]:
        return reports.totals_report(await self._jn().totals(date), date)

    async def saf(self) -> list[dict[str, object]]:
        return reports.saf_queue(await self._jn().saf_pending())

    async def saf_flush(self) -> dict[str, object]:
        if not self._ledger.is_up():
            raise DeviceNotReady("the ledger link is down; the queue is forwarded once it is up")
        return await self._forwarder.flush()

    # ---- the flow -------------------------------------------------------------------------

    async def _drive(self, rec: PaymentRecord, waiting: Waiting) -> None:
        card_taken = False
        self.counter.card_open = False
        try:
            got = await self.counter.wait_for_payer(waiting, rec.charged)
            waiting.deciding = True
            card_taken = isinstance(got, CardData)
            self.counter.card_open = isinstance(got, CardData) and got.entry_mode == "chip"
            if waiting.read is not None and not card_taken:
                # Stopped at once, so the reader is not still reading while a QR pays; the
                # rest of the stop (and a Z1 for a chip card it read) is in `finally`.
                waiting.read.cancel()
            if isinstance(got, Cancelled):
                rec = await self._jn().transition(rec.payment_id, CANCELLED, self._now())
                self._publish(rec)
                return
            waiting.decided.set()
            if isinstance(got, str):
                await self._qr_payment(rec, got)
            elif isinstance(got, CardData):
                await self._card_payment(rec, got)
            elif isinstance(got, CardFailed):
                await self._auth.decline_here(rec, got.reason)
            else:
                await self._auth.decline_here(rec, "timeout")
        except Exception as exc:
            # A bug here, or a journal that cannot write (disk full), must not leave the
            # reader held, the card's transaction open, nor a 0200 without its answer.
            _log_failure(exc, f"payment {rec.payment_id} failed")
            self._note_storage(exc)
            try:
                await self._settle_failed(rec)
            finally:
                if self.counter.card_open:
                    await self.counter.tell_card(ARC_HOST_DECLINED)
        finally:
            waiting.decided.set()
            try:
                if waiting.read is not None and not card_taken:
                    await self.counter.stop_read(waiting.read)
            finally:
                self.counter.close(waiting)

    async def _settle_failed(self, rec: PaymentRecord) -> None:
        """Settles a payment whose flow failed, as start-up recovery would. If the journal
        cannot take that either, the engine is held (no new payment) and stops, so that the
        supervisor's restarts retry through `recover`."""
        try:
            rec = await self._refresh(rec)
            if rec.state == WAITING_FOR_CARD:
                await self._auth.decline_now(rec, "internal_error")
            elif rec.state == AUTHORIZING:
                await self._auth.reverse(rec, "internal_error", publish=True)
            elif rec.card_undecided:
                # The card's answer, whatever it was, could not be recorded.
                self._auth.owed.setdefault(rec.payment_id, "internal_error")
                await self._auth.reverse_undecided(rec, publish=True)
        except Exception as exc:
            _log_failure(exc, f"payment {rec.payment_id} could not be settled")
            self._note_storage(exc)
            self._hold(f"payment {rec.payment_id} ({rec.state}): {_why(exc)}")
            self._halt.set()

    async def _card_payment(self, rec: PaymentRecord, read: CardData) -> None:
        chip = read.entry_mode == "chip"
        if not prefix_accepted(read.pan, self._config.card_reader.accepted_prefixes):
            log.info("card %s not accepted here", mask_pan(read.pan))
            await self._auth.decline_here(rec, "card_not_accepted", chip=chip)
            return
        today = datetime.datetime.fromtimestamp(self._now()).date()
        if card_expired(read.expiry, today):
            await self._auth.decline_here(rec, "card_expired", chip=chip)
            return
        try:
            icc = None if read.entry_mode == "magstripe" else icc_for_authorization(read.tlv)
            payer = CardPayer(
                read.entry_mode,  # type: ignore[arg-type]
                read.pan,
                expiry=read.expiry,
                track2=read.track2,
                icc=icc,
            )
            self._check_purchase(rec, payer)
        except (TlvError, LedgerFormatError) as exc:
            log.warning(
                "payment %s: card %s makes no valid 0200 (%s): declined at the counter",
                rec.payment_id,
                mask_pan(read.pan),
                exc,
            )
            await self._auth.decline_here(rec, "card_error", chip=chip)
            return
        secrets = CardSecrets(
            entry_mode=read.entry_mode,
            pan=read.pan,
            expiry=read.expiry,
            track2=read.track2,
            icc=icc,
            pan_sequence=read.pan_sequence,
        )
        try:
            rec = await self._jn().begin_authorization(rec.payment_id, secrets, self._now())
        except InvalidArgument as exc:
            log.warning("payment %s: card %s refused: %s", rec.payment_id, mask_pan(read.pan), exc)
            await self._auth.decline_here(rec, "card_error", chip=chip)
            return
        self._publish(rec)
        await self._auth.authorize(rec, self._purchase(rec, payer), card=read)

    async def _qr_payment(self, rec: PaymentRecord, text: str) -> None:
        now = self._now()
        verdict = verify_qr(text, self._config.qr.platform_keys, int(now))
        if isinstance(verdict, QrRejected):
            log.info("QR refused: %s %s", verdict.reason, verdict.detail)
            await self._auth.decline_here(rec, verdict.reason)
            return
        payer = QrPayer(verdict.account, verdict.text)
        try:
            self._check_purchase(rec, payer)
        except LedgerFormatError as exc:
            log.warning("payment %s: QR makes no valid 0200 (%s)", rec.payment_id, exc)
            await self._auth.decline_here(rec, "qr_unreadable")
            return
        if not await self._jn().use_qr_nonce(verdict.nonce, now):
            await self._auth.decline_here(rec, "qr_replayed")
            return
        secrets = CardSecrets(entry_mode="qr", pan=verdict.account, qr_text=verdict.text)
        try:
            rec = await self._jn().begin_authorization(rec.payment_id, secrets, self._now())
        except InvalidArgument as exc:
            log.warning("payment %s: QR refused: %s", rec.payment_id, exc)
            await self._auth.decline_here(rec, "qr_unreadable")
            return
        self._publish(rec)
        await self._auth.authorize(rec, self._purchase(rec, payer), card=None)

    # ---- helpers --------------------------------------------------------------------------

    def _purchase(self, rec: PaymentRecord, payer: CardPayer | QrPayer) -> LedgerRequest:
        """The 0200 of a payment in authorizing, with the STAN and field 7 the journal gave
        it (begin_authorization stamps field 7 and updated_at together)."""
        assert rec.stan is not None
        terminal = self._config.terminal
        return requests.purchase(rec, payer, terminal, stan=rec.stan, at=rec.updated_at / 1000)

    def _check_purchase(self, rec: PaymentRecord, payer: CardPayer | QrPayer) -> None:
        """Raises LedgerFormatError if the payer's data cannot make a 0200. The journal gives
        the STAN only as it records authorizing, so this one is built with a stand-in: the
        STAN and times cannot make a 0200 invalid, the card or QR data can."""
        requests.purchase(rec, payer, self._config.terminal, stan=STAN_MIN, at=self._now())

    async def _refund_request(self, rec: PaymentRecord) -> LedgerRequest:
        """The 0200 refund of a refund payment (created in authorizing), from the journal."""
        assert rec.original_payment_id is not None
        original = await self._jn().get(rec.original_payment_id)
        assert original is not None
        return requests.refund(rec, original, self._config.terminal)

    async def _previous_finished(self) -> None:
        """A payment the customer has their answer for may still be ending the card's
        transaction (COMPLETE); the next payment waits for that rather than get a 409."""
        waiting = self.counter.waiting
        if waiting is None:
            return
        current = await self._jn().get(waiting.payment_id)
        if current is not None and current.state not in (WAITING_FOR_CARD, AUTHORIZING):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FINISHING_S):
                    await waiting.settled.wait()

    def _check_ready(self, method: str) -> None:
        if self._held is not None:
            raise DeviceNotReady(self._held_message())
        if self._tasks is None:
            raise DeviceNotReady("posd is starting; try again in a moment")
        if self.counter.waiting is not None:
            raise PaymentConflict(
                f"payment {self.counter.waiting.payment_id} is still waiting for a card or QR"
            )
        card_ok = method in ("card", "any") and self.counter.reader_ready()
        qr_ok = method in ("qr", "any") and self.counter.scanner_ready()
        if not (card_ok or qr_ok):
            what = {"card": "card reader", "qr": "QR scanner"}.get(method, "reader or scanner")
            raise DeviceNotReady(f"the {what} is not ready")

    async def _refresh(self, rec: PaymentRecord) -> PaymentRecord:
        fresh = await self._jn().get(rec.payment_id)
        return fresh if fresh is not None else rec

    def _hold(self, why: str) -> None:
        self._held = why
        log.error("no payment is taken until this is settled: %s", why)

    def _note_storage(self, exc: BaseException) -> None:
        if isinstance(exc, JournalStorageError):
            self._storage_error = str(exc)

    def _storage_not_ready(self, exc: JournalStorageError) -> DeviceNotReady:
        self._storage_error = str(exc)
        log.error("payment refused: %s", exc)
        return DeviceNotReady(f"{exc}; free space in the state directory or replace the disk")

    def _held_message(self) -> str:
        return f"payments are held until the journal can settle {self._held}"

    def _jn(self) -> Journal:
        return self._auth.journal()

    def _now(self) -> float:
        return self._auth.now()

    def _publish(self, rec: PaymentRecord) -> None:
        self._hub.publish("payment", "payment", PaymentView(rec).to_json())


def _why(exc: BaseException) -> str:
    if isinstance(exc, JournalStorageError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _log_failure(exc: BaseException, what: str) -> None:
    # A full or failing disk is the operator's to fix, and retried: no traceback each time.
    if isinstance(exc, JournalStorageError):
        log.error("%s: %s", what, exc)
    else:
        log.error("%s", what, exc_info=exc)
