"""What the payment flow needs of the reader, scanner and ledger client: narrow interfaces.

drivers.card_reader.CardReader, the QR scanner drivers and posd.ledger.LedgerClient fit these
as they are; the flow depends on nothing else of theirs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from protocols.ledger_messages import LedgerRequest, LedgerResponse


@runtime_checkable
class CardData(Protocol):
    """A card read (drivers.card_reader.CardRead)."""

    @property
    def entry_mode(self) -> str: ...
    @property
    def pan(self) -> str: ...
    @property
    def expiry(self) -> str | None: ...
    @property
    def track2(self) -> str | None: ...
    @property
    def tlv(self) -> bytes: ...
    @property
    def pan_sequence(self) -> int | None: ...


class ReadFailure(Protocol):
    """A read that ended without a card (drivers.card_reader.ReadFailed)."""

    @property
    def reason(self) -> str: ...


class CardVerdict(Protocol):
    """The card's COMPLETE_RESULT (drivers.card_reader.CompleteResult): its decision, and its
    BER-TLV (9F26, 9F27, 95, 9B: the TC of an approval)."""

    @property
    def approved(self) -> bool: ...
    @property
    def tlv(self) -> bytes: ...


class ReaderInfoLike(Protocol):
    @property
    def firmware(self) -> str: ...


class CardReaderPort(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def port(self) -> str | None: ...
    @property
    def info(self) -> ReaderInfoLike | None: ...

    async def read_card(
        self, amount: int, modes: int, timeout_s: int
    ) -> CardData | ReadFailure: ...

    async def complete(self, arc: str, issuer_data: bytes) -> CardVerdict: ...


class ScannerPort(Protocol):
    @property
    def state(self) -> str: ...


class LedgerPort(Protocol):
    @property
    def link(self) -> str: ...
    @property
    def last_rtt_ms(self) -> float | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def clock_skew_s(self) -> float | None: ...

    def is_up(self) -> bool: ...

    async def wait_up(self) -> None: ...

    async def send(self, message: LedgerRequest, timeout_s: float) -> LedgerResponse: ...
