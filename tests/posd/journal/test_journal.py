"""Journal payments: creation, idempotency, transitions, durability, recovery, totals."""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posd.journal import (
    CardSecrets,
    IdempotencyConflict,
    IllegalTransition,
    InvalidArgument,
    Journal,
    JournalError,
    JournalSchemaError,
    PaymentNotFound,
    RefundRefused,
)
from protocols.emv import mask_pan
from tests.helpers.spec_objects import PAYMENT_OBJECT_KEYS

REPO = Path(__file__).resolve().parents[3]
NOW = 1_795_600_000.0  # 2026-11-25T09:46:40Z
PAN = "9410123456789012"
CHIP = CardSecrets("chip", PAN, expiry="2812", icc=bytes.fromhex("5a0894101234567890129f2701 80"))
QR = CardSecrets("qr", "9410000011112222", qr_text="hVBDUFYwMQ==")


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "state")
    yield j
    await j.close()


async def purchase(
    j: Journal, key: str = "k1", amount: int = 10_000, rate: int = 0, discount: int = 0
) -> str:
    record, created = await j.create_payment(
        amount=amount,
        charged=amount - discount,
        method="any",
        idempotency_key=key,
        now=NOW,
        benefit_plus_rate_bps=rate,
        discount=discount,
    )
    assert created
    return record.payment_id


async def test_durability_settings_are_in_force(journal: Journal) -> None:
    settings = await journal.settings()
    assert settings["journal_mode"] == "wal"
    assert settings["synchronous"] == 2  # FULL
    assert settings["foreign_keys"] == 1
    assert settings["secure_delete"] == 1
    assert settings["schema_version"] == 3


async def test_create_stores_benefit_plus_as_given_and_the_api_object(journal: Journal) -> None:
    record, created = await journal.create_payment(
        amount=12_345,
        charged=11_481,
        method="card",
        idempotency_key="a",
        now=NOW,
        benefit_plus_rate_bps=700,
        discount=864,
    )
    assert created
    assert record.payment_id.startswith("p_") and len(record.payment_id) == 18
    assert (record.benefit_plus_rate_bps, record.discount, record.charged) == (700, 864, 11_481)
    doc = record.to_api()
    assert set(doc) == PAYMENT_OBJECT_KEYS | {"card_last4"}
    assert doc["state"] == "waiting_for_card"
    assert doc["stan"] is None and doc["offline"] is False
    assert doc["created_at"] == "2026-11-25T09:46:40.000Z"


async def test_same_idempotency_key_returns_same_payment(journal: Journal) -> None:
    first = await purchase(journal, "same")
    again, created = await journal.create_payment(
        amount=10_000, charged=10_000, method="any", idempotency_key="same", now=NOW + 5
    )
    assert not created and again.payment_id == first


