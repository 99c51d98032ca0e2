"""Journal STANs, the store-and-forward queue, QR nonces and offline limits."""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from posd.journal import (
    ADVICE_PENDING,
    ADVICE_REFUSED,
    SUCCESS_STATES,
    CardSecrets,
    IllegalTransition,
    InvalidArgument,
    Journal,
    JournalError,
    OfflineRefused,
    PaymentRecord,
    RefundRefused,
    UnknownSafEntry,
    saf_listing,
)

NOW = 1_795_600_000.0
DAY = 86_400.0
HOLD = 30.0


@dataclass(frozen=True)
class Limits:
    enabled: bool = True
    max_payment: int = 50_000
    max_total: int = 500_000
    max_count: int = 50
    max_per_account: int = 3
    max_age_h: int = 72


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path)
    yield j
    await j.close()


def set_last_stan(state_dir: Path, value: int) -> None:
    with sqlite3.connect(state_dir / "journal.db", timeout=5) as db:
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('last_stan', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(value),),
        )


async def authorizing(
    j: Journal, key: str, amount: int = 10_000, pan: str = "9410123456789012", now: float = NOW
) -> PaymentRecord:
    record, _ = await j.create_payment(
        amount=amount, charged=amount, method="any", idempotency_key=key, now=now
    )
    return await j.begin_authorization(record.payment_id, CardSecrets("contactless", pan), now)


def advice_fields(record: PaymentRecord) -> dict[str, str | bytes]:
    return {"2": "9410123456789012", "4": f"{record.charged:012d}", "11": f"{record.stan:06d}"}


# -- STAN ------------------------------------------------------------------------------------


