"""Chip cards while the ledger is unreachable: posd decides its offline limits before the card
is asked, so a card never approves offline what posd then declines."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import posd.sim.card_reader as sim_reader
from posd.sim.cards import TestCard as SimCard
from posd.sim.cards import complete_result
from protocols import srl_messages as srl
from protocols.ber_tlv import Tlv, decode_tlv, encode_tlv
from protocols.ledger_icc import TC_TAGS
from protocols.ledger_messages import LedgerRequest, LedgerResponse
from tests.helpers.daemon import RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)


def journal_states(d: RunningDaemon) -> dict[str, str]:
    """Every payment's state as the journal has it on disk, read from outside posd."""
    with sqlite3.connect(f"file:{d.state_dir / 'journal.db'}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT id, state FROM payments").fetchall())


def states_when_the_card_is_asked(monkeypatch: pytest.MonkeyPatch, d: RunningDaemon) -> list[str]:
    """Per COMPLETE the simulated reader answers, the state the journal held on disk for the
    payment at that moment (the simulator's answer itself is unchanged)."""
    states_when_asked: list[str] = []

    def watched(card: SimCard, arc: str, amount: int, atc: int) -> srl.CompleteResult:
        states_when_asked.extend(journal_states(d).values())
        return complete_result(card, arc, amount, atc)

    monkeypatch.setattr(sim_reader, "complete_result", watched)
    return states_when_asked


async def pay_card(
    d: RunningDaemon, amount: int, card: str = "approves-offline"
) -> dict[str, object]:
    created = await d.create(amount, "card")
    assert d.reader is not None
    d.reader.present(card)
    return await d.wait_final(str(created["payment_id"]))


async def test_beyond_the_limits_declined_before_the_card_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_daemon(tmp_path, card_reader=True, ledger_up=False) as d:
        assert d.reader is not None
        states_when_asked = states_when_the_card_is_asked(monkeypatch, d)
        done = await pay_card(d, 60_000)  # the offline max_payment is 50 000
        assert (done["state"], done["decline_reason"]) == ("declined", "offline_limit")
        # The card is told Z1 (declined by posd, not by the ledger), once posd has declined.
        await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "ready")
        assert srl.Complete("Z1") in d.reader.received
        assert states_when_asked == ["declined"]
        assert (await d.wait_status(lambda s: True))["saf"]["pending"] == 0


async def test_a_card_that_refuses_offline_is_declined_for_the_limit_not_the_card(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, card_reader=True, ledger_up=False) as d:
        done = await pay_card(d, 60_000, card="seoroeum")
        assert (done["state"], done["decline_reason"]) == ("declined", "offline_limit")


async def test_within_the_limits_a_card_that_accepts_offline_is_approved_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_daemon(tmp_path, card_reader=True, ledger_up=False) as d:
        states_when_asked = states_when_the_card_is_asked(monkeypatch, d)
        done = await pay_card(d, 10_000)
        assert (done["state"], done["offline"]) == ("approved_offline", True), done
        assert states_when_asked == ["authorizing"]
        # The one COMPLETE posd decides Z3: the ledger not reached, within the limits.
        assert d.reader is not None
        assert [m for m in d.reader.received if isinstance(m, srl.Complete)] == [
            srl.Complete("Z3", b"")
        ]
        await d.ledger.refuse_connections(False)
        await d.wait_state(str(done["payment_id"]), {"forwarded"})


def tags(tlv: bytes) -> dict[int, bytes]:
    return {item.tag: item.value for item in decode_tlv(tlv)}


async def test_the_advice_carries_the_cards_tc_in_place_of_its_arqc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_daemon(tmp_path, card_reader=True, ledger_up=False) as d:
        assert d.reader is not None
        at_the_ledger: list[LedgerRequest] = []
        process = d.ledger.rules.process

        def recording(request: LedgerRequest, mac_valid: bool) -> LedgerResponse:
            at_the_ledger.append(request)
            return process(request, mac_valid)

        monkeypatch.setattr(d.ledger.rules, "process", recording)
        done = await pay_card(d, 10_000)
        assert done["state"] == "approved_offline"
        (read,) = [m for m in d.reader.sent if isinstance(m, srl.CardData)]
        (result,) = [m for m in d.reader.sent if isinstance(m, srl.CompleteResult)]
        card, tc = tags(read.tlv), tags(result.tlv)
        assert result.approved and tc[0x9F27] == b"\x40" and tc[0x9F26] != card[0x9F26]
        # Queued before the ledger is back, sealed as the card data is: not on disk in clear.
        on_disk = b"".join(p.read_bytes() for p in d.state_dir.glob("journal.db*"))
        assert tc[0x9F26] not in on_disk and tc[0x9F26].hex().encode() not in on_disk
        await d.ledger.refuse_connections(False)
        await d.wait_state(str(done["payment_id"]), {"forwarded"})
        (advice,) = [r for r in at_the_ledger if r.mti in ("0220", "0221")]
        assert advice.icc is not None
        sent = tags(advice.icc)
        assert {tag: sent[tag] for tag in TC_TAGS} == {tag: tc[tag] for tag in TC_TAGS}
        # Every other object is the card's authorisation data as the 0200 would have had it.
        assert sent[0x9F36] == card[0x9F36] and sent[0x9F37] == card[0x9F37]
        assert [r.mti for r in at_the_ledger] == ["0220"]


async def test_a_card_approving_offline_without_a_tc_is_not_approved_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_tc(card: SimCard, arc: str, amount: int, atc: int) -> srl.CompleteResult:
        # A faulty card: "approved", but its cryptogram is an AAC's (9F27 00).
        result = complete_result(card, arc, amount, atc)
        items = [Tlv(i.tag, b"\x00") if i.tag == 0x9F27 else i for i in decode_tlv(result.tlv)]
        return srl.CompleteResult(True, encode_tlv(items))

    monkeypatch.setattr(sim_reader, "complete_result", no_tc)
    async with running_daemon(tmp_path, card_reader=True, ledger_up=False) as d:
        done = await pay_card(d, 10_000)
        assert (done["state"], done["decline_reason"]) == ("declined", "card_error")
        assert (await d.wait_status(lambda s: True))["saf"]["pending"] == 0
