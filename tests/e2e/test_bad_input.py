"""Card and QR data that cannot make a valid 0200 is declined at the counter, sends nothing,
and never stops the next payment, nor a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import posd.sim.card_reader as sim_reader
from posd.journal import CardSecrets, Journal
from posd.sim.cards import card_data
from posd.sim.ledger_accounts import GOOD_CARD, GOOD_QR_ACCOUNT
from protocols import srl_messages as srl
from protocols.ber_tlv import Tlv, decode_tlv, encode_tlv
from protocols.qr_token import MAX_QT_CHARS
from tests.helpers.daemon import RunningDaemon, financial, pay_card, running_daemon
from tests.protocols.test_qr_token_field48 import padded_token

pytestmark = pytest.mark.timeout(60)


async def pay_qr(d: RunningDaemon, text: str) -> dict[str, object]:
    created = await d.create(1_000, "qr")
    await d.scanner.scan(text)
    return await d.wait_final(str(created["payment_id"]))


def reader_card_data(
    monkeypatch: pytest.MonkeyPatch, change: dict[int, bytes], add: list[Tlv]
) -> None:
    """The simulated reader's chip CARD_DATA with tags replaced and others added."""

    def changed(*args: object, **kwargs: object) -> srl.CardData:
        message = card_data(*args, **kwargs)  # type: ignore[arg-type]
        items = [Tlv(t.tag, change.get(t.tag, t.value)) for t in decode_tlv(message.tlv)]
        return srl.CardData(message.entry, encode_tlv(items + add))

    monkeypatch.setattr(sim_reader, "card_data", changed)


async def test_qr_with_surrounding_whitespace_is_paid_with_the_token_as_verified(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as d:
        done = await pay_qr(d, f" {d.issuer.valid(GOOD_QR_ACCOUNT)}\t ")
        assert done["state"] == "approved", done
        assert financial(d) == ["0200"]


async def test_qr_too_long_for_field_48_is_unreadable_and_sends_nothing(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        too_long = padded_token(d.issuer.valid(GOOD_QR_ACCOUNT), MAX_QT_CHARS + 4)
        done = await pay_qr(d, too_long)
        assert (done["state"], done["decline_reason"]) == ("declined", "qr_unreadable")
        assert financial(d) == []
        longest = padded_token(d.issuer.valid(GOOD_QR_ACCOUNT), MAX_QT_CHARS)
        assert (await pay_qr(d, longest))["state"] == "approved"


async def test_chip_card_with_more_data_than_field_55_holds_sends_the_authorisation_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tags the ledger does not use: with them the TLV is far over 255 bytes.
    reader_card_data(
        monkeypatch,
        {},
        [Tlv(0x9F7C, bytes(32)), Tlv(0x9F6E, bytes(32)), Tlv(0xDF60, bytes(127))],
    )
    async with running_daemon(tmp_path, card_reader=True) as d:
        done = await pay_card(d)
        assert (done["state"], done["entry_mode"]) == ("approved", "chip"), done
        assert financial(d) == ["0200"]


async def test_chip_card_whose_authorisation_data_cannot_fit_is_declined_and_its_card_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader_card_data(monkeypatch, {0x9F10: bytes(250)}, [])
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        done = await pay_card(d)
        assert (done["state"], done["decline_reason"]) == ("declined", "card_error")
        assert financial(d) == []
        # The card's transaction is ended: COMPLETE Z1 (declined by posd), the reader free again.
        await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "ready")
        assert srl.Complete("Z1") in d.reader.received
        monkeypatch.undo()
        assert (await pay_card(d))["state"] == "approved"


async def test_restart_reverses_payments_whose_card_data_could_never_make_a_0200(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    journal = await Journal.open(state_dir)
    now = time.time()
    stuck = []
    for key, method, secrets in (
        ("qr", "qr", CardSecrets(entry_mode="qr", pan=GOOD_QR_ACCOUNT, qr_text="not base64 !")),
        ("chip", "card", CardSecrets(entry_mode="chip", pan=GOOD_CARD, icc=bytes(300))),
    ):
        rec, _ = await journal.create_payment(
            amount=2_000, charged=2_000, method=method, idempotency_key=key, now=now
        )
        await journal.begin_authorization(rec.payment_id, secrets, now)
        stuck.append(rec.payment_id)
    await journal.close()
    async with running_daemon(tmp_path) as d:
        for payment_id in stuck:
            done = await d.wait_state(payment_id, {"reversed"})
            assert done["decline_reason"] == "interrupted"
        assert sorted(financial(d)) == ["0400", "0400"]
        assert (await pay_qr(d, d.issuer.valid(GOOD_QR_ACCOUNT)))["state"] == "approved"


async def test_a_flow_failure_after_authorizing_reverses_from_the_journal_and_ends_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_answer = Journal.record_answer
    failures = [RuntimeError("journal refused the answer (injected fault)")]

    async def failing_once(self: Journal, *args: object, **kwargs: object) -> object:
        # Stands for a posd bug with a 0200 out: no real peer can provoke one on demand.
        if failures:
            raise failures.pop()
        return await record_answer(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Journal, "record_answer", failing_once)
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        done = await pay_card(d)
        # The reversal may already be answered by the time the payment is read.
        assert done["state"] in ("reversing", "reversed")
        assert done["decline_reason"] == "internal_error"
        await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "ready")
        assert d.reader.received[-1] == srl.Complete("Z1")
        await d.wait_state(str(done["payment_id"]), {"reversed"})
        sent = financial(d)
        assert sent[:2] == ["0200", "0400"] and set(sent[2:]) <= {"0400", "0401"}, sent
        assert (await pay_card(d))["state"] == "approved"