async def test_stans_count_up_and_persist(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    assert [await j.allocate_stan(NOW) for _ in range(3)] == [1, 2, 3]
    await j.close()
    j = await Journal.open(tmp_path)
    assert await j.allocate_stan(NOW) == 4
    await j.close()


async def test_stan_wraps_after_999999(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    set_last_stan(tmp_path, 999_998)
    assert [await j.allocate_stan(NOW) for _ in range(3)] == [999_999, 1, 2]
    await j.close()


async def test_stan_skips_pending_payment_and_saf_entries(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    pending = await authorizing(j, "a")  # STAN 1, authorizing
    queued = await authorizing(j, "b")  # STAN 2, then reversing with the 0400 as STAN 3
    await j.start_reversal(
        queued.payment_id, fields={"11": "000003"}, stan=3, now=NOW, decline_reason="timeout"
    )
    finished = await authorizing(j, "c")  # not 3: the queued 0400 uses it
    assert (pending.stan, queued.stan, finished.stan) == (1, 2, 4)
    await j.record_answer(finished.payment_id, response_code="00", now=NOW)
    # A day later, after a wrap: 1 and 2 are still owed answers, 3 is queued; 4 is free again.
    set_last_stan(tmp_path, 999_999)
    assert await j.allocate_stan(NOW + DAY) == 4
    await j.close()


async def test_stan_not_reused_the_same_utc_day_even_if_settled(journal: Journal) -> None:
    first = await authorizing(journal, "a")
    await journal.record_answer(first.payment_id, response_code="00", now=NOW)
    set_last_stan(journal.path.parent, 0)
    assert await journal.allocate_stan(NOW + 60) == 2
    set_last_stan(journal.path.parent, 0)
    assert await journal.allocate_stan(NOW + DAY) == 1


async def test_reversal_stan_is_validated(journal: Journal) -> None:
    record = await authorizing(journal, "a")
    for stan in (0, 1_000_000, True):
        with pytest.raises(InvalidArgument, match="stan"):
            await journal.start_reversal(
                record.payment_id, fields={"11": "1"}, stan=stan, now=NOW, decline_reason="x"
            )


# -- store and forward -----------------------------------------------------------------------


async def test_saf_oldest_first_repeat_mti_and_nothing_dropped(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    rev = await authorizing(j, "rev", 1_000)
    _, rev_entry = await j.start_reversal(
        rev.payment_id,
        fields={"11": "000001", "55": b"\x9f\x26\x08"},
        stan=rev.stan or 0,
        now=NOW,
        decline_reason="ledger_timeout",
    )
    adv = await authorizing(j, "adv", 2_000)
    approved = await j.approve_offline(
        adv.payment_id, auth_code="Y10001", fields=advice_fields(adv), limits=Limits(), now=NOW + 1
    )
    assert isinstance(approved, PaymentRecord) and approved.state == "approved_offline"
    assert approved.offline and approved.auth_code == "Y10001" and not approved.has_card_data

    [first, second] = await j.saf_pending()
    assert (first.entry_id, first.kind, first.mti, first.amount) == (
        rev_entry.entry_id,
        "reversal",
        "0400",
        1_000,
    )
    assert (second.kind, second.mti, second.payment_id) == ("advice", "0220", adv.payment_id)
    assert (await j.saf_summary(NOW + 11)).to_json() == {
        "pending": 2,
        "pending_amount": 3_000,
        "oldest_age_s": 11,
        "needs_attention": 0,
    }

    assert await j.saf_next_due() == 0.0  # both due at once
    attempt = await j.saf_due(NOW + 2)
    assert attempt is not None and attempt.entry.entry_id == first.entry_id
    assert attempt.mti == "0400" and attempt.fields == {"11": "000001", "55": b"\x9f\x26\x08"}
    failed = await j.saf_attempt_failed(first.entry_id, "no answer in 15 s", NOW + 17, NOW + 47)
    assert (
        failed.attempts == 1 and failed.mti == "0401" and failed.last_error == "no answer in 15 s"
    )
    assert failed.last_attempt_at == (NOW + 17) * 1000 and not failed.needs_attention
    assert failed.next_attempt_at == (NOW + 47) * 1000
    # Waiting for its next attempt, it holds back nothing: the advice behind it is due.
    behind = await j.saf_due(NOW + 18)
    assert behind is not None and behind.entry.kind == "advice"
    assert await j.saf_next_due(exclude=[behind.entry.entry_id]) == NOW + 47
    await j.close()

    j = await Journal.open(tmp_path)  # a restart loses nothing, keeps the order and the time
    assert (await j.saf_due(NOW + 46, after_id=0, exclude=[behind.entry.entry_id])) is None
    repeat = await j.saf_due(NOW + 47)
    assert repeat is not None and repeat.entry.entry_id == first.entry_id
    assert repeat.mti == "0401" and repeat.fields == attempt.fields
    reversed_ = await j.saf_complete(first.entry_id, response_code="00", now=NOW + 48)
    assert reversed_.state == "reversed" and reversed_.decline_reason == "ledger_timeout"
    with pytest.raises(UnknownSafEntry):
        await j.saf_complete(first.entry_id, response_code="00", now=NOW + 49)

    advice = await j.saf_due(NOW + 50)
    assert advice is not None and advice.entry.kind == "advice" and advice.mti == "0220"
    # Not sent (the link was down): nothing is counted, the next try is still the 0220.
    assert (await j.saf_due(NOW + 80)) == advice
    forwarded = await j.saf_complete(
        advice.entry.entry_id, response_code="00", rrn="000000000099", now=NOW + 81
    )
    assert forwarded.state == "forwarded" and forwarded.rrn == "000000000099"
    assert forwarded.offline and forwarded.auth_code == "Y10001"
    assert await j.saf_due(NOW + 82, force=True) is None
    assert await j.saf_next_due() is None
    assert (await j.saf_summary(NOW + 90)).to_json() == {
        "pending": 0,
        "pending_amount": 0,
        "oldest_age_s": None,
        "needs_attention": 0,
    }
    with sqlite3.connect(tmp_path / "journal.db") as db:
        counted = db.execute("SELECT kind, attempts FROM saf ORDER BY id").fetchall()
    assert counted == [("reversal", 2), ("advice", 1)]  # the answered tries count too
    await j.close()


async def test_saf_listing_is_masked(journal: Journal) -> None:
    record = await authorizing(journal, "a")
    await journal.start_reversal(
        record.payment_id,
        fields={"2": "9410123456789012"},
        stan=7,
        now=NOW,
        decline_reason="card_declined",
    )
    [entry] = await journal.saf_pending()
    doc = entry.to_json(now_ms=int(NOW * 1000) + 5_000)
    assert doc["masked_pan"] == "941012******9012" and doc["stan"] == "000007"
    assert doc["age_s"] == 5 and doc["mti"] == "0400"
    assert "9410123456789012" not in repr(entry) + repr(doc)
    message = await journal.saf_due(NOW)
    assert message is not None and "9410123456789012" not in repr(message)


async def test_saf_listing_reads_without_key_or_daemon(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        saf_listing(tmp_path)
    j = await Journal.open(tmp_path)
    record = await authorizing(j, "a")
    await j.start_reversal(
        record.payment_id, fields={"11": "000001"}, stan=1, now=NOW, decline_reason="timeout"
    )
    assert [e.payment_id for e in saf_listing(tmp_path)] == [record.payment_id]
    await j.close()
    (tmp_path / "journal.key").unlink()
    [entry] = saf_listing(tmp_path)
    assert entry.masked_pan == "941012******9012" and entry.mti == "0400"


async def test_reversal_after_approval_and_empty_fields_refused(journal: Journal) -> None:
    record = await authorizing(journal, "a")
    with pytest.raises(InvalidArgument, match="fields"):
        await journal.start_reversal(
            record.payment_id, fields={}, stan=1, now=NOW, decline_reason="x"
        )
    await journal.record_answer(record.payment_id, response_code="00", now=NOW)
    reversing, entry = await journal.start_reversal(
        record.payment_id, fields={"11": "000001"}, stan=1, now=NOW, decline_reason="card_declined"
    )
    assert reversing.state == "reversing" and entry.kind == "reversal"


async def test_saf_unknown_entry(journal: Journal) -> None:
    with pytest.raises(UnknownSafEntry):
        await journal.saf_attempt_failed(42, "x", NOW, NOW + 1)
    with pytest.raises(UnknownSafEntry):
        await journal.saf_refused(42, response_code="30", error="x", now=NOW, next_attempt=NOW + 1)
    with pytest.raises(UnknownSafEntry):
        await journal.saf_complete(42, response_code="00", now=NOW)


# -- QR nonces -------------------------------------------------------------------------------


async def test_qr_nonce_replay_window_survives_restart(tmp_path: Path) -> None:
    j = await Journal.open(tmp_path)
    nonce = bytes.fromhex("0102030405060708")
    assert await j.use_qr_nonce(nonce, NOW)
    assert not await j.use_qr_nonce(nonce, NOW + 1)
    assert await j.use_qr_nonce(b"\x09" * 8, NOW + 1)
    await j.close()
    j = await Journal.open(tmp_path)
    assert not await j.use_qr_nonce(nonce, NOW + DAY - 0.001)
    assert await j.use_qr_nonce(nonce, NOW + DAY)
    assert not await j.use_qr_nonce(nonce, NOW + DAY + 1)
    with pytest.raises(InvalidArgument, match="nonce"):
        await j.use_qr_nonce(b"", NOW)
    await j.close()


# -- offline limits --------------------------------------------------------------------------


async def offline(j: Journal, key: str, amount: int, limits: Limits, **kw: object) -> object:
    record = await authorizing(j, key, amount, **kw)  # type: ignore[arg-type]
    return await j.approve_offline(
        record.payment_id,
        auth_code="Y10002",
        fields=advice_fields(record),
        limits=limits,
        now=float(kw.get("now", NOW)),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("limits", "amounts", "reason"),
    [
        (Limits(enabled=False), [1_000], "offline_disabled"),
        (Limits(max_payment=5_000), [5_001], "offline_limit_payment"),
        (Limits(max_count=2), [1, 1, 1], "offline_limit_count"),
        (Limits(max_total=10_000), [6_000, 4_001], "offline_limit_total"),
        (Limits(max_per_account=2), [1, 1, 1], "offline_limit_account"),
    ],
)
async def test_offline_limits(
    journal: Journal, limits: Limits, amounts: list[int], reason: str
) -> None:
    results = [await offline(journal, f"k{i}", a, limits) for i, a in enumerate(amounts)]
    *accepted, refused = results
    assert all(isinstance(r, PaymentRecord) for r in accepted)
    assert isinstance(refused, OfflineRefused) and refused.reason == reason
    assert refused.exposure.count == len(accepted)
    assert [r.state for r in await journal.in_flight() if r.state == "authorizing"] == [
        "authorizing"
    ]
    assert (await journal.saf_summary(NOW)).pending == len(accepted)


async def test_offline_per_account_counts_only_that_card(journal: Journal) -> None:
    limits = Limits(max_per_account=1)
    assert isinstance(await offline(journal, "a", 100, limits), PaymentRecord)
    other = await offline(journal, "b", 100, limits, pan="9410000000000002")
    assert isinstance(other, PaymentRecord)
    again = await offline(journal, "c", 100, limits)
    assert isinstance(again, OfflineRefused) and again.exposure.for_account == 1


async def test_offline_refused_when_the_oldest_advice_is_too_old(journal: Journal) -> None:
    limits = Limits(max_age_h=72)
    assert isinstance(await offline(journal, "a", 100, limits), PaymentRecord)
    later = NOW + 72 * 3600
    assert isinstance(await offline(journal, "b", 100, limits, now=later), PaymentRecord)
    refused = await offline(journal, "c", 100, limits, now=later + 1)
    assert isinstance(refused, OfflineRefused) and refused.reason == "offline_limit_age"
    assert refused.exposure.oldest_age_s == 72 * 3600 + 1


async def test_offline_approval_needs_authorizing_purchase_and_y1_code(journal: Journal) -> None:
    record, _ = await journal.create_payment(
        amount=100, charged=100, method="any", idempotency_key="w", now=NOW
    )
    with pytest.raises(IllegalTransition):
        await journal.approve_offline(
            record.payment_id, auth_code="Y10000", fields={"11": "1"}, limits=Limits(), now=NOW
        )
    auth = await authorizing(journal, "a")
    for code in ("Y1000", "Z10000", "Y1000a", "123456"):
        with pytest.raises(InvalidArgument, match="auth_code"):
            await journal.approve_offline(
                auth.payment_id, auth_code=code, fields={"11": "1"}, limits=Limits(), now=NOW
            )
    await journal.record_answer(auth.payment_id, response_code="00", rrn="000000000001", now=NOW)
    refund, _ = await journal.create_refund(
        original_payment_id=auth.payment_id, amount=1, idempotency_key=None, now=NOW
    )
    with pytest.raises(InvalidArgument, match="only a purchase"):
        await journal.approve_offline(
            refund.payment_id, auth_code="Y10000", fields={"11": "1"}, limits=Limits(), now=NOW
        )


async def test_forwarded_payments_leave_the_offline_exposure(journal: Journal) -> None:
    limits = Limits(max_count=1)
    assert isinstance(await offline(journal, "a", 100, limits), PaymentRecord)
    entry = (await journal.saf_pending())[0]
    await journal.saf_complete(entry.entry_id, response_code="00", now=NOW)
    assert isinstance(await offline(journal, "b", 100, limits), PaymentRecord)
    probe = await authorizing(journal, "probe")
    exposure = await journal.offline_exposure(probe.payment_id, NOW)
    assert (exposure.count, exposure.total, exposure.for_account) == (1, 100, 1)


async def test_a_refund_waits_for_the_advice_of_its_offline_original(journal: Journal) -> None:
    adv = await offline(journal, "adv", 4_000, Limits())
    assert isinstance(adv, PaymentRecord)
    for unsent in (None, "ledger_unavailable"):
        pending, created = await journal.create_refund(
            original_payment_id=adv.payment_id,
            amount=4_000,
            idempotency_key=None,
            now=NOW,
            unsent_reason=unsent,
        )
        assert created and (pending.state, pending.decline_reason) == ("declined", ADVICE_PENDING)
        assert pending.stan is None
    [entry] = await journal.saf_pending()
    assert entry.kind == "advice"
    await journal.saf_complete(entry.entry_id, response_code="00", now=NOW, rrn="000000000007")
    sent, _ = await journal.create_refund(
        original_payment_id=adv.payment_id, amount=4_000, idempotency_key=None, now=NOW
    )
    assert sent.state == "authorizing" and sent.stan is not None


async def test_bad_saf_answer_is_refused_and_entry_stays_queued(journal: Journal) -> None:
    record = await authorizing(journal, "a")
    _, entry = await journal.start_reversal(
        record.payment_id, fields={"11": "000001"}, stan=1, now=NOW, decline_reason="timeout"
    )
    for kwargs, field in (({"response_code": "0"}, "response_code"), ({"rrn": "x" * 13}, "rrn")):
        args: dict[str, str] = {"response_code": "00"}
        args.update(kwargs)
        with pytest.raises(InvalidArgument) as err:
            await journal.saf_complete(entry.entry_id, now=NOW, **args)
        assert err.value.field == field
    assert [e.entry_id for e in await journal.saf_pending()] == [entry.entry_id]


async def test_a_refused_step_rolls_back_its_earlier_writes(journal: Journal) -> None:
    record = await authorizing(journal, "a")
    _, entry = await journal.start_reversal(
        record.payment_id, fields={"11": "000001"}, stan=1, now=NOW, decline_reason="timeout"
    )
    # saf_complete marks the entry done and then moves the payment; make the second step fail.
    with sqlite3.connect(journal.path, timeout=5) as db:
        db.execute("UPDATE payments SET state = 'declined' WHERE id = ?", (record.payment_id,))
    with pytest.raises(IllegalTransition):
        await journal.saf_complete(entry.entry_id, response_code="00", now=NOW)
    message = await journal.saf_due(NOW)
    assert message is not None and message.entry.entry_id == entry.entry_id
    assert message.fields == {"11": "000001"} and message.entry.attempts == 0


# -- answers that do not settle an entry -----------------------------------------------------


async def test_a_refused_entry_stays_queued_needing_attention_and_is_held(
    tmp_path: Path,
) -> None:
    j = await Journal.open(tmp_path)
    rev = await authorizing(j, "rev", 1_000)
    _, rev_entry = await j.start_reversal(
        rev.payment_id, fields={"11": "000009"}, stan=9, now=NOW, decline_reason="ledger_timeout"
    )
    adv = await authorizing(j, "adv", 2_000)
    await j.approve_offline(
        adv.payment_id, auth_code="Y10001", fields=advice_fields(adv), limits=Limits(), now=NOW
    )
    refused = await j.saf_refused(
        rev_entry.entry_id,
        response_code="30",
        error="ledger answered 30",
        now=NOW + 1,
        next_attempt=NOW + 1 + HOLD,
    )
    assert refused.needs_attention and refused.refused_code == "30"
    assert (refused.attempts, refused.mti, refused.last_error) == (1, "0401", "ledger answered 30")
    assert (await j.get(rev.payment_id)).state == "reversing"  # type: ignore[union-attr]
    summary = await j.saf_summary(NOW + 2)
    assert (summary.pending, summary.needs_attention) == (2, 1)

    # Held: the walk goes on to the next entry, and comes back once the hold is over.
    behind = await j.saf_due(NOW + 2)
    assert behind is not None and behind.entry.kind == "advice"
    assert await j.saf_due(NOW + 2, after_id=behind.entry.entry_id) is None
    assert await j.saf_next_due(exclude=[behind.entry.entry_id]) == NOW + 1 + HOLD
    again = await j.saf_due(NOW + 1 + HOLD)
    assert again is not None and again.entry.entry_id == rev_entry.entry_id
    assert again.mti == "0401" and again.fields == {"11": "000009"}
    forced = await j.saf_due(NOW + 2, force=True)
    assert forced is not None and forced.entry.entry_id == rev_entry.entry_id

    # A later try with no answer keeps the refusal; the restart and the listing show it.
    await j.saf_attempt_failed(rev_entry.entry_id, "no answer in 15 s", NOW + 40, NOW + 40 + HOLD)
    await j.close()
    [listed, _] = saf_listing(tmp_path)
    assert listed.refused_code == "30" and listed.attempts == 2
    doc = listed.to_json()
    assert doc["needs_attention"] is True and doc["refused_code"] == "30"
    assert doc["last_error"] == "no answer in 15 s"
    j = await Journal.open(tmp_path)
    assert await j.saf_next_due(exclude=[behind.entry.entry_id]) == NOW + 40 + HOLD
    # Only 00 settles it; then it is history, and nothing needs attention any more.
    done = await j.saf_complete(rev_entry.entry_id, response_code="00", now=NOW + 70)
    assert done.state == "reversed"
    assert (await j.saf_summary(NOW + 70)).needs_attention == 0
    assert await j.saf_next_due(exclude=[behind.entry.entry_id]) is None
    await j.close()


async def test_a_reversal_is_settled_by_nothing_but_00(journal: Journal) -> None:
    record = await authorizing(journal, "a")
    _, entry = await journal.start_reversal(
        record.payment_id, fields={"11": "000002"}, stan=2, now=NOW, decline_reason="timeout"
    )
    for code in ("30", "12", "25", "05"):
        with pytest.raises(InvalidArgument, match="only 00 settles a reversal"):
            await journal.saf_complete(entry.entry_id, response_code=code, now=NOW)
    [still] = await journal.saf_pending()
    assert still.entry_id == entry.entry_id and still.attempts == 0
    assert (await journal.get(record.payment_id)).state == "reversing"  # type: ignore[union-attr]


async def test_saf_refused_arguments_are_checked(journal: Journal) -> None:
    record = await authorizing(journal, "a")
    _, entry = await journal.start_reversal(
        record.payment_id, fields={"11": "000002"}, stan=2, now=NOW, decline_reason="timeout"
    )
    an2 = "2 letters or digits"
    bad_codes = (("00", "saf_complete"), ("3", an2), ("3-", an2))
    for code, problem in bad_codes:
        with pytest.raises(InvalidArgument, match=problem) as err:
            await journal.saf_refused(
                entry.entry_id, response_code=code, error="x", now=NOW, next_attempt=NOW
            )
        assert err.value.field == "response_code"
    for when in (-1.0, float("nan")):
        with pytest.raises(InvalidArgument) as err:
            await journal.saf_refused(
                entry.entry_id, response_code="30", error="x", now=NOW, next_attempt=when
            )
        assert err.value.field == "next_attempt"
    [still] = await journal.saf_pending()
    assert (still.attempts, still.refused_code) == (0, None)


async def test_an_advice_refused_by_the_ledger_is_declined_and_leaves_the_totals(
    journal: Journal,
) -> None:
    limits = Limits(max_count=1)
    adv = await offline(journal, "adv", 4_000, limits)
    assert isinstance(adv, PaymentRecord)
    [entry] = await journal.saf_pending()
    refused = await journal.saf_complete(entry.entry_id, response_code="51", now=NOW + 5)
    assert (refused.state, refused.response_code, refused.decline_reason) == (
        "declined",
        "51",
        ADVICE_REFUSED,
    )
    assert refused.offline and refused.auth_code == "Y10002"
    assert await journal.saf_pending() == []
    events = [e for e in await journal.events_since(0) if e.payment_id == adv.payment_id]
    assert (events[-1].from_state, events[-1].state) == ("approved_offline", "declined")
    totals = await journal.totals(datetime.datetime.fromtimestamp(NOW).date())
    purchases: dict[str, dict[str, object]] = totals["purchases"]  # type: ignore[assignment]
    assert not SUCCESS_STATES & {state for by_state in purchases.values() for state in by_state}
    day = await journal.payments_today(NOW)
    assert (day["approved"], day["declined"], day["amount"]) == (0, 1, 0)
    # No longer at risk offline, and nothing to refund.
    assert isinstance(await offline(journal, "next", 100, limits), PaymentRecord)
    with pytest.raises(RefundRefused):
        await journal.create_refund(
            original_payment_id=adv.payment_id, amount=1_000, idempotency_key=None, now=NOW
        )


async def test_only_the_ledger_ends_an_offline_approval(journal: Journal) -> None:
    adv = await offline(journal, "adv", 4_000, Limits())
    assert isinstance(adv, PaymentRecord)
    with pytest.raises(IllegalTransition):
        await journal.transition(adv.payment_id, "declined", NOW, decline_reason="x")
    assert (await journal.get(adv.payment_id)).state == "approved_offline"  # type: ignore[union-attr]


async def test_a_journal_of_schema_2_gains_next_attempt_times_as_it_held_them(
    tmp_path: Path,
) -> None:
    """Version 2 held an entry the ledger refused 30 s after its last transmission and sent
    any other at once; version 3 writes those times down, and the queue goes on from there."""
    j = await Journal.open(tmp_path)
    entries = []
    for key in ("refused", "failed", "fresh", "done"):
        record = await authorizing(j, key, 1_000)
        assert record.stan is not None
        _, entry = await j.start_reversal(
            record.payment_id,
            fields={"11": f"{record.stan:06d}"},
            stan=record.stan,
            now=NOW,
            decline_reason="ledger_timeout",
        )
        entries.append(entry.entry_id)
    refused, failed, fresh, done = entries
    await j.saf_refused(refused, response_code="30", error="30", now=NOW + 5, next_attempt=NOW)
    await j.saf_attempt_failed(failed, "no answer", NOW + 6, NOW)
    await j.saf_complete(done, response_code="00", now=NOW + 7)
    await j.close()
    db = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
    db.execute("DROP INDEX saf_next_attempt")  # back to what version 2 wrote
    db.execute("ALTER TABLE saf DROP COLUMN next_attempt_at")
    db.execute("UPDATE schema_version SET version = 2")
    db.close()

    j = await Journal.open(tmp_path)
    try:
        assert (await j.settings())["schema_version"] == 3
        times = {e.entry_id: e.next_attempt_at for e in await j.saf_pending()}
        assert times == {refused: (NOW + 5 + HOLD) * 1000, failed: None, fresh: None}
        assert await j.saf_next_due() == 0.0
        first = await j.saf_due(NOW + 8)
        assert first is not None and first.entry.entry_id == failed  # the refused one waits
        assert await j.saf_next_due(exclude=[failed, fresh]) == NOW + 5 + HOLD
        again = await j.saf_due(NOW + 5 + HOLD)
        assert again is not None and again.entry.entry_id == refused and again.mti == "0401"
    finally:
        await j.close()
