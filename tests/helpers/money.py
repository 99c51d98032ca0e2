"""The money rig: `posd run` as a child process, SIGKILLed and started again on one state dir,
against the reference ledger, the simulated card reader and a serial QR scanner on ptys; and
the invariant every fault-injection test ends with (issue 8's proof).

    async with money_rig(tmp_path) as rig:
        await rig.start()
        dead = rig.kill_at_ledger(lambda e: e.kind == "received" and e.mti == "0200")
        payment_id = await rig.pay("qr")
        await rig.died(dead)
        await rig.start()           # the same state dir: recovery
        await rig.settle()          # the link stays up: the queue drains
        await rig.check_money()

The invariant: the money moved at the ledger (its account book: how far the balances fell
since the rig started) equals the sum of `charged` over the payments whose final state is
approved or forwarded (less approved refunds); every payment is in a final state; the queue
is empty; no 0200 reached the ledger twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posd.config import Config, load_config
from posd.sim import LedgerSimulator, QrIssuer, SimulatedCardReader, SimulatedSerialScanner
from posd.sim.ledger import Faults, LedgerEvent
from posd.sim.ledger_accounts import GOOD_QR_ACCOUNT
from protocols import srl_messages as srl
from tests.helpers.daemon import FINAL_STATES, PosClient, daemon_process, shop_peers

# The ledger's answer timeout posd is given: short, so that an unanswered 0200 is reversed
# soon; long enough that a loaded machine answers in time.
LEDGER_TIMEOUT_S = 2
# The reconnect backoff after an outage doubles up to 60 s (ledger-iso8583.md): a wait for
# the link after one may take that long.
LINK_WAIT_S = 75.0
SETTLE_S = 45.0


def journal_payments(state_dir: Path) -> list[tuple[str, str, str, int]]:
    """(id, kind, state, charged) of every payment, read from the journal file outside posd."""
    with sqlite3.connect(f"file:{state_dir / 'journal.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT id, kind, state, charged FROM payments ORDER BY created_at")
        return [(str(i), str(k), str(s), int(c)) for i, k, s, c in rows.fetchall()]


def journal_state(state_dir: Path, payment_id: str) -> str:
    states = {pid: state for pid, _, state, _ in journal_payments(state_dir)}
    return states[payment_id]


async def wait_for_log(path: Path, text: str, timeout_s: float = 15.0) -> None:
    """Until posd's log file (written by the child process) holds `text`."""
    async with asyncio.timeout(timeout_s):
        while True:
            if text in await asyncio.to_thread(path.read_text, errors="replace"):
                return
            await asyncio.sleep(0.05)


def nth(predicate: Callable[[LedgerEvent], bool], n: int) -> Callable[[LedgerEvent], bool]:
    """True at the `n`th event matching `predicate` from now on (for one listener: it counts
    the events it is shown)."""
    count = 0

    def counted(event: LedgerEvent) -> bool:
        nonlocal count
        if predicate(event):
            count += 1
            return count == n
        return False

    return counted


def arrives(*mtis: str, nth_one: int = 1) -> Callable[[LedgerEvent], bool]:
    """True at the `nth_one` message of one of `mtis` to reach the ledger from now on."""
    return nth(lambda event: event.kind == "received" and event.mti in mtis, nth_one)


def answered(mti: str) -> Callable[[LedgerEvent], bool]:
    """True once the ledger has written an answer `mti` to the connection."""
    return lambda event: event.kind == "answered" and event.mti == mti


