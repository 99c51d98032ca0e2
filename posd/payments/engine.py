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
  reverses the approval (`card_declined`, `reader_error`).
- While the ledger is unreachable the offline limits are checked first: a payment beyond them
  is declined `ledger_unavailable` (the limit that stood in the way is logged) and a chip card
  is then told `Z3` only to end its transaction. Within them a chip card is told `Z3` and only
  a card that accepts offline (TC) is approved offline.
- Expired cards (5F24) are declined `card_expired` at the counter without asking the ledger.
- The 0200 is built, and so checked, before the journal records `authorizing`: card or QR data
  that cannot make one (field 55 over 255 bytes, ...) is declined at the counter (`card_error`,
  `qr_unreadable`) with nothing sent. Field 55 carries the card's authorisation tags only
  (payment_rules.ICC_AUTHORIZATION_TAGS), not every tag the reader gave.
- A reversal is built from the journal row alone (STAN and field 7 of the 0200, amount, ids),
  never from card data, so no card data can stop one, nor start-up recovery.
- Method `any`: a card side that fails (reader gone, READ_FAILED) leaves the QR side waiting
  until the read timeout; the payment is declined only when neither can pay, with the card
  side's reason if it failed. A chip card read whose result is not used (a QR or a cancel came
  first) is told `Z3`, so its transaction ends.
- A cancel answers once the journal says cancelled, whatever the reader does; the reader is
  told CANCEL meanwhile, again if the first went unheeded, and the next payment waits for it.
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
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

from posd import __version__
from posd.config import Config

# The journal's own offline rule: checked before the card is asked, so both always agree.
from posd.journal import (
    APPROVED,
    AUTHORIZING,
    CANCELLED,
    DECLINED,
    SUCCESS_STATES,
    WAITING_FOR_CARD,
    CardSecrets,
    IdempotencyConflict,
    InvalidArgument,
    Journal,
    JournalHolder,
    JournalNotOpen,
    JournalStorageError,
    OfflineRefused,
    PaymentRecord,
    RefundRefused,
    mask_pan,
    offline_refusal,
)
from posd.ledger import LedgerSecurityError, LedgerTimeout, LedgerUnavailable
from posd.logs import register_secret
from posd.payments.ports import (
    CardData,
    CardReaderPort,
    CardVerdict,
    LedgerPort,
    ReadFailure,
    ScannerPort,
)
from posd.payments.rules import (
    ARC_LEDGER_NOT_REACHED,
    benefit_rate_for,
    card_expired,
    icc_for_authorization,
    prefix_accepted,
    read_failed_reason,
)
from posd.payments.saf import SafForwarder, request_fields
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
from protocols.ledger_messages import (
    ENTRY_MODE_CODES,
    STAN_MIN,
    CardPayer,
    LedgerFormatError,
    LedgerRequest,
    LedgerResponse,
    OriginalData,
    QrPayer,
    build_advice,
    build_purchase,
    build_refund,
    field7,
    local_fields,
    offline_auth_code,
)
from protocols.qr_token import QrRejected, verify_qr

log = logging.getLogger(__package__)

ALL_MODES = 0b111  # chip, contactless, magstripe
READ_TIMEOUT_S = 60
_SHORTEST_SECRET = 6
# The reader ends its own read at timeout_s (READ_FAILED timeout); this only bounds a reader
# that never answers, and a QR-only wait.
_READER_TIMEOUT_GRACE_S = 2
# How long a new payment waits for the previous one's last reader exchange.
FINISHING_S = 5.0
# A card read nobody needs is cancelled again after this long, in case a cancellation is lost
# on its way through the driver (Python 3.11's wait_for could drop one; the driver no longer
# uses it). Cancelling a second time during the driver's own CANCEL exchange is harmless: the
# CANCEL frame is already on the link, ahead of anything sent next.
_STOP_READ_GRACE_S = 1.0
_STOP_READ_ROUNDS = 5


class ReaderMissing(Exception):
    """A chip card's COMPLETE is due and there is no reader object at all."""


class PaymentsHeld(Exception):
    """A payment could not be settled in the journal (its 0200 may have reached the ledger and
    no reversal is queued): the engine stops taking payments, and the supervisor's restarts
    retry the settling through `recover` until the journal takes it."""


