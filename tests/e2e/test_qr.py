"""QR payments through the whole daemon: serial scanner on a pty, journal, reference ledger."""

from __future__ import annotations

import asyncio
import base64
import datetime
from pathlib import Path

import pytest

from posd.sim.ledger_accounts import GOOD_QR_ACCOUNT, POOR_QR_ACCOUNT
from posd.sim.qr_issuer import MERCHANT_PRESENTED_QR
from posd.sim.usb_hid_backend import HidScannerBackend
from protocols.ber_tlv import Tlv, decode_tlv, encode_tlv
from tests.helpers.daemon import RunningDaemon, running_daemon
from tests.helpers.spec_objects import STATE_EXTRA_KEYS, STATE_OBJECT_KEYS

pytestmark = pytest.mark.timeout(60)


def without_element(token: str, tag: int) -> str:
    """A genuine token with one element of its 61/63 templates cut out, as a scan cut short
    or a broken app would give."""

    def strip(items: list[Tlv]) -> list[Tlv]:
        kept = [item for item in items if item.tag != tag]
        return [Tlv(i.tag, encode_tlv(strip(i.children()))) if i.constructed else i for i in kept]

    return base64.b64encode(encode_tlv(strip(decode_tlv(base64.b64decode(token))))).decode()


async def pay_qr(d: RunningDaemon, amount: int, text: str, **kw: bool) -> dict[str, object]:
    created = await d.create(amount, "qr", **kw)  # type: ignore[arg-type]
    assert created["state"] == "waiting_for_card"
    await d.scanner.scan(text)
    return await d.wait_final(str(created["payment_id"]))


async def test_qr_payment_approved_with_benefit_plus(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, terminal={"benefit_plus_rate_bps": 500}) as d:
        before = d.ledger.rules.balance(GOOD_QR_ACCOUNT)
        assert before is not None
        done = await pay_qr(d, 10_000, d.issuer.valid(GOOD_QR_ACCOUNT), benefit_plus=True)
        assert done["state"] == "approved", done
        assert (done["amount"], done["discount"], done["charged"]) == (10_000, 500, 9_500)
        assert done["method"] == "qr" and done["entry_mode"] == "qr"
        assert done["account_last4"] == GOOD_QR_ACCOUNT[-4:]
        assert done["offline"] is False and done["rrn"] and done["auth_code"]
        assert d.ledger.rules.balance(GOOD_QR_ACCOUNT) == before - 9_500