@dataclass
class MoneyRig:
    tmp_path: Path
    config_path: Path
    config: Config
    ledger: LedgerSimulator
    reader: SimulatedCardReader
    scanner: SimulatedSerialScanner
    issuer: QrIssuer
    opening: dict[str, int]
    process: asyncio.subprocess.Process | None = None
    client: PosClient | None = None
    payment_ids: list[str] = field(default_factory=list)
    kills: int = 0
    _stack: contextlib.AsyncExitStack | None = None

    @property
    def state_dir(self) -> Path:
        return self.config.storage.state_dir

    @property
    def api(self) -> PosClient:
        assert self.client is not None, "posd is not running"
        return self.client

    # ---- the process ------------------------------------------------------------------------

    async def start(
        self,
        env: Mapping[str, str] | None = None,
        *,
        link: bool = True,
        ready: bool = True,
        timeout_s: float = 30,
    ) -> None:
        """`posd run` on the rig's config; returns once the reader and scanner are ready and
        (with `link`) the ledger link is up; `ready` False: as soon as it is started."""
        assert self.process is None, "posd is already running"
        self.config.api.socket.unlink(missing_ok=True)  # a killed posd leaves its socket
        self._stack = contextlib.AsyncExitStack()
        self.process = await self._stack.enter_async_context(
            daemon_process(self.config_path, env=env)
        )
        self.client = PosClient(self.config.api.socket)
        if not ready:
            return

        def serving(s: dict[str, Any]) -> bool:
            devices = s["devices"]
            up = s["ledger"]["link"] == "up" or not link
            return bool(
                up
                and devices["card_reader"]["state"] == "ready"
                and devices["qr_scanner"]["state"] == "ready"
            )

        await self.api.wait_status(serving, timeout_s=timeout_s)

    async def kill(self) -> None:
        """SIGKILL posd now (if it still runs) and wait until it is gone."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
        await self.died()

    async def died(self, when: Awaitable[object] | None = None, timeout_s: float = 30) -> None:
        """Waits for `when` (a kill the rig armed), then for posd to be gone, SIGKILLed."""
        assert self.process is not None and self._stack is not None
        async with asyncio.timeout(timeout_s):
            if when is not None:
                await when
            code = await self.process.wait()
        assert code == -signal.SIGKILL, f"posd ended with {code}, not by SIGKILL"
        self.kills += 1
        await self.api.session.close()
        await self._stack.aclose()
        self.process, self.client, self._stack = None, None, None

    def _kill_now(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def kill_at_ledger(self, predicate: Callable[[LedgerEvent], bool]) -> asyncio.Event:
        """posd is SIGKILLed at the first ledger event matching `predicate`; the ledger goes on
        (acts on the message it received, or sends on) only once posd is gone. The event is
        set at the kill. It may be armed before posd is started."""
        fired = asyncio.Event()

        def listener(event: LedgerEvent) -> Awaitable[int] | None:
            process = self.process
            if fired.is_set() or process is None or not predicate(event):
                return None
            remove()
            self._kill_now()
            fired.set()
            return process.wait()

        remove = self.ledger.add_listener(listener)
        return fired

    def on_ledger(
        self, predicate: Callable[[LedgerEvent], bool], then: Callable[[], None]
    ) -> asyncio.Event:
        """`then` runs at the first ledger event matching `predicate`, before the ledger goes
        on (a fault switched off as the reversal arrives); the event is set then."""
        fired = asyncio.Event()

        def listener(event: LedgerEvent) -> None:
            if not fired.is_set() and predicate(event):
                remove()
                then()
                fired.set()

        remove = self.ledger.add_listener(listener)
        return fired

    def kill_after_report(self, kind: type[srl.Message], delay_s: float) -> asyncio.Event:
        """posd is SIGKILLed `delay_s` after the reader next sends a `kind` message (0: at
        that instant); the event is set at the kill."""
        return self.call_after_report(kind, delay_s, self._kill_now)

    def call_after_report(
        self, kind: type[srl.Message], delay_s: float, then: Callable[[], None]
    ) -> asyncio.Event:
        """`then` runs `delay_s` after the reader next sends a `kind` message; the event is
        set once it has."""
        fired = asyncio.Event()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            then()
            fired.set()

        def listener(msg: srl.Message) -> None:
            if isinstance(msg, kind):
                self.reader.on_report.remove(listener)
                loop.call_later(delay_s, fire)

        self.reader.on_report.append(listener)
        return fired

    # ---- payments ---------------------------------------------------------------------------

    async def pay(
        self, method: str, payer: str | None = None, amount: int = 1_000, *, present: bool = True
    ) -> str:
        """Starts a payment and presents its card (a posd.sim.cards name) or scans a valid QR
        of `payer` (an account number); returns its id without waiting for the outcome.
        `present` False: the test presents the card itself, later."""
        created = await self.api.create(amount, method)
        payment_id = str(created["payment_id"])
        self.payment_ids.append(payment_id)
        if method == "card":
            if present:
                self.reader.present(payer or "seoroeum")
        else:
            await self.scanner.scan(self.issuer.valid(payer or GOOD_QR_ACCOUNT))
        return payment_id

    async def outcome(self, payment_id: str, timeout_s: float = 20) -> dict[str, Any]:
        """The payment once final (not reversing: the reversal answered)."""
        return await self.api.wait_state(payment_id, FINAL_STATES, timeout_s)

    async def ledger_down(self) -> None:
        await self.ledger.refuse_connections(True)
        if self.client is not None:
            await self.api.wait_status(lambda s: s["ledger"]["link"] != "up")

    async def ledger_up(self) -> None:
        await self.ledger.refuse_connections(False)
        if self.client is not None:
            await self.api.wait_status(lambda s: s["ledger"]["link"] == "up", LINK_WAIT_S)

    # ---- the invariant ----------------------------------------------------------------------

    def moved(self) -> int:
        """What left the accounts at the ledger since the rig started (won)."""
        return sum(self.opening[a.number] - a.balance for a in self.ledger.rules.accounts)

    async def settle(self) -> None:
        """The ledger behaves and stays up: posd's queue drains (flushed, so that an entry
        waiting out its retry interval goes now) and every payment ends."""
        self.ledger.faults = Faults()
        await self.ledger_up()
        async with asyncio.timeout(SETTLE_S):
            while True:
                status, body = await self.api.request("POST", "/v1/saf/flush")
                states = [(await self.api.payment(p))["state"] for p in self.payment_ids]
                if status == 200 and body["pending"] == 0 and set(states) <= FINAL_STATES:
                    return
                await asyncio.sleep(0.1)

    async def check_money(self) -> None:
        """The invariant (module doc), with posd running after `settle`."""
        status, body = await self.api.request("GET", "/v1/saf")
        assert (status, body["queue"]) == (200, []), body
        shown = {p: (await self.api.payment(p))["state"] for p in self.payment_ids}
        assert set(shown.values()) <= FINAL_STATES, shown
        rows = journal_payments(self.state_dir)
        assert sorted(pid for pid, *_ in rows) == sorted(self.payment_ids)
        assert {pid: state for pid, _, state, _ in rows} == shown
        told = sum(
            (charged if kind == "purchase" else -charged)
            for _, kind, state, charged in rows
            if state in ("approved", "forwarded")
        )
        assert self.moved() == told, (self.moved(), told, rows)
        sent = collections.Counter(s.stan for s in self.ledger.seen if s.mti == "0200")
        assert [stan for stan, n in sent.items() if n > 1] == [], "a 0200 was resent"


@contextlib.asynccontextmanager
async def money_rig(
    tmp_path: Path, **overrides: Mapping[str, object] | None
) -> AsyncIterator[MoneyRig]:
    """The rig with its peers running and its config written (posd not started yet);
    `overrides` as write_config takes them. posd is killed at the end if it still runs."""
    sections: dict[str, Mapping[str, object] | None] = {
        "ledger": {"timeout_s": LEDGER_TIMEOUT_S},
        "offline": {"max_per_account": 50},
    }
    async with shop_peers(tmp_path, **(sections | overrides)) as peers:
        assert peers.scanner is not None
        opening = {a.number: a.balance for a in peers.ledger.rules.accounts}
        rig = MoneyRig(
            tmp_path,
            peers.config_path,
            load_config(peers.config_path),
            peers.ledger,
            peers.reader,
            peers.scanner,
            peers.issuer,
            opening,
        )
        try:
            yield rig
        finally:
            if rig.process is not None:
                with contextlib.suppress(Exception):
                    await rig.kill()
