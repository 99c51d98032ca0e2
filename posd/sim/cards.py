"""Named test cards for the simulated reader, and the EMV data a reader sends for them.

The card numbers of 서로e음 cards are the reference ledger's own
(posd.sim.ledger_accounts is the one table of them), so a card presented
here meets the matching account there: approved, insufficient funds,
expired. The foreign card's BIN is not 서로e음's, so posd declines it at the
counter without asking the ledger.
"""

from __future__ import annotations

import calendar
import datetime
import hashlib
from dataclasses import dataclass
from typing import Literal

from posd.sim.ledger_accounts import EXPIRED_CARD, GOOD_CARD, POOR_CARD
from protocols.ber_tlv import Tlv, encode_tlv
from protocols.emv import mask_pan
from protocols.srl_messages import CardData, CompleteResult, EntryMode

__all__ = [
    "CARDS",
    "Entry",
    "TestCard",
    "card_data",
    "complete_result",
]

Entry = Literal["chip", "contactless", "magstripe"]

_ENTRY_CODES: dict[Entry, EntryMode] = {
    "chip": EntryMode.CHIP,
    "contactless": EntryMode.CONTACTLESS,
    "magstripe": EntryMode.MAGSTRIPE,
}

# 서로e음's application on its cards (a local-currency AID in the D410 range).
SEOROEUM_AID = bytes.fromhex("D4100000014601")
FOREIGN_AID = bytes.fromhex("A0000000031010")
FOREIGN_CARD = "4111111111111111"
ARC_LEDGER_NOT_REACHED = "Z3"


@dataclass(frozen=True, slots=True)
class TestCard:
    name: str
    pan: str
    expiry: str
    """YYMM, as the card holds it."""
    entry: Entry
    pan_sequence: int = 1
    declines_at_complete: bool = False
    """The card answers COMPLETE with AAC even when the ledger approved."""
    approves_offline: bool = False
    """The card answers COMPLETE with TC when the ledger was not reached (ARC Z3): within its
    own offline limits it approves the payment itself."""
    cryptogram: bool = True
    """False: a contactless card in mag-stripe mode, read with no 9F26/9F27 (below
    reader-link.md's minimum, as such cards are), which posd must not approve offline."""

    @property
    def service_code(self) -> str:
        # First digit 2: a chip card (a swipe should be refused "use chip"); 1: stripe only.
        return "101" if self.entry == "magstripe" else "201"

    def __repr__(self) -> str:
        return f"TestCard({self.name!r}, {mask_pan(self.pan)}, {self.entry})"


CARDS: dict[str, TestCard] = {
    card.name: card
    for card in (
        TestCard("seoroeum", GOOD_CARD, "3012", "chip"),
        TestCard("seoroeum-contactless", GOOD_CARD, "3012", "contactless"),
        TestCard("seoroeum-magstripe", GOOD_CARD, "3012", "magstripe"),
        TestCard("contactless-no-cryptogram", GOOD_CARD, "3012", "contactless", cryptogram=False),
        TestCard("insufficient-funds", POOR_CARD, "3012", "chip"),
        TestCard("expired", EXPIRED_CARD, "2001", "chip"),
        TestCard("foreign", FOREIGN_CARD, "3012", "chip"),
        TestCard("declines-at-complete", GOOD_CARD, "3012", "chip", declines_at_complete=True),
        TestCard("approves-offline", GOOD_CARD, "3012", "chip", approves_offline=True),
    )
}
"""Every test card by name."""


def _bcd(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def _track2(card: TestCard) -> bytes:
    return _bcd(f"{card.pan}D{card.expiry}{card.service_code}00000")


def _expiry_5f24(yymm: str) -> bytes:
    year, month = 2000 + int(yymm[:2]), int(yymm[2:])
    return bytes.fromhex(f"{yymm}{calendar.monthrange(year, month)[1]:02d}")


def _cryptogram(card: TestCard, amount: int, atc: int, kind: bytes) -> bytes:
    # A stand-in for the card's 3DES/AES MAC: unique per card, amount and ATC.
    return hashlib.sha256(kind + card.pan.encode() + amount.to_bytes(6) + atc.to_bytes(2)).digest()[
        :8
    ]


def card_data(
    card: TestCard, amount: int, date: datetime.date, atc: int, *, entry: Entry | None = None
) -> CardData:
    """The CARD_DATA a reader sends for ``card`` (read as ``entry``, default its own)."""
    how = entry or card.entry
    if how == "magstripe":
        return CardData(EntryMode.MAGSTRIPE, encode_tlv([Tlv(0x57, _track2(card))]))
    aid = SEOROEUM_AID if card.pan.startswith("9410") else FOREIGN_AID
    items = [
        Tlv(0x5A, _bcd(card.pan)),
        Tlv(0x5F24, _expiry_5f24(card.expiry)),
        Tlv(0x5F34, bytes.fromhex(f"{card.pan_sequence:02d}")),
        Tlv(0x57, _track2(card)),
        Tlv(0x9F26, _cryptogram(card, amount, atc, b"ARQC")),
        Tlv(0x9F27, b"\x80"),
        Tlv(0x9F10, bytes.fromhex("0110A00003220000000000000000000000FF")),
        Tlv(0x9F37, hashlib.sha256(atc.to_bytes(2) + b"UN").digest()[:4]),
        Tlv(0x9F36, atc.to_bytes(2, "big")),
        Tlv(0x95, bytes(5)),
        Tlv(0x9A, bytes.fromhex(date.strftime("%y%m%d"))),
        Tlv(0x9C, b"\x00"),
        Tlv(0x9F02, bytes.fromhex(f"{amount:012d}")),
        Tlv(0x5F2A, bytes.fromhex("0410")),
        Tlv(0x82, bytes.fromhex("1980" if how == "chip" else "2000")),
        Tlv(0x84, aid),
        Tlv(0x9F1A, bytes.fromhex("0410")),
    ]
    if not card.cryptogram:
        items = [item for item in items if item.tag not in (0x9F26, 0x9F27)]
    return CardData(_ENTRY_CODES[how], encode_tlv(items))


def complete_result(card: TestCard, arc: str, amount: int, atc: int) -> CompleteResult:
    """The card's second GENERATE AC: TC when the ledger approved and the card agrees, or
    when the ledger was not reached and the card approves offline; AAC otherwise."""
    if arc == ARC_LEDGER_NOT_REACHED:
        approved = card.approves_offline
    else:
        approved = arc == "00" and not card.declines_at_complete
    items = [
        Tlv(0x9F26, _cryptogram(card, amount, atc, b"TC" if approved else b"AAC")),
        Tlv(0x9F27, b"\x40" if approved else b"\x00"),
        Tlv(0x95, bytes(5)),
        Tlv(0x9B, bytes.fromhex("E800")),
    ]
    return CompleteResult(approved, encode_tlv(items))