async def test_benefit_plus_asked_at_a_shop_that_is_not_one_gives_no_discount(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as d:
        done = await pay_qr(d, 10_000, d.issuer.valid(GOOD_QR_ACCOUNT), benefit_plus=True)
        assert done["state"] == "approved"
        assert (done["discount"], done["charged"]) == (0, 10_000)


async def test_every_bad_qr_is_declined_with_its_reason_and_never_reaches_the_ledger(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as d:
        replayed = d.issuer.valid(GOOD_QR_ACCOUNT)
        assert (await pay_qr(d, 1_000, replayed))["state"] == "approved"
        financial_before = [s for s in d.ledger.seen if s.mti != "0800"]
        cases = {
            "qr_expired": d.issuer.expired(GOOD_QR_ACCOUNT),
            "qr_not_yet_valid": d.issuer.not_yet_valid(GOOD_QR_ACCOUNT),
            "qr_too_long_lived": d.issuer.too_long_lived(GOOD_QR_ACCOUNT),
            "qr_bad_signature": d.issuer.bad_signature(GOOD_QR_ACCOUNT),
            "qr_unknown_key": d.issuer.unknown_key(GOOD_QR_ACCOUNT),
            "qr_not_seoroeum": MERCHANT_PRESENTED_QR,
            "qr_unreadable": "this is not a token!",
            "qr_incomplete": without_element(d.issuer.valid(GOOD_QR_ACCOUNT), 0xDF05),
            "qr_replayed": replayed,
        }
        for reason, text in cases.items():
            done = await pay_qr(d, 1_000, text)
            assert (done["state"], done["decline_reason"]) == ("declined", reason)
        assert [s for s in d.ledger.seen if s.mti != "0800"] == financial_before


async def test_insufficient_funds(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        done = await pay_qr(d, 50_000, d.issuer.valid(POOR_QR_ACCOUNT))
        assert done["state"] == "declined"
        assert (done["response_code"], done["decline_reason"]) == ("51", "insufficient_funds")


async def test_two_payments_at_once_on_an_idle_terminal_one_is_refused_409(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as d:
        bodies = [
            {"amount": 1_000 + n, "method": "qr", "idempotency_key": f"k{n}", "benefit_plus": False}
            for n in range(2)
        ]
        results = await asyncio.gather(*(d.request("POST", "/v1/payments", b) for b in bodies))
        assert sorted(status for status, _ in results) == [202, 409], results
        [(_, created)] = [r for r in results if r[0] == 202]
        [(_, refused)] = [r for r in results if r[0] == 409]
        assert refused["error"]["code"] == "payment_in_progress", refused
        # The one taken is the one in progress: a scan pays it.
        await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
        done = await d.wait_final(created["payment_id"])
        assert done["state"] == "approved" and done["amount"] == created["amount"], done


async def test_second_payment_while_one_waits_is_refused_409(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        first = await d.create(1_000, "qr", key="a")
        body = {"amount": 2_000, "method": "qr", "idempotency_key": "b", "benefit_plus": False}
        results = await asyncio.gather(
            d.request("POST", "/v1/payments", body), d.request("POST", "/v1/payments", body)
        )
        assert [status for status, _ in results] == [409, 409]
        assert results[0][1]["error"]["code"] == "payment_in_progress"
        status, again = await d.request(
            "POST",
            "/v1/payments",
            {"amount": 1_000, "method": "qr", "idempotency_key": "a", "benefit_plus": False},
        )
        assert (status, again["payment_id"]) == (202, first["payment_id"])  # same key: same one


async def test_cancel_while_waiting_again_and_after_the_qr_was_taken(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        created = await d.create(1_000, "qr")
        pid = created["payment_id"]
        status, body = await d.request("POST", f"/v1/payments/{pid}/cancel")
        assert (status, body["state"]) == (200, "cancelled")
        status, body = await d.request("POST", f"/v1/payments/{pid}/cancel")
        assert (status, body["state"]) == (200, "cancelled")
        # The scanner is free again: a new payment goes through, and is too late to cancel.
        paid = await pay_qr(d, 1_000, d.issuer.valid(GOOD_QR_ACCOUNT))
        assert paid["state"] == "approved"
        status, body = await d.request("POST", f"/v1/payments/{paid['payment_id']}/cancel")
        assert (status, body["error"]["code"]) == (409, "wrong_state")


async def test_nothing_scanned_in_time_is_declined_timeout(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, read_timeout_s=0) as d:
        created = await d.create(1_000, "qr")
        done = await d.wait_final(created["payment_id"], timeout_s=15)
        assert (done["state"], done["decline_reason"]) == ("declined", "timeout")


async def test_idempotency_key_survives_a_restart(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        created = await d.create(3_000, "qr", key="same-key")
        await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
        first = await d.wait_final(created["payment_id"])
        assert first["state"] == "approved"
    async with running_daemon(tmp_path) as d:
        again = await d.create(3_000, "qr", key="same-key")
        assert again["payment_id"] == first["payment_id"]
        assert again["state"] == "approved"
        status, body = await d.request(
            "POST",
            "/v1/payments",
            {"amount": 4_000, "method": "qr", "idempotency_key": "same-key", "benefit_plus": False},
        )
        assert (status, body["error"]["code"]) == (409, "idempotency_key_reused")


async def test_refund_rules(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        before = d.ledger.rules.balance(GOOD_QR_ACCOUNT)
        paid = await pay_qr(d, 10_000, d.issuer.valid(GOOD_QR_ACCOUNT))
        pid = paid["payment_id"]
        status, refund = await d.request(
            "POST", f"/v1/payments/{pid}/refund", {"amount": 4_000, "idempotency_key": "r1"}
        )
        assert status in (200, 202), refund
        assert refund["state"] == "approved" and refund["original_payment_id"] == pid
        status, body = await d.request(
            "POST", f"/v1/payments/{pid}/refund", {"amount": 6_001, "idempotency_key": "r2"}
        )
        assert status == 400 and body["error"]["field"] == "amount", body
        declined = await pay_qr(d, 50_000, d.issuer.valid(POOR_QR_ACCOUNT))
        status, body = await d.request(
            "POST", f"/v1/payments/{declined['payment_id']}/refund", {"amount": 1}
        )
        assert status == 409, body
        assert d.ledger.rules.balance(GOOD_QR_ACCOUNT) == (before or 0) - 6_000


async def test_usb_hid_scanner_through_the_emulating_backend(tmp_path: Path) -> None:
    backend = HidScannerBackend()
    async with running_daemon(tmp_path, usb_backend=backend) as d:
        created = await d.create(2_000, "qr")
        backend.type_code(d.issuer.valid(GOOD_QR_ACCOUNT))
        done = await d.wait_final(created["payment_id"])
        assert done["state"] == "approved", done


async def test_cancel_at_once_after_create(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        body = {"amount": 1_000, "method": "qr", "idempotency_key": "c", "benefit_plus": False}
        status, created = await d.request("POST", "/v1/payments", body)
        assert status == 202
        cancel = await d.request("POST", f"/v1/payments/{created['payment_id']}/cancel")
        assert (cancel[0], cancel[1]["state"]) == (200, "cancelled")


async def test_status_object_and_totals(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as d:
        paid = await pay_qr(d, 10_000, d.issuer.valid(GOOD_QR_ACCOUNT))
        status, _ = await d.request(
            "POST", f"/v1/payments/{paid['payment_id']}/refund", {"amount": 2_500}
        )
        assert status in (200, 202)
        await pay_qr(d, 50_000, d.issuer.valid(POOR_QR_ACCOUNT))  # declined
        status, state = await d.request("GET", "/v1/status")
        assert status == 200
        # posd's additions to mqtt.md's object: a full or failing disk, the API's own
        # listeners, the monitoring link.
        assert set(state) == STATE_OBJECT_KEYS | STATE_EXTRA_KEYS
        assert state["storage"] == {"state": "ready", "last_error": None}
        assert state["api"]["socket"] == str(d.config.api.socket)
        assert state["api"]["tcp"] == {"state": "disabled", "port": None, "last_error": None}
        assert state["terminal_id"] == d.config.terminal.id
        assert state["config_sha256"] == d.config.sha256
        assert state["ledger"]["link"] == "up" and state["ledger"]["last_rtt_ms"] is not None
        assert set(state["devices"]) == {"card_reader", "qr_scanner", "audio"}
        assert state["devices"]["qr_scanner"] == {"state": "ready", "kind": "serial"}
        assert state["saf"] == {
            "pending": 0,
            "pending_amount": 0,
            "oldest_age_s": None,
            "alarm": False,
            "needs_attention": 0,
        }
        # Orders disabled: no order can arrive, unheard or not; the shop is not deaf.
        assert state["orders"] == {
            "alerting": 0,
            "missed_today": 0,
            "link": "disabled",
            "can_alert": None,
            "reason": None,
        }
        assert state["mqtt"] == {"link": "disabled", "last_error": None, "queued": 0, "dropped": 0}
        assert state["payments_today"] == {"approved": 1, "declined": 1, "amount": 10_000}
        # Totals are by the shop's local date.
        created = datetime.datetime.fromisoformat(str(paid["created_at"]).replace("Z", "+00:00"))
        created_on = created.astimezone().date().isoformat()
        status, totals = await d.request("GET", f"/v1/totals?date={created_on}")
        assert status == 200
        assert totals["approved"] == {"count": 1, "amount": 10_000, "charged": 10_000}
        assert totals["refunded"] == {"count": 1, "amount": 2_500}
        assert totals["net_charged"] == 7_500
        assert totals["by_method"]["qr"]["declined"]["count"] == 1
