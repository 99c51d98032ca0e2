"""The counter: the card reader and the QR scanner, and the one payment waiting at them for a
payer (a card read or a scanned QR), until one pays, the POS cancels or the time is up.

Decisions the engine relies on (its module doc lists the rest):
- Method `any`: a card side that fails (reader gone, READ_FAILED) leaves the QR side waiting
  until the read timeout; the card side's reason is kept for the decline if nothing pays.
- A card read whose result is not used (a QR or a cancel came first) is cancelled at once,
  again if the first CANCEL went unheeded, and a chip card it read is told `Z1` (declined by
  the host), so its transaction ends.
- Every card transaction gets one COMPLETE, even when it fails on the way; one after a ledger
  answer carries the issuer data of its 0210 (91, 71, 72), as reader-link.md says.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import cast

from posd.logs import register_secret
from posd.payments.ports import CardData, CardReaderPort, CardVerdict, ReadFailure, ScannerPort
from posd.payments.rules import ARC_HOST_DECLINED, read_failed_reason
from protocols.emv import mask_pan

log = logging.getLogger(__package__)

ALL_MODES = 0b111  # chip, contactless, magstripe
READ_TIMEOUT_S = 60
_SHORTEST_SECRET = 6
# The reader ends its own read at timeout_s (READ_FAILED timeout); this only bounds a reader
# that never answers, and a QR-only wait.
_READER_TIMEOUT_GRACE_S = 2
# A card read nobody needs is cancelled again after this long, in case a cancellation is lost
# on its way through the driver (Python 3.11's wait_for could drop one; the driver no longer
# uses it). Cancelling a second time during the driver's own CANCEL exchange is harmless: the
# CANCEL frame is already on the link, ahead of anything sent next.
_STOP_READ_GRACE_S = 1.0
_STOP_READ_ROUNDS = 5


class ReaderMissing(Exception):
    """A chip card's COMPLETE is due and there is no reader object at all."""


@dataclass(frozen=True)
class CardFailed:
    """The card side ended without a card; `reason` is the decline reason at the counter."""

    reason: str


class Cancelled:
    """The POS cancelled the payment while it waited."""


CANCELLED = Cancelled()
# What the wait ends with: a card read, a QR text, the card side's failure, a cancel, or None
# when nothing could pay in time.
Payer = CardData | str | CardFailed | Cancelled | None


@dataclass
class Waiting:
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


