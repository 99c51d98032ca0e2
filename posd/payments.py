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
- While the ledger is unreachable a chip card is told `Z3` first and only a card that
  accepts offline (TC) is approved offline; a refusal beyond the offline limits is declined
  `ledger_unavailable` (the limit that stood in the way is logged).
- Expired cards (5F24) are declined `card_expired` at the counter without asking the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from posd import __version__
from posd.config import Config
from posd.journal import (
    CardSecrets,
    IdempotencyConflict,
    InvalidArgument,
    Journal,
    OfflineRefused,
    PaymentRecord,
    RefundRefused,
)
from posd.journal_model import (
    APPROVED,
    AUTHORIZING,
    CANCELLED,
    DECLINED,
    SUCCESS_STATES,
    WAITING_FOR_CARD,
    mask_pan,
)
from posd.ledger_client import LedgerSecurityError, LedgerTimeout, LedgerUnavailable
from posd.logs import register_secret
from posd.payment_devices import CardData, CardReaderPort, LedgerPort, ReadFailure, ScannerPort
from posd.payment_events import EventHub
from posd.payment_journal import JournalHolder
from posd.payment_rules import (
    ARC_LEDGER_NOT_REACHED,
    benefit_rate_for,
    card_expired,
    prefix_accepted,
    read_failed_reason,
)
from posd.payment_service import (
    DeviceNotReady,
    IdempotencyKeyReused,
    InvalidRequest,
    PaymentConflict,
    UnknownPayment,
    WrongState,
)
from posd.payment_view import PaymentView
from posd.saf_forwarder import SafForwarder, request_fields
from protocols.ledger_messages import (
    CardPayer,
    LedgerRequest,
    LedgerResponse,
    OriginalData,
    QrPayer,
    build_advice,
    build_purchase,
    build_refund,
    build_reversal,
    offline_auth_code,
)
from protocols.qr_token import QrRejected, QrToken, verify_qr

log = logging.getLogger(__name__)

ALL_MODES = 0b111  # chip, contactless, magstripe
READ_TIMEOUT_S = 60
_SHORTEST_SECRET = 6
# The reader ends its own read at timeout_s (READ_FAILED timeout); this only bounds a reader
# that never answers, and a QR-only wait.
_READER_TIMEOUT_GRACE_S = 2
# How long a new payment waits for the previous one's last reader exchange.
FINISHING_S = 5.0


class ReaderMissing(Exception):
    """A chip card's COMPLETE is due and there is no reader object at all."""


