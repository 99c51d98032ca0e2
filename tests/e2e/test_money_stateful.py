"""The money invariant as a hypothesis state machine (issue 8): payments (chip, contactless,
magstripe, QR), the ledger up, down or silent, crashes with restart (at rest, or at a random
instant after CARD_DATA) and flushes, in any order. After every step each won the ledger
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
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from protocols import srl_messages as srl
from tests.helpers.daemon import FINAL_STATES
from tests.helpers.money import MoneyRig, journal_payments, money_rig

_T = TypeVar("_T")
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
pytestmark = pytest.mark.timeout(3600 if DEEP else 300)
PAYERS = {
    "chip": "seoroeum",
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
        async def pay() -> None:
            if method == "qr":
                payment_id = await self.rig.pay("qr", amount=amount)
            else:
                payment_id = await self.rig.pay("card", PAYERS[method], amount)
            await self.rig.api.wait_state(payment_id, SETTLED_OR_OWED, timeout_s=30)

        self._run(pay())

    @rule(mode=st.sampled_from(["up", "down", "silent"]))
    def ledger(self, mode: str) -> None:
        """Down: connections refused. Silent: it acts on requests and answers none."""

        async def switch() -> None:
            self.rig.ledger.faults.no_answer = mode == "silent"
            if mode == "down" and self.mode != "down":
                await self.rig.ledger_down()
            elif mode != "down":
                # Not waiting for posd to reconnect: its backoff decides when, and payments
                # meanwhile are decided offline.
                await self.rig.ledger.refuse_connections(False)

        self._run(switch())
        self.mode = mode

    @rule(during_payment=st.booleans(), delay_ms=st.integers(0, 120))
    def crash(self, during_payment: bool, delay_ms: int) -> None:
        """SIGKILL, at rest or `delay_ms` after a chip card's CARD_DATA; then a restart on
        the same state dir."""

        async def crash() -> None:
            if during_payment:
                killed = self.rig.kill_after_report(srl.CardData, delay_ms / 1000)
                await self.rig.pay("card", "seoroeum", 1_000 + delay_ms)
                await self.rig.died(killed.wait())
            else:
                await self.rig.kill()
            await self.rig.start(link=False)

        self._run(crash())

    @rule()
    def flush(self) -> None:
        status, body = self._run(self.rig.api.request("POST", "/v1/saf/flush"))
        assert status in (200, 503), (status, body)  # 503: the link is down

    @invariant()
    def every_won_moved_is_accounted_for(self) -> None:
        """Told approved ⇒ moved; moved ⇒ told approved, or still being settled."""
        rows = journal_payments(self.rig.state_dir)
        told = sum(c for _, _, state, c in rows if state in ("approved", "forwarded"))
        pending = sum(c for _, _, state, c in rows if state in PENDING)
        moved = self.rig.moved()
        assert told <= moved <= told + pending, (told, moved, pending, rows)

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