class Counter:
    """The reader and scanner of the payment engine, and the payment waiting at them."""

    def __init__(
        self,
        reader: CardReaderPort | None,
        scanner: ScannerPort | None = None,
        *,
        read_timeout_s: int = READ_TIMEOUT_S,
        reader_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        """`reader_errors`: what the reader raises when it is gone or not ready
        (drivers.card_reader.ReaderUnavailable); such a payment is declined reader_error."""
        self.reader = reader
        self.scanner = scanner
        self.read_timeout_s = read_timeout_s
        self.reader_errors: tuple[type[Exception], ...] = (ReaderMissing, *reader_errors)
        self.waiting: Waiting | None = None
        # Whether the card of the payment under way still awaits its COMPLETE.
        self.card_open = False

    def reader_ready(self) -> bool:
        return self.reader is not None and self.reader.state == "ready"

    def scanner_ready(self) -> bool:
        return self.scanner is not None and self.scanner.state == "ready"

    def open(self, payment_id: str, method: str) -> Waiting:
        """The wait of a new payment, which holds the counter until it is settled."""
        waiting = Waiting(
            payment_id,
            accepts_card=method in ("card", "any") and self.reader_ready(),
            accepts_qr=method in ("qr", "any") and self.scanner_ready(),
            qr=asyncio.get_running_loop().create_future(),
        )
        self.waiting = waiting
        return waiting

    def close(self, waiting: Waiting) -> None:
        """The reader and scanner are free for the next payment."""
        if self.waiting is waiting:
            self.waiting = None
        waiting.settled.set()

    def on_scan(self, text: str) -> None:
        """Given to the scanner drivers: one call per complete code read."""
        if len(text) >= _SHORTEST_SECRET:
            register_secret(text, transient=True)
        waiting = self.waiting
        if waiting is None or not waiting.accepts_qr or waiting.qr.done() or waiting.deciding:
            log.info("QR code scanned with no payment waiting for one: ignored")
            return
        waiting.qr.set_result(text)

    async def wait_for_payer(self, waiting: Waiting, amount: int) -> Payer:
        """The first card read or QR text; the card side's failure or None when nothing
        could pay in time; CANCELLED when the POS cancelled first."""
        if waiting.cancel_asked.is_set():
            return CANCELLED
        if waiting.accepts_card and self.reader is not None:
            waiting.read = asyncio.create_task(
                self.reader.read_card(amount, ALL_MODES, self.read_timeout_s),
                name=f"card read {waiting.payment_id}",
            )
        cancel: asyncio.Future[object] = asyncio.ensure_future(waiting.cancel_asked.wait())
        watched = {cancel}
        if waiting.read is not None:
            watched.add(cast("asyncio.Future[object]", waiting.read))
        if waiting.accepts_qr:
            watched.add(cast("asyncio.Future[object]", waiting.qr))
        card_failed: CardFailed | None = None
        try:
            async with asyncio.timeout(self.read_timeout_s + _READER_TIMEOUT_GRACE_S):
                while True:
                    done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                    if cancel in done:
                        return CANCELLED
                    if waiting.qr in done:
                        return waiting.qr.result()
                    assert waiting.read is not None and waiting.read in done
                    read = self._read_outcome(waiting.read)
                    if isinstance(read, CardData) or not waiting.accepts_qr:
                        return read
                    log.info(
                        "payment %s: card side ended (%s); still waiting for a QR",
                        waiting.payment_id,
                        read.reason,
                    )
                    card_failed = read
                    watched.discard(cast("asyncio.Future[object]", waiting.read))
        except TimeoutError:
            return card_failed
        finally:
            cancel.cancel()

    def _read_outcome(self, read: asyncio.Task[CardData | ReadFailure]) -> CardData | CardFailed:
        exc = read.exception()
        if exc is not None:
            if isinstance(exc, self.reader_errors):
                log.warning("card reader failed during a read: %s", exc)
                return CardFailed("reader_error")
            raise exc
        got = read.result()
        if isinstance(got, CardData):
            return got
        return CardFailed(read_failed_reason(got.reason))

    async def stop_read(self, read: asyncio.Task[CardData | ReadFailure]) -> None:
        """Ends a card read whose result is not used; a chip card it read is told Z1."""
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
                "chip card %s read but not used: its transaction ends with Z1", mask_pan(got.pan)
            )
            await self.tell_card(ARC_HOST_DECLINED)

    async def complete(self, arc: str, issuer_data: bytes = b"") -> CardVerdict:
        """COMPLETE to the card: one per transaction, even if it fails on the way.
        `issuer_data`: the 91, 71 and 72 of the ledger's 0210 (BER-TLV), passed on as they
        are; none when no ledger answered."""
        if self.reader is None:
            raise ReaderMissing("no card reader configured")
        self.card_open = False
        return await self.reader.complete(arc, issuer_data)

    async def tell_card(self, arc: str, issuer_data: bytes = b"") -> None:
        """Ends the card's transaction after a decline; its own verdict changes nothing."""
        if self.reader is None:
            return
        try:
            await self.complete(arc, issuer_data)
        except self.reader_errors:
            log.info("reader gone before COMPLETE %s; the card ends its transaction itself", arc)


def _consume_outcome(task: asyncio.Task[CardData | ReadFailure]) -> None:
    # A read left to end by itself: its error is logged here, not as "never retrieved".
    if not task.cancelled() and task.exception() is not None:
        log.info("an abandoned card read ended: %s", task.exception())
