"""What posd approves while the ledger is unreachable (ledger-iso8583.md, operations.md's
[offline] limits), through the whole daemon with the reference ledger refusing connections:
magstripe never; contactless only with its cryptogram; QR only once fully verified; and a
payment over any limit is declined `offline_limit`, the log naming the limit."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from posd.sim import GOOD_QR_ACCOUNT
from posd.sim.ledger_accounts import DEMO_QR_ACCOUNT
from tests.helpers.daemon import RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)


async def pay_card(d: RunningDaemon, amount: int, card: str) -> dict[str, Any]:
    created = await d.create(amount, "card")
    assert d.reader is not None
    d.reader.present(card)
    return await d.wait_final(str(created["payment_id"]))


async def pay_qr(d: RunningDaemon, amount: int, token: str) -> dict[str, Any]:
    created = await d.create(amount, "qr")
    await d.scanner.scan(token)
    return await d.wait_final(str(created["payment_id"]))


async def queued(d: RunningDaemon) -> int:
    return int((await d.wait_status(lambda s: True))["saf"]["pending"])


def outcome(payment: dict[str, Any]) -> tuple[str, str | None, bool]:
    return payment["state"], payment["decline_reason"], payment["offline"]


async def test_magstripe_and_contactless_without_a_cryptogram_are_never_approved_offline(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, card_reader=True, ledger_up=False) as d:
        swiped = await pay_card(d, 1_000, "seoroeum-magstripe")
        assert outcome(swiped) == ("declined", "ledger_unavailable", False), swiped
        assert swiped["auth_code"] is None
        tapped = await pay_card(d, 1_000, "contactless-no-cryptogram")
        assert outcome(tapped) == ("declined", "ledger_unavailable", False), tapped
        assert await queued(d) == 0
        # A contactless card that gives its cryptogram may be approved offline.
        with_cryptogram = await pay_card(d, 1_000, "seoroeum-contactless")
        assert outcome(with_cryptogram) == ("approved_offline", None, True), with_cryptogram
        assert str(with_cryptogram["auth_code"]).startswith("Y1")
        assert await queued(d) == 1
        await d.ledger.refuse_connections(False)
        await d.wait_state(str(with_cryptogram["payment_id"]), {"forwarded"})
        # Only the forwarded one reached the ledger, as its advice.
        assert [s.mti for s in d.ledger.seen if s.mti != "0800"] == ["0220"]


async def test_a_qr_is_approved_offline_only_once_fully_verified(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, ledger_up=False) as d:
        refused = {
            "qr_expired": d.issuer.expired(GOOD_QR_ACCOUNT),
            "qr_not_yet_valid": d.issuer.not_yet_valid(GOOD_QR_ACCOUNT),
            "qr_too_long_lived": d.issuer.too_long_lived(GOOD_QR_ACCOUNT),
            "qr_bad_signature": d.issuer.bad_signature(GOOD_QR_ACCOUNT),
            "qr_unknown_key": d.issuer.unknown_key(GOOD_QR_ACCOUNT),
        }
        for reason, token in refused.items():
            done = await pay_qr(d, 1_000, token)
            assert outcome(done) == ("declined", reason, False), done
        token = d.issuer.valid(GOOD_QR_ACCOUNT)
        approved = await pay_qr(d, 1_000, token)
        assert outcome(approved) == ("approved_offline", None, True), approved
        replayed = await pay_qr(d, 1_000, token)
        assert outcome(replayed) == ("declined", "qr_replayed", False), replayed
        assert await queued(d) == 1


# (offline section, amounts paid in turn, the limit the last one is over)
LIMITS = [
    ({"max_payment": 5_000}, [5_001], "offline_limit_payment"),
    ({"max_count": 1, "max_per_account": 1}, [1_000, 1_000], "offline_limit_count"),
    ({"max_payment": 5_000, "max_total": 8_000}, [5_000, 3_001], "offline_limit_total"),
]


@pytest.mark.parametrize(("offline", "amounts", "limit"), LIMITS, ids=[x[2] for x in LIMITS])
async def test_over_an_offline_limit_is_declined_offline_limit_naming_it_in_the_log(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    offline: dict[str, int],
    amounts: list[int],
    limit: str,
) -> None:
    caplog.set_level(logging.INFO, logger="posd.payments")
    section = {"enabled": True, **offline}
    async with running_daemon(tmp_path, ledger_up=False, offline=section) as d:
        *within, over = amounts
        for amount in within:
            done = await pay_qr(d, amount, d.issuer.valid(GOOD_QR_ACCOUNT))
            assert done["state"] == "approved_offline", done
        declined = await pay_qr(d, over, d.issuer.valid(DEMO_QR_ACCOUNT))
        assert outcome(declined) == ("declined", "offline_limit", False), declined
        assert await queued(d) == len(within)
    logged = [r.getMessage() for r in caplog.records if declined["payment_id"] in r.getMessage()]
    assert any(limit in line for line in logged), logged


async def test_over_the_per_account_limit_only_that_account_is_declined(tmp_path: Path) -> None:
    offline = {"enabled": True, "max_per_account": 1}
    async with running_daemon(tmp_path, ledger_up=False, offline=offline) as d:
        first = await pay_qr(d, 1_000, d.issuer.valid(GOOD_QR_ACCOUNT))
        assert first["state"] == "approved_offline", first
        again = await pay_qr(d, 1_000, d.issuer.valid(GOOD_QR_ACCOUNT))
        assert outcome(again) == ("declined", "offline_limit", False), again
        other = await pay_qr(d, 1_000, d.issuer.valid(DEMO_QR_ACCOUNT))
        assert other["state"] == "approved_offline", other


async def test_offline_approval_switched_off_is_ledger_unavailable(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, ledger_up=False, offline={"enabled": False}) as d:
        done = await pay_qr(d, 1_000, d.issuer.valid(GOOD_QR_ACCOUNT))
        assert outcome(done) == ("declined", "ledger_unavailable", False), done
