"""Card payments through the whole daemon: the simulated SRL/1 reader on a pty."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.daemon import RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)


async def pay_card(d: RunningDaemon, amount: int, card: str, **kw: bool) -> dict[str, object]:
    created = await d.create(amount, "card", **kw)  # type: ignore[arg-type]
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