@pytest.mark.parametrize(
    ("amount", "method", "rate", "what"),
    [(9_999, "any", 0, "amount"), (10_000, "qr", 0, "method"), (10_000, "any", 300, "benefit")],
)
async def test_reused_idempotency_key_with_other_parameters_is_refused(
    journal: Journal, amount: int, method: str, rate: int, what: str
) -> None:
    first = await purchase(journal, "same")
    with pytest.raises(IdempotencyConflict, match=what) as err:
        await journal.create_payment(
            amount=amount,
            charged=amount - amount * rate // 10_000,
            method=method,
            idempotency_key="same",
            now=NOW,
            benefit_plus_rate_bps=rate,
            discount=amount * rate // 10_000,
        )
    assert err.value.payment_id == first


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 10**12}, "amount"),
        ({"method": "cash"}, "method"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "x" * 256}, "idempotency_key"),
        ({"idempotency_key": "a\nb"}, "idempotency_key"),
        ({"benefit_plus_rate_bps": -1}, "benefit_plus_rate_bps"),
        ({"benefit_plus_rate_bps": 10_001}, "benefit_plus_rate_bps"),
        ({"discount": 10}, "discount"),  # a discount without a rate
        ({"benefit_plus_rate_bps": 500, "discount": -1, "charged": 1001}, "discount"),
        ({"benefit_plus_rate_bps": 500, "discount": 1000, "charged": 0}, "discount"),
        ({"benefit_plus_rate_bps": 500, "discount": 50, "charged": 1000}, "charged"),
        ({"charged": 999}, "charged"),
        ({"now": float("nan")}, "now"),
    ],
)
async def test_bad_create_arguments_are_refused_and_nothing_is_stored(
    journal: Journal, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {
        "amount": 1000,
        "charged": 1000,
        "method": "any",
        "idempotency_key": "k",
        "now": NOW,
    }
    args.update(kwargs)
    with pytest.raises(InvalidArgument) as err:
        await journal.create_payment(**args)  # type: ignore[arg-type]
    assert err.value.field == field
    assert await journal.events_since(0) == []


async def test_card_payment_lifecycle_records_every_state_change(journal: Journal) -> None:
    pid = await purchase(journal)
    auth = await journal.begin_authorization(pid, CHIP, NOW + 1)
    assert auth.state == "authorizing" and auth.stan == 1 and auth.field7 == "1125094641"
    assert auth.method == "card" and auth.masked_pan == "941012******9012"
    assert auth.last4 == "9012" and auth.has_card_data
    assert await journal.card_data(pid) == CHIP
    done = await journal.record_answer(
        pid, response_code="00", rrn="000000000042", auth_code="123456", now=NOW + 2
    )
    assert done.state == "approved" and not done.has_card_data
    assert await journal.card_data(pid) is None
    assert done.to_api()["stan"] == "000001"
    events = await journal.events_since(0)
    assert [(e.from_state, e.state) for e in events] == [
        (None, "waiting_for_card"),
        ("waiting_for_card", "authorizing"),
        ("authorizing", "approved"),
    ]
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    assert [e.seq for e in await journal.events_since(events[0].seq)] == [e.seq for e in events[1:]]


@pytest.mark.parametrize(
    ("pan", "masked"),
    [("941012345678", "********5678"), ("94101234567", "*******4567"), ("94101234", "****1234")],
)
async def test_short_pans_are_masked_by_the_one_mask(
    journal: Journal, pan: str, masked: str
) -> None:
    """Below 13 digits the journal, the redaction and every view show only the last 4: the
    mask is protocols.emv's (the journal had its own, which showed the first 6 too)."""
    card = CardSecrets("chip", pan)
    assert masked == mask_pan(pan) and pan not in repr(card) and masked in repr(card)
    record = await journal.begin_authorization(await purchase(journal), card, NOW)
    assert (record.masked_pan, record.last4) == (masked, pan[-4:])


async def test_qr_payment_keeps_only_the_account_last4(journal: Journal) -> None:
    pid = await purchase(journal)
    record = await journal.begin_authorization(pid, QR, NOW)
    doc = record.to_api()
    assert doc["method"] == "qr" and doc["account_last4"] == "2222" and "card_last4" not in doc
    assert record.masked_pan is None


async def test_decline_keeps_reason_and_drops_card_data(journal: Journal) -> None:
    pid = await purchase(journal)
    await journal.begin_authorization(pid, CHIP, NOW)
    record = await journal.record_answer(pid, response_code="51", now=NOW + 1)
    assert record.state == "declined" and record.decline_reason == "ledger_51"
    assert not record.has_card_data


async def test_chip_approval_can_keep_card_data_until_the_card_decides(journal: Journal) -> None:
    pid = await purchase(journal)
    await journal.begin_authorization(pid, CHIP, NOW)
    record = await journal.record_answer(pid, response_code="00", now=NOW, keep_card_data=True)
    assert record.has_card_data
    await journal.drop_card_data(pid)
    assert await journal.card_data(pid) is None


async def test_card_read_must_fit_the_requested_method(journal: Journal) -> None:
    record, _ = await journal.create_payment(
        amount=500, charged=500, method="card", idempotency_key="c", now=NOW
    )
    with pytest.raises(InvalidArgument, match="entry_mode"):
        await journal.begin_authorization(record.payment_id, QR, NOW)
    assert (await journal.get(record.payment_id)).state == "waiting_for_card"  # type: ignore[union-attr]


@pytest.mark.parametrize("pan", ["", "1234567", "9" * 20, "94101234x6789012", "٩٤١٠١٢٣٤٥٦"])
async def test_malformed_pan_is_refused_without_echoing_it(journal: Journal, pan: str) -> None:
    pid = await purchase(journal)
    with pytest.raises(InvalidArgument) as err:
        await journal.begin_authorization(pid, CardSecrets("chip", pan), NOW)
    assert err.value.field == "card.pan"
    assert pan == "" or pan not in str(err.value)


async def test_unknown_entry_mode_is_refused(journal: Journal) -> None:
    pid = await purchase(journal)
    with pytest.raises(InvalidArgument, match="entry_mode"):
        await journal.begin_authorization(pid, CardSecrets("swipe", PAN), NOW)


async def test_illegal_transitions_are_refused_and_change_nothing(journal: Journal) -> None:
    pid = await purchase(journal)
    with pytest.raises(IllegalTransition, match="waiting_for_card to approved"):
        await journal.record_answer(pid, response_code="00", now=NOW)
    await journal.begin_authorization(pid, CHIP, NOW)
    with pytest.raises(IllegalTransition, match="authorizing to cancelled"):
        await journal.transition(pid, "cancelled", NOW)
    with pytest.raises(IllegalTransition):
        await journal.begin_authorization(pid, CHIP, NOW)
    await journal.record_answer(pid, response_code="05", now=NOW)
    with pytest.raises(IllegalTransition, match="none, it is final"):
        await journal.start_reversal(
            pid, fields={"11": "000001"}, stan=1, now=NOW, decline_reason="x"
        )
    with pytest.raises(IllegalTransition):
        await journal.record_answer(pid, response_code="00", now=NOW)
    record = await journal.get(pid)
    assert record is not None and record.state == "declined"
    assert len(await journal.events_since(0)) == 3


@pytest.mark.parametrize("state", ["approved", "authorizing", "reversed", "bogus"])
async def test_transition_only_ends_payments(journal: Journal, state: str) -> None:
    pid = await purchase(journal)
    with pytest.raises(InvalidArgument, match="own journal method"):
        await journal.transition(pid, state, NOW)


async def test_cancel_and_counter_decline(journal: Journal) -> None:
    a = await purchase(journal, "a")
    b = await purchase(journal, "b")
    assert (await journal.transition(a, "cancelled", NOW)).state == "cancelled"
    declined = await journal.transition(b, "declined", NOW, decline_reason="qr_expired")
    assert declined.decline_reason == "qr_expired"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"response_code": "0"}, "response_code"),
        ({"response_code": "0-"}, "response_code"),
        ({"rrn": "1" * 13}, "rrn"),
        ({"auth_code": "ü"}, "auth_code"),
    ],
)
async def test_bad_ledger_answer_is_refused(
    journal: Journal, kwargs: dict[str, str], field: str
) -> None:
    pid = await purchase(journal)
    await journal.begin_authorization(pid, CHIP, NOW)
    args: dict[str, str] = {"response_code": "00"}
    args.update(kwargs)
    with pytest.raises(InvalidArgument) as err:
        await journal.record_answer(pid, now=NOW, **args)  # type: ignore[arg-type]
    assert err.value.field == field
    assert (await journal.get(pid)).state == "authorizing"  # type: ignore[union-attr]


