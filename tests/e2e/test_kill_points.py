"""The proof under kill -9 (issue 8): `posd run` SIGKILLed at each dangerous instant of a
payment and of the queue, started again on the same state dir, the queue drained; then the
money moved at the ledger is what the customers were told, every payment is final and no
0200 was resent (tests/helpers/money.py checks it).

The instants are taken in one restart loop (each restart recovers the last kill's payment and
serves the next), from outside at protocol events where a peer sees them (the ledger's
received/answered, the reader's commands), from inside through a failpoint where none does.
A chip card holding COMPLETE is test_crash_at_complete.py's; random instants are
test_kill_sweep.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from posd.runtime.failpoints import ENV as FAILPOINTS
from tests.helpers.money import MoneyRig, answered, arrives, journal_state, money_rig

pytestmark = pytest.mark.timeout(120)


async def paid_offline(rig: MoneyRig, amount: int) -> str:
    payment_id = await rig.pay("card", "approves-offline", amount)
    assert (await rig.outcome(payment_id))["state"] == "approved_offline"
    return payment_id


async def test_killed_at_each_instant_the_money_matches_what_customers_were_told(
    tmp_path: Path,
) -> None:
    async with money_rig(tmp_path) as rig:
        # `authorizing` is on disk, the 0200 not sent: no peer sees this instant (failpoint).
        await rig.start(env={FAILPOINTS: "payments.before_0200=kill"})
        first = await rig.pay("card", "seoroeum", 1_000)
        await rig.died()
        assert journal_state(rig.state_dir, first) == "authorizing"
        assert [s.mti for s in rig.ledger.seen if s.mti != "0800"] == []
        await rig.start()
        done = await rig.outcome(first)
        assert (done["state"], done["decline_reason"]) == ("reversed", "interrupted"), done
        assert rig.moved() == 0

        # The 0200 at the ledger, unanswered: posd dies as it arrives, then the ledger books
        # it; recovery reverses it and the money comes back.
        killed = rig.kill_at_ledger(arrives("0200"))
        second = await rig.pay("qr", amount=2_000)
        await rig.died(killed.wait())
        assert rig.moved() == 2_000
        await rig.start()
        assert (await rig.outcome(second))["state"] == "reversed"
        assert rig.moved() == 0

        # Right after the 0210 is written to posd's socket. A chip card has not been told
        # COMPLETE: reversed. A contactless payment stands if posd journaled the answer before
        # it died, and is reversed if not; either way the money follows.
        for card, outcomes in (("seoroeum", {"reversed"}), ("seoroeum-contactless", None)):
            killed = rig.kill_at_ledger(answered("0210"))
            payment_id = await rig.pay("card", card, 3_000)
            await rig.died(killed.wait())
            await rig.start()
            state = (await rig.outcome(payment_id))["state"]
            assert state in (outcomes or {"approved", "reversed"}), (card, state)

        # In the middle of forwarding advices: killed as the second of three reaches the
        # ledger, which books it once posd is gone. The restarted queue sends it again (same
        # STAN and field 7) and the ledger answers its first answer: booked once.
        await rig.ledger_down()
        offline = [await paid_offline(rig, amount) for amount in (1_100, 1_200, 1_300)]
        before = rig.moved()
        killed = rig.kill_at_ledger(arrives("0220", "0221", nth=2))
        await rig.ledger.refuse_connections(False)
        await rig.died(killed.wait())
        assert rig.moved() == before + 1_100 + 1_200
        await rig.start()
        await rig.settle()
        for payment_id in offline:
            assert (await rig.outcome(payment_id))["state"] == "forwarded"
        advices = [s.stan for s in rig.ledger.seen if s.mti in ("0220", "0221")]
        assert len(advices) == 4 and len(set(advices)) == 3, advices

        await rig.check_money()
        assert rig.kills == 5
