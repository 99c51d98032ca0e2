"""The proof under kill -9 at random instants (issue 8): a seeded sweep of SIGKILLs 0-120 ms
after the reader sends CARD_DATA, which spans the journal's `authorizing`, the 0200, the 0210,
COMPLETE and its result. One restart loop: each start recovers the payment the last kill cut
and takes the next. Then the queue drains and tests/helpers/money.py's invariant holds."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import pytest

from protocols import srl_messages as srl
from tests.helpers.money import journal_state, money_rig

pytestmark = pytest.mark.timeout(180)

SEED = 8_2026
KILLS = 20
WINDOW_S = 0.120
# A WAN round trip at the ledger, so that the 0200 is in flight for a while, as in the field.
LATENCY_S = 0.03
# Chip (COMPLETE after the 0210), a chip card that refuses at COMPLETE (reversed), contactless
# and magstripe (approved on the 0210 alone).
CARDS = ("seoroeum", "declines-at-complete", "seoroeum-contactless", "seoroeum-magstripe")


def instant(rng: random.Random) -> float:
    """A delay in [0, WINDOW_S), denser early: on an idle machine posd is through the whole
    payment in a few milliseconds, and a uniform draw would mostly kill it at rest."""
    return WINDOW_S * rng.random() ** 3


async def test_killed_at_random_instants_after_card_data_the_money_matches(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    cut_in: collections.Counter[str] = collections.Counter()
    async with money_rig(tmp_path) as rig:
        rig.ledger.latency_s = LATENCY_S
        await rig.start()
        for kill in range(KILLS):
            delay_s = instant(rng)
            killed = rig.kill_after_report(srl.CardData, delay_s)
            payment_id = await rig.pay("card", rng.choice(CARDS), 1_000 + kill)
            await rig.died(killed.wait())
            cut_in[journal_state(rig.state_dir, payment_id)] += 1
            await rig.start()
        await rig.settle()
        await rig.check_money()
    # The sweep cut payments at more than one step (a machine so slow that every kill found
    # the same state would test one instant twenty times).
    assert len(cut_in) >= 2, cut_in