async def test_unknown_payment(journal: Journal) -> None:
    assert await journal.get("p_0000000000000000") is None
    with pytest.raises(PaymentNotFound):
        await journal.transition("p_0000000000000000", "cancelled", NOW)
    with pytest.raises(PaymentNotFound):
        await journal.card_data("p_0000000000000000")


async def test_idempotency_and_state_survive_reopen(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    pid = await purchase(j, "key-1")
    await j.begin_authorization(pid, CHIP, NOW)
    await j.close()
    j = await Journal.open(tmp_path)
    try:
        record, created = await j.create_payment(
            amount=10_000, charged=10_000, method="any", idempotency_key="key-1", now=NOW
        )
        assert not created and record.payment_id == pid and record.state == "authorizing"
        assert await j.card_data(pid) == CHIP
        assert await j.allocate_stan(NOW) == 2
    finally:
        await j.close()


CRASHER = """
import asyncio, os, sys
from pathlib import Path
from posd.journal import CardSecrets, Journal

async def main() -> None:
    j = await Journal.open(Path(sys.argv[1]))
    p, _ = await j.create_payment(amount=777, charged=777, method="card", idempotency_key="crash",
                                  now=1795600000.0)
    await j.begin_authorization(p.payment_id, CardSecrets("magstripe", "9410555566667777",
                                track2="9410555566667777=2812101"), 1795600001.0)
    print(p.payment_id, flush=True)
    os._exit(0)  # a crash: no close, no checkpoint, the WAL left as it is

asyncio.run(main())
"""


async def test_committed_writes_survive_a_crash(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(CRASHER),
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0
    pid = stdout.decode().strip()
    assert (tmp_path / "journal.db-wal").stat().st_size > 0
    j = await Journal.open(tmp_path)
    try:
        [record] = await j.in_flight()
        assert record.payment_id == pid and record.state == "authorizing" and record.stan == 1
        card = await j.card_data(pid)
        assert card is not None and card.track2 == "9410555566667777=2812101"
    finally:
        await j.close()


async def test_abandoned_connection_then_second_open_sees_everything(tmp_path: Path) -> None:
    first = await Journal.open(tmp_path)
    pid = await purchase(first, "x")
    second = await Journal.open(tmp_path)
    try:
        assert (await second.get(pid)) == (await first.get(pid))
    finally:
        await second.close()
        await first.close()


async def test_recovery_lists_payments_not_yet_final(journal: Journal) -> None:
    waiting = await purchase(journal, "w")
    authorizing = await purchase(journal, "a")
    await journal.begin_authorization(authorizing, CHIP, NOW)
    reversing = await purchase(journal, "r")
    rev = await journal.begin_authorization(reversing, CHIP, NOW)
    await journal.start_reversal(
        reversing, fields={"11": "000009"}, stan=rev.stan or 0, now=NOW, decline_reason="timeout"
    )
    approved = await purchase(journal, "d")
    await journal.begin_authorization(approved, CHIP, NOW)
    await journal.record_answer(approved, response_code="00", now=NOW)
    cancelled = await purchase(journal, "c")
    await journal.transition(cancelled, "cancelled", NOW)
    states = {r.payment_id: r.state for r in await journal.in_flight()}
    assert states == {
        waiting: "waiting_for_card",
        authorizing: "authorizing",
        reversing: "reversing",
    }


async def approved_payment(j: Journal, key: str, amount: int = 10_000) -> str:
    pid = await purchase(j, key, amount)
    await j.begin_authorization(pid, CHIP, NOW)
    await j.record_answer(pid, response_code="00", rrn="000000000001", now=NOW)
    return pid


async def test_refunds_up_to_the_charged_amount(journal: Journal) -> None:
    original = await approved_payment(journal, "o")
    refund, created = await journal.create_refund(
        original_payment_id=original, amount=4_000, idempotency_key="r1", now=NOW + 10
    )
    assert created and refund.kind == "refund" and refund.state == "authorizing"
    assert refund.stan == 2 and refund.field7 == "1125094650"
    assert refund.original_payment_id == original and refund.last4 == "9012"
    again, created = await journal.create_refund(
        original_payment_id=original, amount=4_000, idempotency_key="r1", now=NOW + 11
    )
    assert not created and again.payment_id == refund.payment_id
    with pytest.raises(RefundRefused) as err:
        await journal.create_refund(
            original_payment_id=original, amount=6_001, idempotency_key=None, now=NOW
        )
    assert err.value.reason == "exceeds_original"
    await journal.record_answer(refund.payment_id, response_code="13", now=NOW)
    second, _ = await journal.create_refund(
        original_payment_id=original, amount=10_000, idempotency_key=None, now=NOW
    )
    assert second.state == "authorizing"


async def test_refund_refusals(journal: Journal) -> None:
    declined = await purchase(journal, "d")
    await journal.transition(declined, "declined", NOW, decline_reason="card_not_accepted")
    approved = await approved_payment(journal, "a")
    refund, _ = await journal.create_refund(
        original_payment_id=approved, amount=1, idempotency_key="r", now=NOW
    )
    cases = [
        ("p_ffffffffffffffff", "not_found"),
        (declined, "not_refundable"),
        (refund.payment_id, "not_a_purchase"),
    ]
    for original, reason in cases:
        with pytest.raises(RefundRefused) as err:
            await journal.create_refund(
                original_payment_id=original, amount=1, idempotency_key=None, now=NOW
            )
        assert err.value.reason == reason
    with pytest.raises(IdempotencyConflict):
        await journal.create_refund(
            original_payment_id=approved, amount=2, idempotency_key="r", now=NOW
        )


async def test_a_chip_approval_the_card_has_not_answered_is_not_refunded(journal: Journal) -> None:
    pid = await purchase(journal, "chip")
    await journal.begin_authorization(pid, CHIP, NOW)
    await journal.record_answer(
        pid, response_code="00", rrn="000000000001", now=NOW, keep_card_data=True
    )
    with pytest.raises(RefundRefused) as err:
        await journal.create_refund(
            original_payment_id=pid, amount=1, idempotency_key=None, now=NOW
        )
    assert err.value.reason == "card_undecided"
    await journal.drop_card_data(pid)  # the card's TC
    refund, _ = await journal.create_refund(
        original_payment_id=pid, amount=1, idempotency_key=None, now=NOW
    )
    assert refund.state == "authorizing"


async def test_a_refund_that_cannot_be_sent_is_declined_with_nothing_queued(
    journal: Journal,
) -> None:
    original = await approved_payment(journal, "o")
    unsent, created = await journal.create_refund(
        original_payment_id=original,
        amount=10_000,
        idempotency_key="r",
        now=NOW,
        unsent_reason="ledger_unavailable",
    )
    assert created and (unsent.state, unsent.decline_reason) == ("declined", "ledger_unavailable")
    assert unsent.stan is None and unsent.field7 is None
    assert await journal.saf_pending() == []
    events = [e for e in await journal.events_since(0) if e.payment_id == unsent.payment_id]
    assert [(e.from_state, e.state) for e in events] == [(None, "declined")]
    # Bound to its key like any refund, and holding none of the original's amount back.
    again, created = await journal.create_refund(
        original_payment_id=original, amount=10_000, idempotency_key="r", now=NOW
    )
    assert not created and again == unsent
    sent, _ = await journal.create_refund(
        original_payment_id=original, amount=10_000, idempotency_key=None, now=NOW
    )
    assert sent.state == "authorizing" and sent.stan is not None


async def test_totals_by_method_and_state_for_a_local_day(journal: Journal) -> None:
    kst = datetime.timezone(datetime.timedelta(hours=9))
    card = await approved_payment(journal, "card", 10_000)
    qr = await purchase(journal, "qr", 3_000, rate=500, discount=150)
    await journal.begin_authorization(qr, QR, NOW)
    await journal.record_answer(qr, response_code="00", now=NOW)
    bad = await purchase(journal, "bad", 2_000)
    await journal.transition(bad, "declined", NOW, decline_reason="card_not_accepted")
    await journal.create_refund(
        original_payment_id=card, amount=1_000, idempotency_key=None, now=NOW
    )
    refund, _ = await journal.create_refund(
        original_payment_id=card, amount=500, idempotency_key=None, now=NOW
    )
    await journal.record_answer(refund.payment_id, response_code="00", now=NOW)

    totals = await journal.totals(datetime.date(2026, 11, 25), kst)
    assert totals["date"] == "2026-11-25"
    assert totals["purchases"] == {
        "card": {"approved": {"count": 1, "amount": 10_000, "discount": 0, "charged": 10_000}},
        "qr": {"approved": {"count": 1, "amount": 3_000, "discount": 150, "charged": 2_850}},
        "any": {"declined": {"count": 1, "amount": 2_000, "discount": 0, "charged": 2_000}},
    }
    assert totals["refunds"] == {
        "card": {
            "approved": {"count": 1, "amount": 500, "discount": 0, "charged": 500},
            "authorizing": {"count": 1, "amount": 1_000, "discount": 0, "charged": 1_000},
        }
    }
    other_day = await journal.totals(datetime.date(2026, 11, 24), kst)
    assert other_day["purchases"] == {} and other_day["refunds"] == {}
    assert await journal.payments_today(NOW, kst) == {
        "approved": 2,
        "declined": 1,
        "amount": 12_850,
    }
    assert await journal.payments_today(NOW + 86_400, kst) == {
        "approved": 0,
        "declined": 0,
        "amount": 0,
    }


async def test_database_from_a_newer_posd_is_refused(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    await j.close()
    with sqlite3.connect(tmp_path / "journal.db") as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(JournalSchemaError, match="newer"):
        await Journal.open(tmp_path)


async def test_foreign_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "journal.db") as db:
        db.execute("CREATE TABLE other (x)")
    with pytest.raises(JournalSchemaError, match="not a posd journal"):
        await Journal.open(tmp_path)


async def test_garbage_database_file_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "journal.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalSchemaError, match=r"not a database.*restore"):
        await Journal.open(tmp_path)


async def test_a_chip_approval_the_card_never_answered_is_in_flight_after_restart(
    tmp_path: Path,
) -> None:
    j = await Journal.open(tmp_path)
    kept = await purchase(j, "kept")
    await j.begin_authorization(kept, CHIP, NOW)
    await j.record_answer(kept, response_code="00", now=NOW, keep_card_data=True)
    decided = await purchase(j, "decided")
    await j.begin_authorization(decided, CHIP, NOW)
    await j.record_answer(decided, response_code="00", now=NOW, keep_card_data=True)
    assert not (await j.drop_card_data(decided)).card_undecided  # the card's TC
    waiting = await purchase(j, "waiting")
    await j.begin_authorization(waiting, CHIP, NOW)
    await j.close()
    j = await Journal.open(tmp_path)
    try:
        # The COMPLETE window survives the restart, for recovery to reverse.
        in_flight = {rec.payment_id: rec for rec in await j.in_flight()}
        assert set(in_flight) == {kept, waiting}
        assert in_flight[kept].state == "approved" and in_flight[kept].card_undecided
        assert not in_flight[waiting].card_undecided
        assert await j.card_data(waiting) == CHIP  # still owed a reversal by recovery
        rec, _ = await j.start_reversal(
            kept, fields={"4": "000000001000"}, stan=900, now=NOW, decline_reason="reader_error"
        )
        assert rec.state == "reversing" and await j.card_data(kept) is None
    finally:
        await j.close()


async def test_closed_journal_refuses_calls_and_closes_once(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    await j.close()
    await j.close()
    with pytest.raises(JournalError, match="closed"):
        await j.get("p_0000000000000000")


@pytest.mark.parametrize(("amount", "key"), [(0, None), (-1, None), (10, ""), (10, "x" * 256)])
async def test_bad_refund_arguments_are_refused(
    journal: Journal, amount: int, key: str | None
) -> None:
    original = await approved_payment(journal, "o")
    with pytest.raises(InvalidArgument) as err:
        await journal.create_refund(
            original_payment_id=original, amount=amount, idempotency_key=key, now=NOW
        )
    assert err.value.field == ("amount" if amount <= 0 else "idempotency_key")


async def test_event_sequence_keeps_increasing_across_restarts(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    await purchase(j, "a")
    [first] = await j.events_since(0)
    await j.close()
    j = await Journal.open(tmp_path)
    try:
        await purchase(j, "b")
        assert [e.seq for e in await j.events_since(first.seq)] == [first.seq + 1]
    finally:
        await j.close()