@dataclass(frozen=True)
class _CardFailed:
    """The card side ended without a card; `reason` is the decline reason at the counter."""

    reason: str


class _Cancelled:
    """The POS cancelled the payment while it waited."""


_CANCELLED = _Cancelled()
_Payer = CardData | str | _CardFailed | _Cancelled | None


@dataclass
class _Waiting:
    """The payment that holds the reader/scanner, while it waits for a card or QR."""

    payment_id: str
    accepts_card: bool
    accepts_qr: bool
    qr: asyncio.Future[str]
    read: asyncio.Task[CardData | ReadFailure] | None = None
    deciding: bool = False
    cancel_asked: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the wait is over: the payment is cancelled in the journal, or on its way.
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the reader and scanner are free for the next payment.
    settled: asyncio.Event = field(default_factory=asyncio.Event)


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
        reader: CardReaderPort | None,
        scanner: ScannerPort | None = None,
        *,
        clock: Callable[[], float] = time.time,
        read_timeout_s: int = READ_TIMEOUT_S,
        reader_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        """`reader_errors`: what the reader raises when it is gone or not ready
        (drivers.card_reader.ReaderUnavailable); such a payment is declined reader_error."""
        self._config = config
        self._journal = journal
        self._ledger = ledger
        self._forwarder = forwarder
        self.reader = reader
        self.scanner = scanner
        self._clock = clock
        self.read_timeout_s = read_timeout_s
        self.reader_errors: tuple[type[Exception], ...] = (ReaderMissing, *reader_errors)
        self._hub = EventHub()
        self._waiting: _Waiting | None = None
        # Chip payments the ledger approved whose card has not answered COMPLETE yet: the
        # journal says approved (the ledger's answer is durable), the POS sees authorizing.
        self._card_deciding: set[str] = set()
        # Chip payments the ledger approved and the card did not, whose reversal the journal
        # has not taken yet (disk full): payment id -> decline reason. The journal says
        # approved, so this is what makes `recover` reverse them and the POS see authorizing.
        self._owed: dict[str, str] = {}
        # Whether the card of the payment under way still awaits its COMPLETE.
        self._card_open = False
        # Why no payment is taken: a payment left unsettled (the ledger may hold its money).
        self._held: str | None = None
        self._halt = asyncio.Event()
        self._storage_error: str | None = None
        self._create_lock = asyncio.Lock()
        self._tasks: asyncio.TaskGroup | None = None
        self._started_mono = time.monotonic()
        forwarder.on_settled = self._publish

    # ---- component ------------------------------------------------------------------------

    async def run(self, started: Callable[[], None]) -> None:
        self._started_mono = time.monotonic()
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
            self._waiting = None
        raise PaymentsHeld(self._held or "a payment could not be settled")

    async def recover(self) -> None:
        """What a crash left: waiting → cancelled; authorizing → reversal queued. Each payment
        on its own, so one that cannot be settled does not hold back the others; then, if any
        could not be, PaymentsHeld: no payment is taken until a later call settles them all
        (the supervisor's restarts make that call)."""
        unsettled: list[str] = []
        try:
            owed = [await self._jn().get(payment_id) for payment_id in list(self._owed)]
            in_flight = [r for r in owed if r is not None] + await self._jn().in_flight()
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
            rec = await self._reverse(rec, "interrupted")
            log.warning(
                "payment %s had no ledger answer at restart: reversal queued", rec.payment_id
            )
        elif rec.payment_id in self._owed:
            rec = await self._reverse_owed(rec, publish=False)
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
                rec, created = await self._jn().create_payment(
                    amount=amount,
                    method=method,
                    idempotency_key=idempotency_key,
                    benefit_plus_rate_bps=benefit_rate_for(
                        self._config.terminal.benefit_plus_rate_bps, benefit_plus
                    ),
                    now=self._now(),
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
            waiting = _Waiting(
                rec.payment_id,
                accepts_card=method in ("card", "any") and self._reader_ready(),
                accepts_qr=method in ("qr", "any") and self._scanner_ready(),
                qr=asyncio.get_running_loop().create_future(),
            )
            self._waiting = waiting
            self._publish(rec)
            self._tasks.create_task(self._drive(rec, waiting), name=f"payment {rec.payment_id}")
            return PaymentView(rec)

    async def get(self, payment_id: str) -> PaymentView | None:
        rec = await self._jn().get(payment_id)
        return None if rec is None else self._view(rec)

    async def cancel(self, payment_id: str) -> PaymentView:
        rec = await self._jn().get(payment_id)
        if rec is None:
            raise UnknownPayment(f"no payment {payment_id}")
        waiting = self._waiting
        if (
            rec.state != WAITING_FOR_CARD
            or waiting is None
            or waiting.payment_id != payment_id
            or waiting.deciding
        ):
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
        if idempotency_key is not None:
            known = await self._jn().by_idempotency_key(idempotency_key, kind="refund")
            if known is not None and known.original_payment_id == payment_id:
                return PaymentView(known)
        if self._held is not None:
            raise DeviceNotReady(self._held_message())
        if not self._ledger.is_up():
            raise DeviceNotReady("the ledger link is down; refunds are made online only")
        if original.rrn is None and original.kind == "purchase" and original.stan is not None:
            # Field 37 names the original at the ledger; a payment without one cannot be.
            raise WrongState(f"payment {payment_id} has no ledger reference (RRN) to refund")
        try:
            rec, created = await self._jn().create_refund(
                original_payment_id=payment_id,
                amount=amount,
                idempotency_key=idempotency_key,
                now=self._now(),
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
        try:
            request = await self._refund_request(rec)
            return PaymentView(await self._authorize(rec, request, card=None))
        except Exception as exc:
            # As in _drive: a refund in authorizing is reversed, or else holds the engine.
            _log_failure(exc, f"refund {rec.payment_id} failed")
            self._note_storage(exc)
            await self._settle_failed(rec)
            if isinstance(exc, JournalStorageError):
                raise self._storage_not_ready(exc) from None
            raise

    def events(self) -> AsyncIterator[dict[str, object]]:
        return self._hub.subscribe()

    async def status(self) -> dict[str, object]:
        now = self._now()
        reader = self.reader
        scanner = self.scanner
        info = reader.info if reader is not None else None
        return {
            "terminal_id": self._config.terminal.id,
            "merchant_id": self._config.terminal.merchant_id,
            "version": __version__,
            "uptime_s": int(time.monotonic() - self._started_mono),
            "config_sha256": self._config.sha256,
            "ledger": {
                "link": self._ledger.link,
                "last_rtt_ms": self._ledger.last_rtt_ms,
                "last_error": self._ledger.last_error,
            },
            "devices": {
                "card_reader": {
                    "state": reader.state if reader is not None else "disabled",
                    "port": reader.port if reader is not None else None,
                    "firmware": info.firmware if info is not None else None,
                },
                "qr_scanner": {
                    "state": scanner.state if scanner is not None else "disabled",
                    "kind": self._config.qr_scanner.kind,
                },
                "audio": {"state": "disabled", "output": self._config.audio.output},
            },
            "saf": (await self._jn().saf_summary(now)).to_json(),
            # Not in mqtt.md: the journal's storage, so that a full or failing disk shows.
            "storage": {
                "state": "error" if self._held or self._storage_error else "ready",
                "last_error": self._held or self._storage_error,
            },
            "orders": {"alerting": 0, "missed_today": 0},
            "payments_today": await self._jn().payments_today(now),
        }

    async def totals(self, date: datetime.date) -> dict[str, object]:
        raw = await self._jn().totals(date)
        purchases: dict[str, dict[str, dict[str, int]]] = raw["purchases"]  # type: ignore[assignment]
        refunds: dict[str, dict[str, dict[str, int]]] = raw["refunds"]  # type: ignore[assignment]
        approved = {"count": 0, "amount": 0, "charged": 0}
        for by_state in purchases.values():
            for state, sums in by_state.items():
                if state in SUCCESS_STATES:
                    for key in approved:
                        approved[key] += sums[key]
        refunded = {"count": 0, "amount": 0}
        for by_state in refunds.values():
            done = by_state.get(APPROVED)
            if done is not None:
                refunded["count"] += done["count"]
                refunded["amount"] += done["charged"]
        return {
            "date": date.isoformat(),
            "currency": raw.get("currency", "KRW"),
            "by_method": purchases,
            "approved": approved,
            "refunded": refunded,
            "net_charged": approved["charged"] - refunded["amount"],
        }

    async def saf(self) -> list[dict[str, object]]:
        queue: list[dict[str, object]] = []
        for entry in await self._jn().saf_pending():
            full = entry.to_json()
            # A QR payment has no masked card number: what it names is an account.
            shown = "account_last4" if entry.masked_pan is None else "card_last4"
            queue.append(
                {
                    "payment_id": entry.payment_id,
                    "kind": entry.kind,
                    "mti": entry.mti,
                    "amount": entry.amount,
                    "stan": full["stan"],
                    shown: entry.last4,
                    "queued_at": full["created_at"],
                    "attempts": entry.attempts,
                    "last_error": entry.last_error,
                    "needs_attention": entry.needs_attention,
                    "refused_code": entry.refused_code,
                }
            )
        return queue

    async def saf_flush(self) -> dict[str, object]:
        if not self._ledger.is_up():
            raise DeviceNotReady("the ledger link is down; the queue is forwarded once it is up")
        return await self._forwarder.flush()

    # ---- QR scanners ----------------------------------------------------------------------

    def on_scan(self, text: str) -> None:
        """Given to the scanner drivers: one call per complete code read."""
        if len(text) >= _SHORTEST_SECRET:
            register_secret(text, transient=True)
        waiting = self._waiting
        if waiting is None or not waiting.accepts_qr or waiting.qr.done() or waiting.deciding:
            log.info("QR code scanned with no payment waiting for one: ignored")
            return
        waiting.qr.set_result(text)

    # ---- the flow -------------------------------------------------------------------------

    async def _drive(self, rec: PaymentRecord, waiting: _Waiting) -> None:
        card_taken = False
        self._card_open = False
        try:
            got = await self._wait_for_payer(rec, waiting)
            waiting.deciding = True
            card_taken = isinstance(got, CardData)
            self._card_open = isinstance(got, CardData) and got.entry_mode == "chip"
            if waiting.read is not None and not card_taken:
                # Stopped at once, so the reader is not still reading while a QR pays; the
                # rest of the stop (and a Z3 for a chip card it read) is in `finally`.
                waiting.read.cancel()
            if isinstance(got, _Cancelled):
                rec = await self._jn().transition(rec.payment_id, CANCELLED, self._now())
                self._publish(rec)
                return
            waiting.decided.set()
            if isinstance(got, str):
                await self._qr_payment(rec, got)
            elif isinstance(got, CardData):
                await self._card_payment(rec, got)
            elif isinstance(got, _CardFailed):
                await self._decline_here(rec, got.reason)
            else:
                await self._decline_here(rec, "timeout")
        except Exception as exc:
            # A bug here, or a journal that cannot write (disk full), must not leave the
            # reader held, the card's transaction open, nor a 0200 without its answer.
            _log_failure(exc, f"payment {rec.payment_id} failed")
            self._note_storage(exc)
            try:
                await self._settle_failed(rec)
            finally:
                if self._card_open:
                    await self._tell_card(ARC_LEDGER_NOT_REACHED)
        finally:
            waiting.decided.set()
            try:
                if waiting.read is not None and not card_taken:
                    await self._stop_read(waiting.read)
            finally:
                if self._waiting is waiting:
                    self._waiting = None
                waiting.settled.set()

    async def _settle_failed(self, rec: PaymentRecord) -> None:
        """Settles a payment whose flow failed, as start-up recovery would. If the journal
        cannot take that either, the engine is held (no new payment) and stops, so that the
        supervisor's restarts retry through `recover`."""
        try:
            rec = await self._refresh(rec)
            if rec.state == WAITING_FOR_CARD:
                await self._decline_now(rec, "internal_error")
            elif rec.state == AUTHORIZING:
                await self._reverse(rec, "internal_error", publish=True)
            elif rec.payment_id in self._owed:
                await self._reverse_owed(rec, publish=True)
        except Exception as exc:
            _log_failure(exc, f"payment {rec.payment_id} could not be settled")
            self._note_storage(exc)
            self._hold(f"payment {rec.payment_id} ({rec.state}): {_why(exc)}")
            self._halt.set()

    async def _wait_for_payer(self, rec: PaymentRecord, waiting: _Waiting) -> _Payer:
        """The first card read or QR text; the card side's failure or None when nothing
        could pay in time; _CANCELLED when the POS cancelled first."""
        if waiting.cancel_asked.is_set():
            return _CANCELLED
        if waiting.accepts_card and self.reader is not None:
            waiting.read = asyncio.create_task(
                self.reader.read_card(rec.charged, ALL_MODES, self.read_timeout_s),
                name=f"card read {rec.payment_id}",
            )
        cancel: asyncio.Future[object] = asyncio.ensure_future(waiting.cancel_asked.wait())
        watched = {cancel}
        if waiting.read is not None:
            watched.add(cast("asyncio.Future[object]", waiting.read))
        if waiting.accepts_qr:
            watched.add(cast("asyncio.Future[object]", waiting.qr))
        card_failed: _CardFailed | None = None
        try:
            async with asyncio.timeout(self.read_timeout_s + _READER_TIMEOUT_GRACE_S):
                while True:
                    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                    if cancel in done:
                        return _CANCELLED
                    if waiting.qr in done:
                        return waiting.qr.result()
                    assert waiting.read is not None and waiting.read in done
                    read = self._read_outcome(waiting.read)
                    if isinstance(read, CardData) or not waiting.accepts_qr:
                        return read
                    log.info(
                        "payment %s: card side ended (%s); still waiting for a QR",
                        rec.payment_id,
                        read.reason,
                    )
                    card_failed = read
                    watched.discard(cast("asyncio.Future[object]", waiting.read))
        except TimeoutError:
            return card_failed
        finally:
            cancel.cancel()

    def _read_outcome(self, read: asyncio.Task[CardData | ReadFailure]) -> CardData | _CardFailed:
        exc = read.exception()
        if exc is not None:
            if isinstance(exc, self.reader_errors):
                log.warning("card reader failed during a read: %s", exc)
                return _CardFailed("reader_error")
            raise exc
        got = read.result()
        if isinstance(got, CardData):
            return got
        return _CardFailed(read_failed_reason(got.reason))

    async def _stop_read(self, read: asyncio.Task[CardData | ReadFailure]) -> None:
        """Ends a card read whose result is not used; a chip card it read is told Z3."""
        for _ in range(_STOP_READ_ROUNDS):
            if read.done():
                break
            read.cancel()
            await asyncio.wait([read], timeout=_STOP_READ_GRACE_S)
        if not read.done():
            log.warning("card read still running after %d CANCELs", _STOP_READ_ROUNDS)
            read.add_done_callback(_consume_outcome)
            return
        if read.cancelled():
            return
        exc = read.exception()
        if exc is not None:
            if not isinstance(exc, self.reader_errors):
                log.error("card read failed", exc_info=exc)
            return
        got = read.result()
        if isinstance(got, CardData) and got.entry_mode == "chip":
            log.info(
                "chip card %s read but not used: its transaction ends with Z3", mask_pan(got.pan)
            )
            await self._tell_card(ARC_LEDGER_NOT_REACHED)

    async def _card_payment(self, rec: PaymentRecord, read: CardData) -> None:
        chip = read.entry_mode == "chip"
        if not prefix_accepted(read.pan, self._config.card_reader.accepted_prefixes):
            log.info("card %s not accepted here", mask_pan(read.pan))
            await self._decline_here(rec, "card_not_accepted", chip=chip)
            return
        today = datetime.datetime.fromtimestamp(self._now()).date()
        if card_expired(read.expiry, today):
            await self._decline_here(rec, "card_expired", chip=chip)
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
            await self._decline_here(rec, "card_error", chip=chip)
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
            await self._decline_here(rec, "card_error", chip=chip)
            return
        self._publish(rec)
        await self._authorize(rec, self._purchase(rec, payer), card=read)

    async def _qr_payment(self, rec: PaymentRecord, text: str) -> None:
        now = self._now()
        verdict = verify_qr(text, self._config.qr.platform_keys, int(now))
        if isinstance(verdict, QrRejected):
            log.info("QR refused: %s %s", verdict.reason, verdict.detail)
            await self._decline_here(rec, verdict.reason)
            return
        payer = QrPayer(verdict.account, verdict.text)
        try:
            self._check_purchase(rec, payer)
        except LedgerFormatError as exc:
            log.warning("payment %s: QR makes no valid 0200 (%s)", rec.payment_id, exc)
            await self._decline_here(rec, "qr_unreadable")
            return
        if not await self._jn().use_qr_nonce(verdict.nonce, now):
            await self._decline_here(rec, "qr_replayed")
            return
        secrets = CardSecrets(entry_mode="qr", pan=verdict.account, qr_text=verdict.text)
        try:
            rec = await self._jn().begin_authorization(rec.payment_id, secrets, self._now())
        except InvalidArgument as exc:
            log.warning("payment %s: QR refused: %s", rec.payment_id, exc)
            await self._decline_here(rec, "qr_unreadable")
            return
        self._publish(rec)
        await self._authorize(rec, self._purchase(rec, payer), card=None)

    async def _authorize(
        self, rec: PaymentRecord, request: LedgerRequest, *, card: CardData | None
    ) -> PaymentRecord:
        """Sends the 0200 (or decides offline) for a payment already in authorizing."""
        chip = card is not None and card.entry_mode == "chip"
        if not self._ledger.is_up():
            return await self._offline(rec, request, chip=chip)
        try:
            response = await self._ledger.send(request, self._config.ledger.timeout_s)
        except LedgerUnavailable:
            # Nothing went out: the ledger never saw this STAN.
            return await self._offline(rec, request, chip=chip)
        except LedgerTimeout:
            return await self._fail_unanswered(rec, "ledger_timeout", chip=chip)
        except LedgerSecurityError:
            log.error("payment %s: the ledger's answer had a wrong MAC", rec.payment_id)
            return await self._fail_unanswered(rec, "ledger_security", chip=chip)
        return await self._answered(rec, response, chip=chip)

    async def _answered(
        self, rec: PaymentRecord, response: LedgerResponse, *, chip: bool
    ) -> PaymentRecord:
        if not chip or response.response_code != "00":
            rec = await self._record_answer(rec, response, keep_card_data=False)
            self._publish(rec)
            if chip:
                await self._tell_card(response.response_code)
            return rec
        self._card_deciding.add(rec.payment_id)
        try:
            rec = await self._record_answer(rec, response, keep_card_data=True)
            try:
                result = await self._complete(response.response_code)
            except self.reader_errors:
                self._owed[rec.payment_id] = "reader_error"
                return await self._reverse_owed(rec, publish=True)
            if not result.approved:
                self._owed[rec.payment_id] = "card_declined"
                return await self._reverse_owed(rec, publish=True)
            await self._jn().drop_card_data(rec.payment_id)
        finally:
            self._card_deciding.discard(rec.payment_id)
        self._publish(rec)
        return rec

    async def _record_answer(
        self, rec: PaymentRecord, response: LedgerResponse, *, keep_card_data: bool
    ) -> PaymentRecord:
        return await self._jn().record_answer(
            rec.payment_id,
            response_code=response.response_code,
            rrn=response.rrn,
            auth_code=response.auth_code,
            decline_reason=response.decline_reason,
            keep_card_data=keep_card_data,
            now=self._now(),
        )

    async def _offline(
        self, rec: PaymentRecord, request: LedgerRequest, *, chip: bool
    ) -> PaymentRecord:
        if rec.kind == "refund":
            return await self._decline_now(rec, "ledger_unavailable")
        # The limits are checked, and approve_offline applies them, at one `now`: with one
        # payment at a time nothing between can make them disagree.
        now = self._now()
        if chip:
            # Before the card is asked: a card told Z3 may approve offline (TC), and posd must
            # not then decline what the card approved.
            exposure = await self._jn().offline_exposure(rec.payment_id, now)
            refusal = offline_refusal(self._config.offline, rec.charged, exposure)
            if refusal is not None:
                return await self._offline_refused(rec, refusal, chip=True)
            try:
                result = await self._complete(ARC_LEDGER_NOT_REACHED)
            except self.reader_errors:
                return await self._decline_now(rec, "reader_error")
            if not result.approved:
                return await self._decline_now(rec, "card_declined")
        auth_code = offline_auth_code(rec.stan or 0)
        outcome = await self._jn().approve_offline(
            rec.payment_id,
            auth_code=auth_code,
            fields=request_fields(build_advice(request, auth_code)),
            limits=self._config.offline,
            now=now,
        )
        if isinstance(outcome, OfflineRefused):
            if chip:
                log.error(
                    "payment %s: the card approved offline but the journal refused (%s)",
                    rec.payment_id,
                    outcome.reason,
                )
            return await self._offline_refused(rec, outcome.reason, chip=False)
        self._publish(outcome)
        self._forwarder.wake()
        return outcome

    async def _offline_refused(
        self, rec: PaymentRecord, reason: str, *, chip: bool
    ) -> PaymentRecord:
        log.info(
            "payment %s: ledger unreachable and offline approval refused (%s)",
            rec.payment_id,
            reason,
        )
        return await self._decline_here(rec, "ledger_unavailable", chip=chip)

    async def _fail_unanswered(
        self, rec: PaymentRecord, reason: str, *, chip: bool
    ) -> PaymentRecord:
        rec = await self._reverse(rec, reason, publish=True)
        if chip:
            await self._tell_card(ARC_LEDGER_NOT_REACHED)
        return rec

    async def _reverse(
        self, rec: PaymentRecord, reason: str, *, publish: bool = False
    ) -> PaymentRecord:
        now = self._now()
        stan = await self._jn().allocate_stan(now)
        terminal = self._config.terminal
        reversal = reversal_of(
            rec, stan=stan, now=now, terminal_id=terminal.id, merchant_id=terminal.merchant_id
        )
        rec, _ = await self._jn().start_reversal(
            rec.payment_id,
            fields=request_fields(reversal),
            stan=stan,
            now=now,
            decline_reason=reason,
        )
        if publish:
            self._publish(rec)
        self._forwarder.wake()
        return rec

    async def _reverse_owed(self, rec: PaymentRecord, *, publish: bool) -> PaymentRecord:
        """Reverses an approval the card refused (see `_owed`), unless already reversing."""
        reason = self._owed[rec.payment_id]
        if rec.state == APPROVED:
            rec = await self._reverse(rec, reason, publish=publish)
            log.warning(
                "payment %s: approved by the ledger, not by the card (%s): reversal queued",
                rec.payment_id,
                reason,
            )
        del self._owed[rec.payment_id]
        return rec

    async def _decline_here(
        self, rec: PaymentRecord, reason: str, *, chip: bool = False
    ) -> PaymentRecord:
        """Declined at the counter, before the ledger was asked; a chip card is then told Z3
        so that its transaction ends."""
        rec = await self._decline_now(rec, reason)
        if chip:
            await self._tell_card(ARC_LEDGER_NOT_REACHED)
        return rec

    async def _decline_now(self, rec: PaymentRecord, reason: str) -> PaymentRecord:
        rec = await self._jn().transition(
            rec.payment_id, DECLINED, self._now(), decline_reason=reason
        )
        self._publish(rec)
        return rec

    async def _complete(self, arc: str) -> CardVerdict:
        """COMPLETE to the card: one per transaction, even if it fails on the way."""
        reader = self._reader_or_raise()
        self._card_open = False
        return await reader.complete(arc, b"")

    async def _tell_card(self, arc: str) -> None:
        """Ends the card's transaction after a decline; its own verdict changes nothing."""
        if self.reader is None:
            return
        try:
            await self._complete(arc)
        except self.reader_errors:
            log.info("reader gone before COMPLETE %s; the card ends its transaction itself", arc)

    # ---- helpers --------------------------------------------------------------------------

    def _purchase(self, rec: PaymentRecord, payer: CardPayer | QrPayer) -> LedgerRequest:
        """The 0200 of a payment in authorizing, with the STAN and field 7 the journal gave
        it (begin_authorization stamps field 7 and updated_at together)."""
        assert rec.stan is not None
        return self._build_purchase(rec, payer, rec.stan, rec.updated_at / 1000)

    def _check_purchase(self, rec: PaymentRecord, payer: CardPayer | QrPayer) -> None:
        """Raises LedgerFormatError if the payer's data cannot make a 0200. The journal gives
        the STAN only as it records authorizing, so this one is built with a stand-in: the
        STAN and times cannot make a 0200 invalid, the card or QR data can."""
        self._build_purchase(rec, payer, STAN_MIN, self._now())

    def _build_purchase(
        self, rec: PaymentRecord, payer: CardPayer | QrPayer, stan: int, at: float
    ) -> LedgerRequest:
        terminal = self._config.terminal
        return build_purchase(
            stan=stan,
            transmitted_at=_utc(at),
            local_now=_local(at),
            amount=rec.charged,
            terminal_id=terminal.id,
            merchant_id=terminal.merchant_id,
            payer=payer,
            benefit_rate_bps=rec.benefit_plus_rate_bps or None,
            discount=rec.discount or None,
        )

    async def _refund_request(self, rec: PaymentRecord) -> LedgerRequest:
        """The 0200 refund of a refund payment (created in authorizing), from the journal."""
        assert rec.stan is not None and rec.original_payment_id is not None
        created = rec.updated_at / 1000
        original = await self._jn().get(rec.original_payment_id)
        assert original is not None and original.stan is not None
        assert original.field7 is not None and original.rrn is not None
        terminal = self._config.terminal
        return build_refund(
            stan=rec.stan,
            transmitted_at=_utc(created),
            local_now=_local(created),
            amount=rec.charged,
            terminal_id=terminal.id,
            merchant_id=terminal.merchant_id,
            # An offline approval reached the ledger as its 0220 advice.
            original=OriginalData(
                "0220" if original.offline else "0200", original.stan, original.field7
            ),
            rrn=original.rrn,
        )

    async def _previous_finished(self) -> None:
        """A payment the customer has their answer for may still be ending the card's
        transaction (COMPLETE); the next payment waits for that rather than get a 409."""
        waiting = self._waiting
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
        if self._waiting is not None:
            raise PaymentConflict(
                f"payment {self._waiting.payment_id} is still waiting for a card or QR"
            )
        card_ok = method in ("card", "any") and self._reader_ready()
        qr_ok = method in ("qr", "any") and self._scanner_ready()
        if not (card_ok or qr_ok):
            what = {"card": "card reader", "qr": "QR scanner"}.get(method, "reader or scanner")
            raise DeviceNotReady(f"the {what} is not ready")

    def _reader_ready(self) -> bool:
        return self.reader is not None and self.reader.state == "ready"

    def _scanner_ready(self) -> bool:
        return self.scanner is not None and self.scanner.state == "ready"

    def _reader_or_raise(self) -> CardReaderPort:
        if self.reader is None:
            raise ReaderMissing("no card reader configured")
        return self.reader

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

    def _view(self, rec: PaymentRecord) -> PaymentView:
        undecided = rec.payment_id in self._card_deciding or rec.payment_id in self._owed
        if undecided and rec.state == APPROVED:
            return PaymentView(rec, shown_state=AUTHORIZING)
        return PaymentView(rec)

    def _publish(self, rec: PaymentRecord) -> None:
        self._hub.publish("payment", "payment", PaymentView(rec).to_json())

    def _jn(self) -> Journal:
        try:
            return self._journal()
        except JournalNotOpen as exc:
            raise DeviceNotReady(str(exc)) from None

    def _now(self) -> float:
        # Whole milliseconds: the journal stores ms, and field 7 must be the same second
        # whether it is computed here or there.
        return round(self._clock() * 1000) / 1000


def reversal_of(
    rec: PaymentRecord, *, stan: int, now: float, terminal_id: str, merchant_id: str
) -> LedgerRequest:
    """The 0400 reversing a payment's 0200, from its journal row alone: field 90 names the
    0200 by its STAN and field 7, as the ledger finds it. No card data: field 2 is optional in
    a 0400, and nothing a card or QR held can then stand in the way of a reversal."""
    if rec.stan is None or rec.field7 is None:
        raise ValueError(f"payment {rec.payment_id} never had a 0200 to reverse")
    local_time, local_date = local_fields(_local(now))
    entry_mode = rec.entry_mode if rec.entry_mode in ENTRY_MODE_CODES else None
    return LedgerRequest(
        mti="0400",
        kind="refund" if rec.kind == "refund" else "purchase",
        stan=stan,
        transmission=field7(_utc(now)),
        local_time=local_time,
        local_date=local_date,
        amount=rec.charged,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        entry_mode=entry_mode,  # type: ignore[arg-type]
        rrn=rec.rrn,
        auth_code=rec.auth_code,
        original=OriginalData("0200", rec.stan, rec.field7),
    )


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


def _consume_outcome(task: asyncio.Task[CardData | ReadFailure]) -> None:
    # A read left to end by itself: its error is logged here, not as "never retrieved".
    if not task.cancelled() and task.exception() is not None:
        log.info("an abandoned card read ended: %s", task.exception())


def _utc(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, tz=datetime.UTC)


def _local(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now).astimezone()
