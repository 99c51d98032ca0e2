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

import asyncio
from pathlib import Path

import pytest

from posd.runtime.failpoints import ENV as FAILPOINTS
from tests.helpers.money import (
    LEDGER_TIMEOUT_S,
    LINK_WAIT_S,
    MoneyRig,
    answered,
    arrives,
    journal_state,
    money_rig,
    nth,
    wait_for_log,
)

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
        # Its reversal at the ledger, unanswered: killed as the 0400 arrives (the ledger then
        # answers it, for a 0200 it never saw: 00). Sent again after the restart, with the
        # same MTI (that try was never counted): answered with the first answer.
        killed = rig.kill_at_ledger(arrives("0400"))
        await rig.start(ready=False)
        await rig.died(killed.wait())
        assert journal_state(rig.state_dir, first) == "reversing"
        await rig.start()
        done = await rig.outcome(first)
        assert (done["state"], done["decline_reason"]) == ("reversed", "interrupted"), done
        reversals = [(s.mti, s.stan) for s in rig.ledger.seen if s.mti in ("0400", "0401")]
        assert len(reversals) == 2 and len(set(reversals)) == 1, reversals
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
        # STAN and field 7) and the ledger answers its first answer: booked once. The first
        # goes again too when its answer was not on disk yet (up to 4 are in flight at once).
        await rig.ledger_down()
        offline = [await paid_offline(rig, amount) for amount in (1_100, 1_200, 1_300)]
        before = rig.moved()
        killed = rig.kill_at_ledger(arrives("0220", "0221", nth_one=2))
        await rig.ledger.refuse_connections(False)
        await rig.died(killed.wait())
        # The third may be on the wire already, and booked as well.
        assert rig.moved() - before in (1_100 + 1_200, 1_100 + 1_200 + 1_300), rig.moved()
        await rig.start()
        await rig.settle()
        for payment_id in offline:
            assert (await rig.outcome(payment_id))["state"] == "forwarded"
        advices = [s.stan for s in rig.ledger.seen if s.mti in ("0220", "0221")]
        assert len(set(advices)) == 3, advices
        assert advices.count(advices[1]) >= 2, advices  # the second: before the kill and after

        await rig.check_money()
        assert rig.kills == 6


async def test_ledger_faults_the_money_matches_what_customers_were_told(tmp_path: Path) -> None:
    async with money_rig(tmp_path) as rig:
        await rig.start()
        ledger = rig.ledger

        # Silent on a 0200: it moved the money, the answer is lost. posd reverses (never
        # resends); the ledger speaks again as the reversal arrives.
        ledger.faults.no_answer = True
        rig.on_ledger(arrives("0400"), lambda: setattr(ledger.faults, "no_answer", False))
        silent = await rig.pay("card", "seoroeum-contactless", 1_500)
        done = await rig.outcome(silent)
        assert (done["state"], done["decline_reason"]) == ("reversed", "ledger_timeout"), done
        assert rig.moved() == 0

        # Duplicate answers: every answer twice; the second 0210 finds no waiting request.
        ledger.faults.duplicate = True
        second_0210 = rig.on_ledger(nth(answered("0210"), 2), lambda: None)
        doubled = await rig.pay("qr", amount=1_600)
        assert (await rig.outcome(doubled))["state"] == "approved"
        async with asyncio.timeout(10):
            await second_0210.wait()
        twice = [e for e in ledger.events if answered("0210")(e)]
        assert len(twice) == 2 and twice[0].stan == twice[1].stan, twice
        ledger.faults.duplicate = False
        assert rig.moved() == 1_600

        # Answers out of order: an advice in flight when the ledger comes back, a 0200 beside
        # it (queued traffic never delays a payment); both answers held, sent last first.
        # The payment waits for its card meanwhile, so that its 0200 follows the advice at
        # once, well within the advice's timeout.
        await rig.ledger_down()
        advised = await paid_offline(rig, 1_700)
        ledger.faults.reverse_order = 2
        beside = await rig.pay("card", amount=1_800, present=False)
        advice_out = rig.on_ledger(
            arrives("0220"), lambda: rig.reader.present("seoroeum-contactless")
        )
        await rig.ledger.refuse_connections(False)
        async with asyncio.timeout(LINK_WAIT_S):
            await advice_out.wait()
        assert (await rig.outcome(beside))["state"] == "approved"
        assert (await rig.outcome(advised))["state"] == "forwarded"
        order = [e.mti for e in ledger.events if e.kind == "answered" and e.mti != "0810"]
        assert order[-2:] == ["0210", "0230"], order
        ledger.faults.reverse_order = 0
        assert rig.moved() == 1_600 + 1_700 + 1_800

        # The connection dropped mid-message: half the 0210, then the cut. The ledger moved
        # the money; posd never got an answer, so it reverses once the link is back.
        ledger.faults.drop_mid_message = True
        cut = await rig.pay("qr", amount=1_900)
        done = await rig.outcome(cut)
        assert done["state"] == "reversed", done
        assert any(e.kind == "cut" and e.mti == "0210" for e in ledger.events)

        # A late 0210 after its payment was reversed: logged, ignored, the reversal stands.
        ledger.faults.delay_s = LEDGER_TIMEOUT_S + 1.5
        rig.on_ledger(arrives("0400"), lambda: setattr(ledger.faults, "delay_s", 0.0))
        late = await rig.pay("card", "seoroeum-contactless", 2_100)
        assert (await rig.outcome(late))["state"] == "reversed"
        stan = next(s.stan for s in reversed(ledger.seen) if s.mti == "0200")
        await ledger.wait_event(
            lambda e: e.kind == "answered" and e.mti == "0210" and e.stan == stan, 15
        )
        log = rig.tmp_path / "posd-process.log"
        expected = f"answer 0210 stan {stan:06d} matches no waiting request"
        await wait_for_log(log, expected)
        assert (await rig.api.payment(late))["state"] == "reversed"

        await rig.settle()
        await rig.check_money()
        assert rig.moved() == 1_600 + 1_700 + 1_800
