"""Card payments through the whole daemon: the simulated SRL/1 reader on a pty."""

from __future__ import annotations

from pathlib import Path

import pytest

from posd.sim import GOOD_QR_ACCOUNT
from tests.helpers.daemon import RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)


async def pay_card(
    d: RunningDaemon, amount: int, card: str, method: str = "card", benefit_plus: bool = False
) -> dict[str, object]:
    created = await d.create(amount, method, benefit_plus=benefit_plus)
    assert d.reader is not None
    d.reader.present(card)
    return await d.wait_final(str(created["payment_id"]))


async def test_card_payments(tmp_path: Path) -> None:
    async with running_daemon(
        tmp_path, card_reader=True, terminal={"benefit_plus_rate_bps": 300}
    ) as d:
        chip = await pay_card(d, 10_000, "seoroeum", benefit_plus=True)
        assert (chip["state"], chip["entry_mode"], chip["charged"]) == ("approved", "chip", 9_700)
        assert chip["card_last4"] == "0001"
        for card, mode in (
            ("seoroeum-contactless", "contactless"),
            ("seoroeum-magstripe", "magstripe"),
        ):
            done = await pay_card(d, 1_000, card)
            assert (done["state"], done["entry_mode"]) == ("approved", mode), done
        poor = await pay_card(d, 50_000, "insufficient-funds")
        assert poor["decline_reason"] == "insufficient_funds"
        expired = await pay_card(d, 1_000, "expired")
        assert expired["decline_reason"] == "card_expired"
        foreign = await pay_card(d, 1_000, "foreign")
        assert foreign["decline_reason"] == "card_not_accepted"
        aac = await pay_card(d, 1_000, "declines-at-complete")
        assert (
            aac["state"] in ("reversing", "reversed") and aac["decline_reason"] == "card_declined"
        )


async def test_reader_unplugged_mid_payment_declines_and_replug_serves_again(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        created = await d.create(1_000, "card")
        await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "busy")
        d.reader.unplug()
        done = await d.wait_final(created["payment_id"])
        assert (done["state"], done["decline_reason"]) == ("declined", "reader_error")
        status, body = await d.request(
            "POST",
            "/v1/payments",
            {"amount": 1_000, "method": "card", "idempotency_key": "x", "benefit_plus": False},
        )
        assert (status, body["error"]["code"]) == (503, "device_not_ready")
        d.reader.replug()
        await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "ready")
        again = await pay_card(d, 1_000, "seoroeum")
        assert again["state"] == "approved"


async def test_method_any_first_wins_and_the_other_is_cancelled(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        created = await d.create(1_500, "any")
        await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "busy")
        await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
        by_qr = await d.wait_final(created["payment_id"])
        assert (by_qr["state"], by_qr["method"], by_qr["entry_mode"]) == ("approved", "qr", "qr")
        # The card read was cancelled at the reader: it is free for the next payment.
        await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "ready")
        by_card = await pay_card(d, 1_500, "seoroeum-contactless", method="any")
        assert (by_card["state"], by_card["method"]) == ("approved", "card")
