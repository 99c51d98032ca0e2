"""A chip card holding COMPLETE (the ledger approved, the card has not answered) ends the same
whether posd crashes meanwhile or not: reversed `reader_error`, the money back at the ledger.

The crash: the real daemon (`posd run`) is SIGKILLed the instant the simulated reader gets
COMPLETE, and started again on the same state dir."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from posd.config import load_config
from posd.sim import SimulatedCardReader
from posd.sim.ledger_accounts import GOOD_CARD
from protocols import srl_messages as srl
from tests.helpers.daemon import (
    PosClient,
    daemon_process,
    ledger_and_reader,
    on_reader_command,
    running_daemon,
)

pytestmark = pytest.mark.timeout(90)


def hang_at_complete(
    reader: SimulatedCardReader, also: Callable[[], None] | None = None
) -> asyncio.Event:
    """The reader hangs the moment a COMPLETE arrives (no ACK, no COMPLETE_RESULT); `also`
    runs right then (a kill). The event is set once it happened."""

    def hang() -> None:
        reader.go_silent()
        if also is not None:
            also()

    return on_reader_command(reader, srl.Complete, hang)


def journal_row(state_dir: Path, payment_id: str) -> tuple[str, bool]:
    """(state, card data kept) as the journal file holds them, read from outside posd."""
    with sqlite3.connect(f"file:{state_dir / 'journal.db'}?mode=ro", uri=True) as db:
        state, kept = db.execute(
            "SELECT state, card_data IS NOT NULL FROM payments WHERE id = ?", (payment_id,)
        ).fetchone()
    return str(state), bool(kept)


async def test_killed_while_the_card_holds_complete_is_reversed_at_restart(
    tmp_path: Path,
) -> None:
    async with ledger_and_reader(tmp_path) as (ledger, reader, config_path):
        config = load_config(config_path)
        socket, state_dir = config.api.socket, config.storage.state_dir
        before = ledger.rules.balance(GOOD_CARD)
        assert before is not None
        async with daemon_process(config_path) as process:
            held = hang_at_complete(reader, also=process.kill)
            client = PosClient(socket)
            try:
                await client.wait_reader_and_ledger()
                created = await client.create(4_000, "card")
                reader.present("seoroeum")
                async with asyncio.timeout(20):
                    await held.wait()
            finally:
                await client.session.close()
            await process.wait()
        payment_id = str(created["payment_id"])
        # Killed in the window: the ledger approved and moved the money, the card never
        # answered, and the journal holds the window (approved, card data kept).
        assert journal_row(state_dir, payment_id) == ("approved", True)
        assert ledger.rules.balance(GOOD_CARD) == before - 4_000

        reader.wake()  # the reader comes back from its hang as after a reset
        socket.unlink(missing_ok=True)
        before_restart = len(reader.received)
        async with daemon_process(config_path) as process:
            client = PosClient(socket)
            try:
                await client.wait_reader_and_ledger()
                done = await client.wait_state(payment_id, {"reversed"}, timeout_s=20)
                assert done["decline_reason"] == "reader_error", done
                assert ledger.rules.balance(GOOD_CARD) == before
                mtis = [s.mti for s in ledger.seen]
                assert mtis.count("0200") == 1 and "0400" in mtis, mtis
                assert journal_row(state_dir, payment_id) == ("reversed", False)
                # The reader serves the next payment after its CANCEL (reader-link.md).
                paid = await client.create(2_000, "card")
                reader.present("seoroeum")
                again = await client.wait_final(paid["payment_id"], timeout_s=15)
                assert again["state"] == "approved", again
            finally:
                await client.session.close()
        since = [type(m).__name__ for m in reader.received[before_restart:]]
        assert since[:2] == ["Ping", "Cancel"], since
        assert ledger.rules.balance(GOOD_CARD) == before - 2_000


async def test_the_same_silence_without_a_crash_is_reversed_reader_error(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        before = d.ledger.rules.balance(GOOD_CARD)
        assert before is not None
        hang_at_complete(d.reader)
        created = await d.create(4_000, "card")
        d.reader.present("seoroeum")
        done = await d.wait_state(created["payment_id"], {"reversed"}, timeout_s=30)
        assert done["decline_reason"] == "reader_error", done
        assert d.ledger.rules.balance(GOOD_CARD) == before
