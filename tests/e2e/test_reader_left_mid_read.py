"""The reader keeps its state while the host is away (reader-link.md "After (re)connecting"):
posd killed mid-read leaves it reading, and the posd that comes back must CANCEL before its
first START_READ, or its first payment fails with `reader_error`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posd.config import load_config
from protocols import srl_messages as srl
from tests.helpers.daemon import PosClient, daemon_process, ledger_and_reader, on_reader_command

pytestmark = pytest.mark.timeout(60)


async def test_after_a_crash_mid_read_the_first_card_payment_is_approved(tmp_path: Path) -> None:
    async with ledger_and_reader(tmp_path) as (_, reader, config_path):
        socket = load_config(config_path).api.socket
        async with daemon_process(config_path) as process:
            client = PosClient(socket)
            try:
                await client.wait_reader_and_ledger()
                reading = on_reader_command(reader, srl.StartRead)
                created = await client.create(3_000, "card")
                async with asyncio.timeout(10):
                    await reading.wait()
            finally:
                await client.session.close()
            process.kill()  # no CANCEL: the reader is still reading, as a real one would be
            await process.wait()
        socket.unlink(missing_ok=True)
        before_restart = len(reader.received)
        async with daemon_process(config_path) as process:
            client = PosClient(socket)
            try:
                await client.wait_reader_and_ledger()
                gone = await client.payment(created["payment_id"])
                assert (gone["state"], gone["decline_reason"]) == ("cancelled", "interrupted")
                paid = await client.create(4_000, "card")
                reader.present("seoroeum")
                done = await client.wait_final(paid["payment_id"], timeout_s=15)
                assert done["state"] == "approved", done
            finally:
                await client.session.close()
        since = [type(m).__name__ for m in reader.received[before_restart:]]
        assert since[:3] == ["Ping", "Cancel", "StartRead"], since
