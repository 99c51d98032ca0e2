"""The money invariant as a hypothesis state machine (issue 8): payments (chip, contactless,
magstripe, QR), the ledger up, down, silent, late or doubling its answers, crashes with
restart (at rest, or at a random instant after CARD_DATA), the ledger connection cut at such
an instant, and flushes, in any order. After every step each won the ledger
moved is accounted for; at the end, the link staying up, the queue drains and
tests/helpers/money.py's invariant holds.

Why the real daemon and not the engine in-process: a crash must be a real SIGKILL of `posd
run` (no finally, no flush, a half-written socket), and a step costs an API call on a daemon
that keeps running, so only a crash pays for a start (about half a second). The rig's peers
(ledger, reader, scanner) run on an event loop in a thread of their own, so they keep
answering between steps; each rule waits on it.

The default profile runs a few short examples (derandomized, as the suite's profiles are);
HYPOTHESIS_PROFILE=deep runs many longer ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from protocols import srl_messages as srl
from tests.helpers.daemon import FINAL_STATES
from tests.helpers.money import (
    LEDGER_TIMEOUT_S,
    MoneyRig,
    journal_payments,
    journal_state,
    money_rig,
)

_T = TypeVar("_T")
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
pytestmark = pytest.mark.timeout(3600 if DEEP else 300)
MODES = ("up", "down", "silent", "late", "doubled", "reordered", "bad-mac", "malfunction")
PAYERS = {
    "chip": "seoroeum",
    "chip-refused-at-complete": "declines-at-complete",
    "chip-poor": "insufficient-funds",
    "chip-offline": "approves-offline",
    "contactless": "seoroeum-contactless",
    "magstripe": "seoroeum-magstripe",
}
# A payment's outcome: final, or reversing (a silent ledger leaves the reversal unanswered).
SETTLED_OR_OWED = FINAL_STATES | {"reversing"}
# Payments whose money may have moved at the ledger though the customer was not told so (yet):
# a 0200 or advice out without its answer, a reversal not yet answered.
PENDING = frozenset({"authorizing", "reversing", "approved_offline"})


class MoneyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._dir = tempfile.TemporaryDirectory(prefix="posd-money-")
        self._stack = contextlib.AsyncExitStack()
        self.rig: MoneyRig = self._run(
            self._stack.enter_async_context(money_rig(Path(self._dir.name)))
        )
        self.mode = "up"
        self._run(self.rig.start())

    def _run(self, coro: Coroutine[Any, Any, _T], timeout_s: float = 120) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    @rule(method=st.sampled_from([*PAYERS, "qr"]), amount=st.integers(100, 20_000))
    def pay(self, method: str, amount: int) -> None:
        async def pay() -> str:
            if method == "qr":
                payment_id = await self.rig.pay("qr", amount=amount)
            else:
                payment_id = await self.rig.pay("card", PAYERS[method], amount)
            done = await self.rig.api.wait_state(payment_id, SETTLED_OR_OWED, timeout_s=30)
            return str(done["state"])

        # Events are recorded here: hypothesis keeps its context in the rule's thread.
        event(f"pay {method} with the ledger {self.mode}: {self._run(pay())}")

    @rule(mode=st.sampled_from(MODES))
    def ledger(self, mode: str) -> None:
        """Down: connections refused. Silent: it acts on requests and answers none. Late:
        every answer comes after posd gave up. Doubled: every answer twice. Reordered: answers
        held in pairs, sent last first. Bad-mac: answers with a wrong MAC. Malfunction: 96 to
        every financial request, acting on none."""

        async def switch() -> None:
            faults = self.rig.ledger.faults
            faults.no_answer = mode == "silent"
            faults.delay_s = LEDGER_TIMEOUT_S + 0.5 if mode == "late" else 0.0
            faults.duplicate = mode == "doubled"
            faults.reverse_order = 2 if mode == "reordered" else 0
            faults.wrong_mac = mode == "bad-mac"
            faults.respond_with = "96" if mode == "malfunction" else None
            if mode == "down" and self.mode != "down":
                await self.rig.ledger_down()
            elif mode != "down":
                # Not waiting for posd to reconnect: its backoff decides when, and payments
                # meanwhile are decided offline.
                await self.rig.ledger.refuse_connections(False)

        self._run(switch())
        self.mode = mode

    @rule(
        card=st.sampled_from(sorted(PAYERS)),
        delay_ms=st.integers(0, 120),
        how=st.sampled_from(["kill", "cut"]),
    )
    def interrupt(self, card: str, delay_ms: int, how: str) -> None:
        """`delay_ms` after the card's CARD_DATA: posd SIGKILLed (then started again on the
        same state dir), or its ledger connection cut (it reconnects)."""

        async def interrupt() -> str:
            if how == "kill":
                killed = self.rig.kill_after_report(srl.CardData, delay_ms / 1000)
                payment_id = await self.rig.pay("card", PAYERS[card], 1_000 + delay_ms)
                await self.rig.died(killed.wait())
                state = journal_state(self.rig.state_dir, payment_id)
                await self.rig.start(link=False)
                return f"killed in {state}"
            cut = self.rig.call_after_report(
                srl.CardData, delay_ms / 1000, self.rig.ledger.drop_connections
            )
            payment_id = await self.rig.pay("card", PAYERS[card], 1_000 + delay_ms)
            await cut.wait()
            done = await self.rig.api.wait_state(payment_id, SETTLED_OR_OWED, timeout_s=30)
            return f"cut, then {done['state']}"

        event(self._run(interrupt()))

    @rule(pick=st.integers(0, 1_000), percent=st.integers(1, 100))
    def refund(self, pick: int, percent: int) -> None:
        """A refund of part of a payment the customer was told approved (or forwarded). No
        precondition: which payments are refundable depends on the daemon's timing, and
        hypothesis must draw the same steps when it replays or shrinks a failure."""
        refundable = self._refundable()
        if not refundable:
            event("refund: nothing to refund")
            return
        payment_id, charged = refundable[pick % len(refundable)]

        async def refund() -> str:
            amount = max(1, charged * percent // 100)
            path = f"/v1/payments/{payment_id}/refund"
            status, body = await self.rig.api.request("POST", path, {"amount": amount})
            # 400: more than is left to refund; 409: nothing to refund it against (no RRN
            # yet); 503: the ledger link is down.
            assert status in (202, 400, 409, 503), (status, body)
            outcome = str(status)
            if status == 202:
                self.rig.payment_ids.append(str(body["payment_id"]))
                done = await self.rig.api.wait_state(body["payment_id"], SETTLED_OR_OWED, 30)
                outcome = str(done["state"])
            return outcome

        event(f"refund with the ledger {self.mode}: {self._run(refund())}")

    def _refundable(self) -> list[tuple[str, int]]:
        rows = journal_payments(self.rig.state_dir)
        return [
            (pid, charged)
            for pid, kind, state, charged in rows
            if kind == "purchase" and state in ("approved", "forwarded")
        ]

    @rule()
    def crash(self) -> None:
        """SIGKILL at rest (the queue may be sending), then a restart on the same state dir."""

        async def crash() -> None:
            await self.rig.kill()
            await self.rig.start(link=False)

        self._run(crash())

    @rule()
    def flush(self) -> None:
        status, body = self._run(self.rig.api.request("POST", "/v1/saf/flush"))
        assert status in (200, 503), (status, body)  # 503: the link is down

    @invariant()
    def every_won_moved_is_accounted_for(self) -> None:
        """Told approved ⇒ moved; moved ⇒ told approved, or still being settled (a refund
        moves money back)."""
        told = pending = refunding = 0
        for _, kind, state, charged in journal_payments(self.rig.state_dir):
            sign = 1 if kind == "purchase" else -1
            if state in ("approved", "forwarded"):
                told += sign * charged
            elif state in PENDING and kind == "purchase":
                pending += charged
            elif state in PENDING:
                refunding += charged
        moved = self.rig.moved()
        assert told - refunding <= moved <= told + pending, (told, moved, pending, refunding)

    def teardown(self) -> None:
        try:
            # The link stays up: the queue ends empty, every payment final, the money right.
            self._run(self.rig.settle())
            self._run(self.rig.check_money())
        finally:
            self._run(self._stack.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._dir.cleanup()


MoneyMachine.TestCase.settings = settings(
    max_examples=40 if DEEP else 3, stateful_step_count=12 if DEEP else 6
)
TestMoney = MoneyMachine.TestCase
