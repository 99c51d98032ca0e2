"""A payment's authorization and how it ends: the 0200 sent (or the offline decision taken),
the answer recorded, a chip card told COMPLETE, a reversal queued, a decline at the counter.
Each outcome is in the journal before it is published.

The engine's module doc lists the decisions taken here (a wrong MAC, a chip card that refuses
what the ledger approved, the offline limits checked before the card is asked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from posd.config import Config
from posd.journal import (
    AUTHORIZING,
    DECLINED,
    OFFLINE_DISABLED,
    OFFLINE_LIMIT,
    Journal,
    JournalHolder,
    JournalNotOpen,
    OfflineRefused,
    PaymentRecord,
    offline_refusal,
)
from posd.ledger import LedgerSecurityError, LedgerTimeout, LedgerUnavailable
from posd.payments import requests
from posd.payments.counter import Counter
from posd.payments.ports import CardData, LedgerPort
from posd.payments.rules import ARC_HOST_DECLINED, ARC_LEDGER_NOT_REACHED
from posd.payments.saf import SafForwarder, request_fields
from posd.payments.service import DeviceNotReady
from posd.payments.view import PaymentView
from posd.runtime import failpoint
from protocols.ber_tlv import TlvError, decode_tlv, find_tag
from protocols.ledger_fields import offline_auth_code
from protocols.ledger_messages import LedgerFormatError, LedgerRequest, LedgerResponse, build_advice

log = logging.getLogger(__package__)

LEDGER_UNAVAILABLE = "ledger_unavailable"
# Where the offline rules leave the ICC's cryptogram (contactless needs both to go offline).
_CRYPTOGRAM_TAGS = (0x9F26, 0x9F27)


def offline_unfit(request: LedgerRequest) -> str | None:
    """Why a payer can never be approved offline, whatever the limits, or None. Magstripe:
    never (nothing on a stripe proves the card). Contactless: only with the card's
    cryptogram (9F26 and 9F27 in its ICC data). Chip: the card decides offline itself (Z3).
    QR: the token was fully verified offline at the counter (signature, key, times, nonce)
    before it got here, or it would not have."""
    if request.entry_mode == "magstripe":
        return "magstripe is never approved offline"
    if request.entry_mode == "contactless":
        try:
            items = decode_tlv(request.icc or b"")
        except TlvError:
            items = []
        if not all((tag := find_tag(items, t)) is not None and tag.value for t in _CRYPTOGRAM_TAGS):
            return "a contactless card without its cryptogram (9F26, 9F27) is not approved offline"
    return None


class Authorizer:
    """Authorizes the engine's payments and settles them; shares the engine's journal,
    ledger link, SAF sender, counter and event stream (`publish`)."""

    def __init__(
        self,
        config: Config,
        journal: JournalHolder,
        ledger: LedgerPort,
        forwarder: SafForwarder,
        counter: Counter,
        *,
        publish: Callable[[PaymentRecord], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._journal = journal
        self._ledger = ledger
        self._forwarder = forwarder
        self._counter = counter
        self._publish = publish
        self._clock = clock
        # Chip approvals the card refused (or the reader lost) whose reversal the journal has
        # not taken yet (disk full): payment id -> decline reason, for the reversal that
        # `reverse_undecided` retries. Only the reason is kept here: that the card never
        # took the approval is on disk (PaymentRecord.card_undecided).
        self.owed: dict[str, str] = {}

    def journal(self) -> Journal:
        """The open journal; while it is not open, DeviceNotReady (the API's 503)."""
        try:
            return self._journal()
        except JournalNotOpen as exc:
            raise DeviceNotReady(str(exc)) from None

    def now(self) -> float:
        # Whole milliseconds: the journal stores ms, and field 7 must be the same second
        # whether it is computed here or there.
        return round(self._clock() * 1000) / 1000

    def view(self, rec: PaymentRecord) -> PaymentView:
        """The payment as the POS sees it: a ledger approval the card has not confirmed (or
        has refused, the reversal still owed) is still authorizing."""
        if rec.card_undecided:
            return PaymentView(rec, shown_state=AUTHORIZING)
        return PaymentView(rec)

    async def authorize(
        self, rec: PaymentRecord, request: LedgerRequest, *, card: CardData | None
    ) -> PaymentRecord:
        """Sends the 0200 (or decides offline) for a payment already in authorizing."""
        chip = card is not None and card.entry_mode == "chip"
        if not self._ledger.is_up():
            return await self._offline(rec, request, chip=chip)
        failpoint("payments.before_0200")
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
                await self._counter.tell_card(response.response_code, response.issuer_data)
            return rec
        # Kept card data journals the COMPLETE window (card_undecided) before COMPLETE goes
        # out: a posd that stops in it reverses the approval when it starts again.
        rec = await self._record_answer(rec, response, keep_card_data=True)
        try:
            result = await self._counter.complete(response.response_code, response.issuer_data)
        except self._counter.reader_errors:
            self.owed[rec.payment_id] = "reader_error"
            return await self.reverse_undecided(rec, publish=True)
        if not result.approved:
            self.owed[rec.payment_id] = "card_declined"
            return await self.reverse_undecided(rec, publish=True)
        rec = await self.journal().drop_card_data(rec.payment_id)
        self._publish(rec)
        return rec

    async def _record_answer(
        self, rec: PaymentRecord, response: LedgerResponse, *, keep_card_data: bool
    ) -> PaymentRecord:
        return await self.journal().record_answer(
            rec.payment_id,
            response_code=response.response_code,
            rrn=response.rrn,
            auth_code=response.auth_code,
            decline_reason=response.decline_reason,
            keep_card_data=keep_card_data,
            now=self.now(),
        )

    async def _offline(
        self, rec: PaymentRecord, request: LedgerRequest, *, chip: bool
    ) -> PaymentRecord:
        if rec.kind == "refund":
            return await self.decline_now(rec, LEDGER_UNAVAILABLE)
        unfit = offline_unfit(request)
        if unfit is not None:
            log.info("payment %s: ledger unreachable, and %s", rec.payment_id, unfit)
            return await self.decline_now(rec, LEDGER_UNAVAILABLE)
        # The limits are checked, and approve_offline applies them, at one `now`: with one
        # payment at a time nothing between can make them disagree.
        now = self.now()
        auth_code = offline_auth_code(rec.stan or 0)
        tc: bytes | None = None
        if chip:
            # Before the card is asked: a card told Z3 may approve offline (TC), and posd must
            # not then decline what the card approved.
            exposure = await self.journal().offline_exposure(rec.payment_id, now)
            refusal = offline_refusal(self._config.offline, rec.charged, exposure)
            if refusal is not None:
                return await self._offline_refused(rec, refusal, chip=True)
            try:
                result = await self._counter.complete(ARC_LEDGER_NOT_REACHED)
            except self._counter.reader_errors:
                return await self.decline_now(rec, "reader_error")
            if not result.approved:
                return await self.decline_now(rec, "card_declined")
            tc = result.tlv
        try:
            # A chip card's advice carries its TC (COMPLETE_RESULT) where the 0200 had the
            # ARQC; journaled (sealed, in the queue) only now that the card has answered.
            advice = build_advice(request, auth_code, tc=tc)
        except LedgerFormatError as exc:
            # The card approved offline, but what it gave proves nothing to the ledger (no
            # TC, or 55 no longer fits): no advice can be made, so no offline approval.
            log.warning(
                "payment %s: no advice can carry the card's answer: %s", rec.payment_id, exc
            )
            return await self.decline_now(rec, "card_error")
        outcome = await self.journal().approve_offline(
            rec.payment_id,
            auth_code=auth_code,
            fields=request_fields(advice),
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
        # Any limit is `offline_limit` for the POS (the log above names which one); with
        # offline approval switched off, the ledger simply was not reached.
        shown = LEDGER_UNAVAILABLE if reason == OFFLINE_DISABLED else OFFLINE_LIMIT
        return await self.decline_here(rec, shown, chip=chip)

    async def _fail_unanswered(
        self, rec: PaymentRecord, reason: str, *, chip: bool
    ) -> PaymentRecord:
        rec = await self.reverse(rec, reason, publish=True)
        if chip:
            # Not Z3: posd never approves offline a 0200 that went out, so the card must not.
            await self._counter.tell_card(ARC_HOST_DECLINED)
        return rec

    async def reverse(
        self, rec: PaymentRecord, reason: str, *, publish: bool = False
    ) -> PaymentRecord:
        now = self.now()
        stan = await self.journal().allocate_stan(now)
        reversal = requests.reversal(rec, self._config.terminal, stan=stan, now=now)
        rec, _ = await self.journal().start_reversal(
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

    async def reverse_undecided(self, rec: PaymentRecord, *, publish: bool) -> PaymentRecord:
        """Reverses a ledger approval the card did not take (card_undecided): refused (AAC),
        or no COMPLETE_RESULT (reader lost, or posd stopped before it came: reader_error,
        the same outcome with or without a crash)."""
        reason = self.owed.get(rec.payment_id, "reader_error")
        rec = await self.reverse(rec, reason, publish=publish)
        log.warning(
            "payment %s: approved by the ledger, not by the card (%s): reversal queued",
            rec.payment_id,
            reason,
        )
        self.owed.pop(rec.payment_id, None)
        return rec

    async def decline_here(
        self, rec: PaymentRecord, reason: str, *, chip: bool = False
    ) -> PaymentRecord:
        """Declined at the counter, before the ledger was asked; a chip card is then told Z1
        (declined by the host), so that its transaction ends with an AAC."""
        rec = await self.decline_now(rec, reason)
        if chip:
            await self._counter.tell_card(ARC_HOST_DECLINED)
        return rec

    async def decline_now(self, rec: PaymentRecord, reason: str) -> PaymentRecord:
        rec = await self.journal().transition(
            rec.payment_id, DECLINED, self.now(), decline_reason=reason
        )
        self._publish(rec)
        return rec
