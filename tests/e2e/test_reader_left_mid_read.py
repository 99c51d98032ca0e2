"""The reader keeps its state while the host is away (reader-link.md "After (re)connecting"):
posd killed mid-read leaves it reading, and the posd that comes back must CANCEL before its
first START_READ, or its first payment fails with `reader_error`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posd.config import load_config
from posd.sim import LedgerSimulator, SimulatedCardReader
from protocols import srl_messages as srl
from tests.helpers.configs import MAC_KEY_HEX, write_config
from tests.helpers.daemon import PosClient, daemon_process

pytestmark = pytest.mark.timeout(60)


async def reader_ready(client: PosClient) -> None:
    await client.wait_status(
        lambda s: s["devices"]["card_reader"]["state"] == "ready" and s["ledger"]["link"] == "up",
        timeout_s=20,
    )


async def reader_received_start_read(reader: SimulatedCardReader, timeout_s: float = 10) -> None:
    # The simulated reader records frames as they arrive and signals nothing; poll it.
    async with asyncio.timeout(timeout_s):
        while not (reader.received and isinstance(reader.received[-1], srl.StartRead)):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_after_a_crash_mid_read_the_first_card_payment_is_approved(tmp_path: Path) -> None:
    async with (
        LedgerSimulator(mac_key=bytes.fromhex(MAC_KEY_HEX)) as ledger,
        SimulatedCardReader(link=tmp_path / "posd-reader") as reader,
    ):
        config_path = write_config(
            tmp_path,
            ledger={"port": ledger.port},
            card_reader={"port": reader.port},
            logging={"level": "info"},
        )
        socket = load_config(config_path).api.socket
        async with daemon_process(config_path) as process:
            client = PosClient(socket)
            try:
                await reader_ready(client)
                created = await client.create(3_000, "card")
                await client.wait_status(lambda s: s["devices"]["card_reader"]["state"] == "busy")
                # posd is busy from its CANCEL on; the START_READ follows on the link.
                await reader_received_start_read(reader)
            finally:
                await client.session.close()
            process.kill()  # no CANCEL: the reader is still reading, as a real one would be
            await process.wait()
        socket.unlink(missing_ok=True)
        before_restart = len(reader.received)
        async with daemon_process(config_path) as process:
            client = PosClient(socket)
            try:
                await reader_ready(client)
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
