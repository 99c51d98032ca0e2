"""What a chip card is told in COMPLETE, through the whole daemon, as the simulated reader
got it: the ledger's code with exactly the issuer data of its 0210 (91, 71, 72), or posd's
own ARC when no ledger answer decided: Z1 when posd declines, Z3 only when posd would take
the card's offline approval (reader-link.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posd.sim import SimulatedCardReader
from protocols import srl_messages as srl
from protocols.ber_tlv import Tlv, decode_tlv, encode_tlv
from tests.helpers.daemon import WAIT_S, RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)

ISSUER_SCRIPT = encode_tlv([Tlv(0x72, encode_tlv([Tlv(0x9F18, b"\x00\x00\x00\x01")]))])


class Completes:
    """Every COMPLETE the simulated reader got, as it arrives."""

    def __init__(self, reader: SimulatedCardReader) -> None:
        self.got: list[srl.Complete] = []
        self._arrived = asyncio.Event()
        reader.on_command.append(self._on_command)

    def _on_command(self, msg: srl.Message) -> None:
        if isinstance(msg, srl.Complete):
            self.got.append(msg)
            self._arrived.set()

    async def next_after(self, count: int) -> srl.Complete:
        """The COMPLETE after the first `count`, once it has come."""
        async with asyncio.timeout(WAIT_S):
            while len(self.got) <= count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.got[count]


async def pay(d: RunningDaemon, completes: Completes, card: str, amount: int = 1_000) -> tuple[
    dict[str, object], srl.Complete
]:  # fmt: skip
    """A card payment with `card`, its final state, and the COMPLETE its card was told."""
    before = len(completes.got)
    created = await d.create(amount, "card")
    assert d.reader is not None
    d.reader.present(card)
    done = await d.wait_final(str(created["payment_id"]))
    return done, await completes.next_after(before)


async def test_the_ledgers_code_and_exactly_its_issuer_data_go_to_the_card(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        completes = Completes(d.reader)
        d.ledger.rules.issuer_script = ISSUER_SCRIPT
        done, told = await pay(d, completes, "seoroeum")
        assert done["state"] == "approved" and told.arc == "00"
        issuer_auth, script = decode_tlv(told.issuer_data)
        # 91: the ARPC and the ARC, then the issuer's script as the ledger sent it.
        assert issuer_auth.tag == 0x91 and issuer_auth.value[8:] == b"00"
        assert encode_tlv([script]) == ISSUER_SCRIPT
        assert told.issuer_data == encode_tlv([issuer_auth]) + ISSUER_SCRIPT
        # A decline's 0210 carries its 91 too: the card gets it with the ledger's code.
        done, told = await pay(d, completes, "insufficient-funds", 50_000)
        assert done["decline_reason"] == "insufficient_funds" and told.arc == "51"
        (item,) = decode_tlv(told.issuer_data)
        assert item.tag == 0x91 and item.value[8:] == b"51"
        # An approval the card then refuses (AAC) had the issuer data all the same.
        done, told = await pay(d, completes, "declines-at-complete")
        assert done["decline_reason"] == "card_declined" and told.arc == "00"
        assert told.issuer_data.startswith(b"\x91\x0a")


async def test_posd_declining_without_the_ledger_tells_the_card_z1(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, card_reader=True, ledger={"timeout_s": 0.5}) as d:
        assert d.reader is not None
        completes = Completes(d.reader)
        for card, reason in (("foreign", "card_not_accepted"), ("expired", "card_expired")):
            done, told = await pay(d, completes, card)
            assert done["decline_reason"] == reason
            assert told == srl.Complete("Z1", b"")
        # A 0200 whose answer never came: the ledger was reached (it may have moved the
        # money), posd reverses, and never approves it offline: Z1, not Z3.
        d.ledger.faults.no_answer = True
        done, told = await pay(d, completes, "approves-offline")
        assert done["decline_reason"] == "ledger_timeout"
        assert told == srl.Complete("Z1", b"")
