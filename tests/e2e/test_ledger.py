"""The ledger side of payments through the whole daemon: offline approval and its advice,
timeouts and wrong MACs reversed, crash recovery, mutual TLS."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from posd.journal import CardSecrets, Journal
from posd.sim import GOOD_QR_ACCOUNT
from tests.helpers.configs import write_tls_files
from tests.helpers.daemon import RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)


async def start_qr(d: RunningDaemon, amount: int) -> str:
    created = await d.create(amount, "qr")
    await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
    return str(created["payment_id"])


async def test_ledger_down_offline_approval_then_forwarded(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, ledger_up=False) as d:
        pid = await start_qr(d, 10_000)
        done = await d.wait_final(pid)
        assert done["state"] == "approved_offline" and done["offline"] is True
        assert done["auth_code"].startswith("Y1") and len(done["auth_code"]) == 6
        queued = await d.wait_status(lambda s: s["saf"]["pending"] == 1)
        assert queued["saf"]["pending_amount"] == 10_000
        # Beyond the offline limit: declined for it.
        big = await start_qr(d, 60_000)
        assert (await d.wait_final(big))["decline_reason"] == "offline_limit"
        await d.ledger.refuse_connections(False)
        forwarded = await d.wait_state(pid, {"forwarded"})
        assert forwarded["offline"] is True
        assert any(s.mti == "0220" for s in d.ledger.seen)
        await d.wait_status(lambda s: s["saf"]["pending"] == 0)
        # Forwarded, it can be refunded like any approved payment (90 names the 0220).
        status, refund = await d.request("POST", f"/v1/payments/{pid}/refund", {"amount": 4_000})
        assert (status, refund["state"]) == (202, "approved"), refund


async def test_no_answer_to_the_0200_is_reversed_never_resent(tmp_path: Path) -> None:
    # A short ledger timeout: the test waits out one for the 0200 and one for the 0400.
    async with running_daemon(tmp_path, ledger={"timeout_s": 0.5}) as d:
        d.ledger.faults.no_answer = True
        pid = await start_qr(d, 5_000)
        failed = await d.wait_state(pid, {"reversing"})
        assert failed["decline_reason"] == "ledger_timeout"
        await d.ledger.wait_seen(lambda s: s.mti == "0400")
        await d.ledger.wait_seen(lambda s: s.mti == "0401")  # repeats until answered
        d.ledger.faults.no_answer = False
        await d.wait_state(pid, {"reversed"})
        assert [s.mti for s in d.ledger.seen].count("0200") == 1


async def test_wrong_mac_on_the_answer_is_declined_ledger_security_and_reversed(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as d:
        d.ledger.faults.wrong_mac = True
        pid = await start_qr(d, 5_000)
        failed = await d.wait_state(pid, {"reversing", "reversed"})
        assert failed["decline_reason"] == "ledger_security"
        d.ledger.faults.wrong_mac = False
        await d.wait_state(pid, {"reversed"})


async def test_an_answer_for_another_amount_is_no_answer_and_the_payment_is_reversed(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as d:
        before = d.ledger.rules.balance(GOOD_QR_ACCOUNT)
        d.ledger.faults.tamper = {4: f"{1:012d}"}  # approved, for 1 won
        pid = await start_qr(d, 5_000)
        failed = await d.wait_state(pid, {"reversing", "reversed"})
        assert (failed["state"], failed["decline_reason"]) == ("reversing", "ledger_timeout")
        assert failed["rrn"] is None and failed["auth_code"] is None  # nothing of it is kept
        d.ledger.faults.tamper = {}
        await d.wait_state(pid, {"reversed"})
        assert d.ledger.rules.balance(GOOD_QR_ACCOUNT) == before


async def test_the_status_object_has_the_ledgers_clock_from_each_sign_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="posd.ledger")
    async with running_daemon(tmp_path) as d:
        status = await d.wait_status(lambda s: s["ledger"]["clock_skew_s"] is not None)
        assert abs(status["ledger"]["clock_skew_s"]) <= 2.0
        assert "the ledger's clock is" not in caplog.text
        d.ledger.clock_offset_s = -45.0
        d.ledger.drop_connections()  # the next sign-on's 0810 tells the new clock
        status = await d.wait_status(
            lambda s: s["ledger"]["link"] == "up" and (s["ledger"]["clock_skew_s"] or 0) < -40
        )
        assert status["ledger"]["clock_skew_s"] >= -47
        assert "the ledger's clock is -4" in caplog.text


async def test_crash_recovery_reverses_unanswered_and_cancels_waiting(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    journal = await Journal.open(state_dir)
    now = time.time()
    waiting, _ = await journal.create_payment(
        amount=1_000, charged=1_000, method="card", idempotency_key="w", now=now
    )
    stuck, _ = await journal.create_payment(
        amount=2_000, charged=2_000, method="qr", idempotency_key="s", now=now
    )
    await journal.begin_authorization(
        stuck.payment_id,
        CardSecrets(entry_mode="qr", pan=GOOD_QR_ACCOUNT, qr_text="QUJDREVGR0g="),
        now,
    )
    await journal.close()
    async with running_daemon(tmp_path) as d:
        assert (await d.payment(waiting.payment_id))["state"] == "cancelled"
        await d.wait_state(stuck.payment_id, {"reversed"})
        assert any(s.mti == "0400" for s in d.ledger.seen)


async def test_mutual_tls_ledger(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, tls=True) as d:
        done = await d.wait_final(await start_qr(d, 1_000))
        assert done["state"] == "approved"


async def test_ledger_with_a_certificate_of_another_ca_is_refused(tmp_path: Path) -> None:
    other = write_tls_files(tmp_path / "other")
    async with running_daemon(
        tmp_path, tls=True, expect_link=False, ledger={"ca_file": str(other.ca_file)}
    ) as d:
        status = await d.wait_status(lambda s: s["ledger"]["last_error"] is not None)
        assert status["ledger"]["link"] != "up"
        assert "certificate" in status["ledger"]["last_error"].lower()
        assert not [s for s in d.ledger.seen if s.mti == "0800"]


async def test_saf_flush_forwards_now_and_is_refused_while_the_link_is_down(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, saf_retry_interval_s=600, ledger={"timeout_s": 0.5}) as d:
        d.ledger.faults.no_answer = True
        pid = await start_qr(d, 5_000)
        await d.wait_state(pid, {"reversing"})
        await d.wait_status(lambda s: s["saf"]["pending"] == 1)
        async with asyncio.timeout(10):  # until the 0400's try has timed out
            while True:
                status, body = await d.request("GET", "/v1/saf")
                queue = body["queue"]
                if queue and queue[0]["last_error"]:
                    break
                await asyncio.sleep(0.05)
        assert status == 200 and [e["kind"] for e in queue] == ["reversal"]
        assert queue[0]["payment_id"] == pid and queue[0]["amount"] == 5_000
        assert queue[0]["account_last4"] == GOOD_QR_ACCOUNT[-4:]
        assert queue[0]["attempts"] >= 1 and queue[0]["last_error"]
        d.ledger.faults.no_answer = False
        status, flushed = await d.request("POST", "/v1/saf/flush")
        assert (status, flushed) == (200, {"forwarded": 1, "pending": 0})
        assert (await d.payment(pid))["state"] == "reversed"
        await d.ledger.refuse_connections(True)
        await d.wait_status(lambda s: s["ledger"]["link"] != "up")
        status, body = await d.request("POST", "/v1/saf/flush")
        assert (status, body["error"]["code"]) == (503, "device_not_ready")