@dataclass
class _Waiting:
    """The payment that holds the reader/scanner, while it waits for a card or QR."""

    payment_id: str
    accepts_card: bool
    accepts_qr: bool
    qr: asyncio.Future[str]
    waiter: asyncio.Task[CardData | ReadFailure | str | None] | None = None
    deciding: bool = False
    cancel_requested: bool = False
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
        self._create_lock = asyncio.Lock()
        self._tasks: asyncio.TaskGroup | None = None
        self._started_mono = time.monotonic()
        forwarder.on_settled = self._publish

    # ---- component ------------------------------------------------------------------------

    async def run(self, started: Callable[[], None]) -> None:
        self._started_mono = time.monotonic()
        await self._journal.wait()
        await self.recover()
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                started()
                await asyncio.Event().wait()
        finally:
            self._tasks = None
            self._waiting = None

    async def recover(self) -> None:
        """What a crash left: waiting → cancelled; authorizing → reversal queued."""
        for rec in await self._jn().in_flight():
            if rec.state == WAITING_FOR_CARD:
                rec = await self._jn().transition(
                    rec.payment_id, CANCELLED, self._now(), decline_reason="interrupted"
                )
                log.info("payment %s was waiting for a card at restart: cancelled", rec.payment_id)
            elif rec.state == AUTHORIZING:
                original = await self._original_request(rec)
                rec = await self._reverse(rec, original, "interrupted")
                log.warning(
                    "payment %s had no ledger answer at restart: reversal queued", rec.payment_id
                )
            else:
                continue
            self._publish(rec)
        self._forwarder.wake()

    # ---- PaymentService -------------------------------------------------------------------

    async def create(
        self, amount: int, method: str, idempotency_key: str, benefit_plus: bool
    ) -> PaymentView:
        async with self._create_lock:
            known = await self._jn().by_idempotency_key(idempotency_key)
            if known is None:
                await self._previous_finished()
                self._check_ready(method)
            try:
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
            if not created:
                return PaymentView(rec)
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
        waiting.cancel_requested = True
        if waiting.waiter is not None:
            waiting.waiter.cancel()
        await waiting.settled.wait()
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
        if not created:
            return PaymentView(rec)
        self._publish(rec)
        request = await self._original_request(rec)
        return PaymentView(await self._authorize(rec, request, card=None))

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
        try:
            waiter = asyncio.create_task(self._wait_for_payer(rec, waiting))
            waiting.waiter = waiter
            if waiting.cancel_requested:
                # cancel() came before this task first ran.
                waiter.cancel()
            await asyncio.wait([waiter])
            waiting.deciding = True
            if waiter.cancelled():
                rec = await self._jn().transition(rec.payment_id, CANCELLED, self._now())
                self._publish(rec)
                return
            got = waiter.result()
            if isinstance(got, str):
                await self._qr_payment(rec, got)
            elif isinstance(got, CardData):
                await self._card_payment(rec, got)
            else:
                reason = "timeout" if got is None else read_failed_reason(got.reason)
                await self._decline_here(rec, reason)
        except self.reader_errors:
            rec = await self._refresh(rec)
            if rec.state == WAITING_FOR_CARD:
                await self._decline_here(rec, "reader_error")
        except Exception:
            # A bug here must not leave the reader held nor a 0200 without its answer: the
            # payment is settled the way start-up recovery would settle it.
            log.exception("payment %s failed", rec.payment_id)
            rec = await self._refresh(rec)
            if rec.state == WAITING_FOR_CARD:
                await self._decline_here(rec, "internal_error")
            elif rec.state == AUTHORIZING:
                await self._reverse(
                    rec, await self._original_request(rec), "internal_error", publish=True
                )
        finally:
            if self._waiting is waiting:
                self._waiting = None
            waiting.settled.set()

    async def _wait_for_payer(
        self, rec: PaymentRecord, waiting: _Waiting
    ) -> CardData | ReadFailure | str | None:
        """The first card read or QR text; None when nothing came in time."""
        contenders: list[asyncio.Task[CardData | ReadFailure | str]] = []
        if waiting.accepts_card and self.reader is not None:
            contenders.append(
                asyncio.create_task(
                    self.reader.read_card(rec.charged, ALL_MODES, self.read_timeout_s)
                )
            )
        if waiting.accepts_qr:
            contenders.append(asyncio.ensure_future(waiting.qr))
        try:
            async with asyncio.timeout(self.read_timeout_s + _READER_TIMEOUT_GRACE_S):
                done, _ = await asyncio.wait(contenders, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            return None
        finally:
            for task in contenders:
                task.cancel()
            # A cancelled read sends CANCEL and waits for CANCELLED: the reader is free after.
            await asyncio.gather(*contenders, return_exceptions=True)
        first = done.pop()
        return first.result()

    async def _card_payment(self, rec: PaymentRecord, read: CardData) -> None:
        if not prefix_accepted(read.pan, self._config.card_reader.accepted_prefixes):
            log.info("card %s not accepted here", mask_pan(read.pan))
            await self._decline_here(rec, "card_not_accepted", chip=read.entry_mode == "chip")
            return
        today = datetime.datetime.fromtimestamp(self._now()).date()
        if card_expired(read.expiry, today):
            await self._decline_here(rec, "card_expired", chip=read.entry_mode == "chip")
            return
        secrets = CardSecrets(
            entry_mode=read.entry_mode,
            pan=read.pan,
            expiry=read.expiry,
            track2=read.track2,
            icc=read.tlv if read.entry_mode != "magstripe" else None,
            pan_sequence=read.pan_sequence,
        )
        rec = await self._jn().begin_authorization(rec.payment_id, secrets, self._now())
        self._publish(rec)
        request = await self._original_request(rec, secrets)
        await self._authorize(rec, request, card=read)

    async def _qr_payment(self, rec: PaymentRecord, text: str) -> None:
        now = self._now()
        verdict = verify_qr(text, self._config.qr.platform_keys, int(now))
        if isinstance(verdict, QrRejected):
            log.info("QR refused: %s %s", verdict.reason, verdict.detail)
            await self._decline_here(rec, verdict.reason)
            return
        if not await self._jn().use_qr_nonce(verdict.nonce, now):
            await self._decline_here(rec, "qr_replayed")
            return
        secrets = CardSecrets(entry_mode="qr", pan=verdict.account, qr_text=text)
        rec = await self._jn().begin_authorization(rec.payment_id, secrets, self._now())
        self._publish(rec)
        request = await self._original_request(rec, secrets)
        await self._authorize(rec, request, card=None, qr=verdict)

    async def _authorize(
        self,
        rec: PaymentRecord,
        request: LedgerRequest,
        *,
        card: CardData | None,
        qr: QrToken | None = None,
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
            return await self._fail_unanswered(rec, request, "ledger_timeout", chip=chip)
        except LedgerSecurityError:
            log.error("payment %s: the ledger's answer had a wrong MAC", rec.payment_id)
            return await self._fail_unanswered(rec, request, "ledger_security", chip=chip)
        return await self._answered(rec, request, response, chip=chip)

    async def _answered(
        self, rec: PaymentRecord, request: LedgerRequest, response: LedgerResponse, *, chip: bool
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
                result = await self._reader_or_raise().complete(response.response_code, b"")
            except self.reader_errors:
                return await self._reverse(rec, request, "reader_error", publish=True)
            if not result.approved:
                return await self._reverse(rec, request, "card_declined", publish=True)
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
            rec = await self._jn().transition(
                rec.payment_id, DECLINED, self._now(), decline_reason="ledger_unavailable"
            )
            self._publish(rec)
            return rec
        if chip:
            try:
                result = await self._reader_or_raise().complete(ARC_LEDGER_NOT_REACHED, b"")
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
            now=self._now(),
        )
        if isinstance(outcome, OfflineRefused):
            log.info(
                "payment %s: ledger unreachable and offline approval refused (%s)",
                rec.payment_id,
                outcome.reason,
            )
            return await self._decline_now(rec, "ledger_unavailable")
        self._publish(outcome)
        self._forwarder.wake()
        return outcome

    async def _fail_unanswered(
        self, rec: PaymentRecord, request: LedgerRequest, reason: str, *, chip: bool
    ) -> PaymentRecord:
        rec = await self._reverse(rec, request, reason, publish=True)
        if chip:
            await self._tell_card(ARC_LEDGER_NOT_REACHED)
        return rec

    async def _reverse(
        self, rec: PaymentRecord, original: LedgerRequest, reason: str, *, publish: bool = False
    ) -> PaymentRecord:
        now = self._now()
        stan = await self._jn().allocate_stan(now)
        reversal = build_reversal(
            original,
            stan=stan,
            transmitted_at=_utc(now),
            local_now=_local(now),
            rrn=rec.rrn,
            auth_code=rec.auth_code,
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

    async def _decline_here(self, rec: PaymentRecord, reason: str, *, chip: bool = False) -> None:
        """Declined at the counter, before the ledger was asked."""
        await self._decline_now(rec, reason)
        if chip:
            await self._tell_card(ARC_LEDGER_NOT_REACHED)

    async def _decline_now(self, rec: PaymentRecord, reason: str) -> PaymentRecord:
        rec = await self._jn().transition(
            rec.payment_id, DECLINED, self._now(), decline_reason=reason
        )
        self._publish(rec)
        return rec

    async def _tell_card(self, arc: str) -> None:
        """Ends the card's transaction after a decline; its own verdict changes nothing."""
        if self.reader is None:
            return
        try:
            await self.reader.complete(arc, b"")
        except self.reader_errors:
            log.info("reader gone before COMPLETE %s; the card ends its transaction itself", arc)

    # ---- helpers --------------------------------------------------------------------------

    async def _original_request(
        self, rec: PaymentRecord, secrets: CardSecrets | None = None
    ) -> LedgerRequest:
        """The 0200 of a payment in authorizing, rebuilt exactly from the journal (STAN and
        field 7 as recorded), so a reversal made after a restart names the same message."""
        assert rec.stan is not None and rec.field7 is not None
        # begin_authorization and create_refund stamp field 7 and updated_at together.
        created = rec.updated_at / 1000
        transmitted = _utc(created)
        terminal = self._config.terminal
        if rec.kind == "refund":
            assert rec.original_payment_id is not None
            original = await self._jn().get(rec.original_payment_id)
            assert original is not None and original.stan is not None
            assert original.field7 is not None and original.rrn is not None
            return build_refund(
                stan=rec.stan,
                transmitted_at=transmitted,
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
        if secrets is None:
            secrets = await self._jn().card_data(rec.payment_id)
        assert secrets is not None, "a purchase in authorizing keeps its sealed card data"
        payer: CardPayer | QrPayer
        if secrets.entry_mode == "qr":
            assert secrets.qr_text is not None
            payer = QrPayer(secrets.pan, secrets.qr_text)
        else:
            payer = CardPayer(
                secrets.entry_mode,  # type: ignore[arg-type]
                secrets.pan,
                expiry=secrets.expiry,
                track2=secrets.track2,
                icc=secrets.icc,
            )
        return build_purchase(
            stan=rec.stan,
            transmitted_at=transmitted,
            local_now=_local(created),
            amount=rec.charged,
            terminal_id=terminal.id,
            merchant_id=terminal.merchant_id,
            payer=payer,
            benefit_rate_bps=rec.benefit_plus_rate_bps or None,
            discount=rec.discount or None,
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

    def _view(self, rec: PaymentRecord) -> PaymentView:
        if rec.payment_id in self._card_deciding and rec.state == APPROVED:
            return PaymentView(rec, shown_state=AUTHORIZING)
        return PaymentView(rec)

    def _publish(self, rec: PaymentRecord) -> None:
        self._hub.publish("payment", "payment", PaymentView(rec).to_json())

    def _jn(self) -> Journal:
        return self._journal()

    def _now(self) -> float:
        # Whole milliseconds: the journal stores ms, and field 7 must be the same second
        # whether it is computed here or there.
        return round(self._clock() * 1000) / 1000


def _utc(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, tz=datetime.UTC)


def _local(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now).astimezone()
